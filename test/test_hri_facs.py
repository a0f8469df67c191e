"""AU predictions → hri_msgs/FacialActionUnits arrays: slot = FACS number, values as documented in hri.facs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microexp_ros.facs import HRI_FACS_SLOTS, MODEL_AUS
from microexp_ros.hri.facs import AUState, facs_arrays


def test_every_model_au_lands_in_its_own_slot_and_nothing_else_is_set():
    probs = {au: (k + 1) / (len(MODEL_AUS) + 1) for k, au in enumerate(MODEL_AUS)}
    units = [AUState(au, p, active=p >= 0.5) for au, p in probs.items()]
    intensity, confidence = facs_arrays(reversed(units))  # order of the input must not matter
    assert intensity.shape == confidence.shape == (HRI_FACS_SLOTS,)
    assert intensity.dtype == confidence.dtype == np.float32
    for au, p in probs.items():
        assert confidence[au] == np.float32(p)
        assert intensity[au] == (1.0 if p >= 0.5 else 0.0)
    others = np.setdiff1d(np.arange(HRI_FACS_SLOTS), MODEL_AUS)
    assert not intensity[others].any() and not confidence[others].any()
    assert confidence[12] == np.float32(probs[12]) and confidence[45] == np.float32(probs[45])


def test_estimated_facs_intensity_is_normalised_to_0_1():
    intensity, confidence = facs_arrays([AUState(12, 0.9, True, 2.5), AUState(6, 0.2, False, 0.0),
                                         AUState(4, 0.7, True, 5.0)])
    assert intensity[12] == np.float32(0.5) and intensity[6] == 0.0 and intensity[4] == 1.0
    assert confidence[12] == np.float32(0.9)


@pytest.mark.parametrize("unit, message", [
    (AUState(0, 0.5, False), "AU number 0"),
    (AUState(99, 0.5, False), "AU number 99"),
    (AUState(12, 1.5, True), "AU12 probability 1.5"),
    (AUState(12, math.nan, True), "AU12 probability nan"),
    (AUState(12, 0.5, True, 6.0), "AU12 intensity 6.0"),
])
def test_bad_units_are_rejected_with_the_au_named(unit, message):
    with pytest.raises(ValueError, match=message):
        facs_arrays([unit])


def test_duplicate_au_is_rejected():
    with pytest.raises(ValueError, match="AU6 appears twice"):
        facs_arrays([AUState(6, 0.1, False), AUState(6, 0.9, True)])
