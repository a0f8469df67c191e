"""Signed event frame: the simplest image of a window of events (ON adds one, OFF subtracts one)."""

from __future__ import annotations

import numpy as np

from microexp_ros.events._checks import check_events


def event_frame(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """[H, W] float32 image: per pixel, number of ON events minus number of OFF events."""
    check_events(events, width, height)
    flat = events["y"].astype(np.intp) * width + events["x"]
    signed = events["p"].astype(np.float64) * 2.0 - 1.0
    counts = np.bincount(flat, weights=signed, minlength=height * width)
    return counts.astype(np.float32).reshape(height, width)
