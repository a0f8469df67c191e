"""Cutting and joining event arrays in time and space without copying more than needed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit


def join(parts: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The 1-D record arrays `parts` (all of `dtype`) end to end in one new array.

    Copied as bytes: numpy copies packed structured records field by field, about 20x slower than memory speed,
    which made joining packets into windows a large share of the data plane's time.
    """
    dtype = np.dtype(dtype)
    for part in parts:
        if part.dtype != dtype or part.ndim != 1:
            raise ValueError(f"join needs 1-D arrays of {dtype}, got {part.ndim}-D {part.dtype}")
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([np.ascontiguousarray(part).view(np.uint8) for part in parts]).view(dtype)


@njit(cache=True, nogil=True)
def _ordered_from(t, floor):  # pragma: no cover - compiled
    """Whether t never goes below floor or back: one pass over the (strided) column, no temporaries."""
    last = floor
    for i in range(t.shape[0]):
        if t[i] < last:
            return False
        last = t[i]
    return True


def in_order_mask(t: np.ndarray, floor: int) -> np.ndarray | None:
    """None when the times `t` never go below `floor` or back (one pass, the usual case); otherwise the mask
    of the elements to keep: those not earlier than `floor` and than every element before them."""
    if t.size == 0 or _ordered_from(t, np.int64(max(int(floor), np.iinfo(np.int64).min))):
        return None
    return t >= np.maximum.accumulate(np.maximum(t, floor))


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
