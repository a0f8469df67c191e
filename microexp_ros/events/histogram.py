"""Per-polarity event-count histograms over time bins: the SNN classifier's input representation.

Bin k covers [t0 + k*d, t0 + (k+1)*d) with d = (t1 - t0) / bins, computed in integer ns so events on a bin
edge land in the later bin exactly. One numba pass over the events.
"""

from __future__ import annotations

import numba
import numpy as np

from microexp_ros.events._checks import check_binned_window, check_first_invalid


@numba.njit(cache=True, nogil=True)
def _count(t, x, y, p, width, height, bins, t0, t1, out):  # pragma: no cover - compiled
    """Count every in-window event into `out` (flat [bins*2*H*W]); return the first invalid event's index or -1."""
    plane = width * height
    span = t1 - t0
    for i in range(t.shape[0]):
        ti = t[i]
        if ti < t0 or ti >= t1:
            continue
        xi = x[i]
        yi = y[i]
        pi = p[i]
        if xi >= width or yi >= height or pi > 1:
            return i
        b = ((ti - t0) * bins) // span
        out[(b * 2 + pi) * plane + yi * width + xi] += 1.0
    return -1


def polarity_histograms(
    events: np.ndarray, width: int, height: int, bins: int, t0: int, t1: int
) -> np.ndarray:
    """[bins, 2, H, W] float32 counts of the events with t0 <= t < t1; channel 0 = OFF, 1 = ON."""
    check_binned_window(events, width, height, bins, t0, t1)
    out = np.zeros(bins * 2 * height * width, dtype=np.float32)
    bad = _count(
        events["t"], events["x"], events["y"], events["p"], int(width), int(height), int(bins), int(t0), int(t1), out
    )
    check_first_invalid(events, bad, width, height)
    return out.reshape(bins, 2, height, width)
