"""FACS Action Units used across messages, simulator, models and the ROS4HRI bridge.

AU numbers are the FACS codes themselves, so `hri_msgs/FacialActionUnits.intensity[number]` is the slot of
an AU with no lookup table.
"""

from __future__ import annotations

AU_NAMES: dict[int, str] = {
    1: "inner_brow_raiser",
    2: "outer_brow_raiser",
    4: "brow_lowerer",
    5: "upper_lid_raiser",
    6: "cheek_raiser",
    7: "lid_tightener",
    9: "nose_wrinkler",
    10: "upper_lip_raiser",
    12: "lip_corner_puller",
    14: "dimpler",
    15: "lip_corner_depressor",
    17: "chin_raiser",
    20: "lip_stretcher",
    23: "lip_tightener",
    25: "lips_part",
    26: "jaw_drop",
    28: "lip_suck",
    45: "blink",
}

# The AUs our simulator animates and our models predict, in model output order.
MODEL_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 9, 12, 15, 17, 20, 25, 45)

# Class index 0 of the single-label (paper-style) protocol is "neutral"; class k > 0 is MODEL_AUS[k - 1].
NEUTRAL = 0
SINGLE_LABEL_CLASSES: tuple[int, ...] = (NEUTRAL,) + MODEL_AUS

# hri_msgs/FacialActionUnits arrays have 99 slots indexed by AU code.
HRI_FACS_SLOTS = 99


def au_name(number: int) -> str:
    """Name of an AU by FACS number; raises KeyError naming the unknown number."""
    try:
        return AU_NAMES[number]
    except KeyError:
        raise KeyError(f"AU{number} is not a FACS Action Unit known to microexp_ros") from None
