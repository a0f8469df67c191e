"""Cutting event arrays in time and space without copying more than needed."""

from __future__ import annotations

import numpy as np


def window_slice(events: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """The events with t0 <= t < t1 of a time-sorted array, found by binary search (a view, not a copy)."""
    if t1 < t0:
        raise ValueError(f"time window must have t1 >= t0, got t0={t0} t1={t1}")
    t = events["t"]
    lo = int(np.searchsorted(t, t0, side="left"))
    hi = int(np.searchsorted(t, t1, side="left"))
    return events[lo:hi]


def crop(events: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The events inside the w x h rectangle at (x0, y0), with coordinates shifted so (x0, y0) becomes (0, 0)."""
    if w <= 0 or h <= 0 or x0 < 0 or y0 < 0:
        raise ValueError(f"crop rectangle must have x0, y0 >= 0 and w, h > 0, got x0={x0} y0={y0} w={w} h={h}")
    x = events["x"]
    y = events["y"]
    keep = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
    out = events[keep]  # boolean indexing copies, so shifting does not touch the caller's array
    out["x"] -= np.uint16(x0)
    out["y"] -= np.uint16(y0)
    return out
