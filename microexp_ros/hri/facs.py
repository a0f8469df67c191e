"""AU predictions → the two arrays of hri_msgs/FacialActionUnits, indexed by FACS code.

libhri exposes a face's AUs as {AU: (intensity, confidence)} read straight from `intensity[au]` and
`confidence[au]`, so the slot of an AU is its FACS number. What goes in each slot:
- `confidence[au]` = the model's probability that the AU is present (0..1);
- `intensity[au]` = the FACS intensity normalised to 0..1 (A..E = 1..5 → 0.2..1.0) when the model estimates it;
  otherwise the node's on/off decision (1.0 active, 0.0 inactive), so a consumer thresholding intensity sees the
  same hysteresis-filtered state as `/au_predictions`.
Slots of AUs the model does not predict stay 0 in both arrays (no evidence, no confidence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from microexp_ros.facs import HRI_FACS_SLOTS

FACS_MAX_INTENSITY = 5.0


@dataclass(frozen=True)
class AUState:
    """One AU of one window, as carried by microexp_ros/ActionUnit."""

    number: int
    probability: float
    active: bool
    intensity: float = math.nan


def facs_arrays(units: Iterable[AUState]) -> tuple[np.ndarray, np.ndarray]:
    """(intensity, confidence), float32 [HRI_FACS_SLOTS] each, slot = AU number.

    ValueError naming the AU for a number outside 1..98, a duplicate AU, or a probability or intensity
    outside its range (0..1, 0..5), so a broken upstream message is reported, not silently clipped.
    """
    intensity = np.zeros(HRI_FACS_SLOTS, np.float32)
    confidence = np.zeros(HRI_FACS_SLOTS, np.float32)
    seen: set[int] = set()
    for unit in units:
        n = int(unit.number)
        if not 1 <= n < HRI_FACS_SLOTS:
            raise ValueError(f"AU number {n} has no FacialActionUnits slot (1..{HRI_FACS_SLOTS - 1})")
        if n in seen:
            raise ValueError(f"AU{n} appears twice in one prediction")
        seen.add(n)
        p = float(unit.probability)
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"AU{n} probability {p} is outside 0..1")
        level = float(unit.intensity)
        if math.isnan(level):
            intensity[n] = 1.0 if unit.active else 0.0
        elif 0.0 <= level <= FACS_MAX_INTENSITY:
            intensity[n] = level / FACS_MAX_INTENSITY
        else:
            raise ValueError(f"AU{n} intensity {level} is outside 0..{FACS_MAX_INTENSITY:g}")
        confidence[n] = p
    return intensity, confidence
