"""E2VID-style voxel grid: signed polarity spread bilinearly over B time bins (the reconstruction input).

Each event at normalised time tn = (B - 1) * (t - t0) / (t1 - t0) adds its polarity (+1 ON, -1 OFF) to bin
floor(tn) with weight 1 - frac(tn) and to the next bin with weight frac(tn), so every in-window event
contributes exactly its signed unit. A numba kernel makes one pass over the events (numpy needs ~10 passes).
"""

from __future__ import annotations

import numba
import numpy as np

from microexp_ros.events._checks import check_binned_window, check_first_invalid


@numba.njit(cache=True, nogil=True)
def _accumulate(t, x, y, p, width, height, bins, t0, t1, out):  # pragma: no cover - compiled
    """Add every in-window event to `out` (flat [bins*H*W]); return the index of the first invalid event or -1."""
    scale = (bins - 1) / (t1 - t0)
    plane = width * height
    for i in range(t.shape[0]):
        ti = t[i]
        if ti < t0 or ti >= t1:
            continue
        xi = x[i]
        yi = y[i]
        if xi >= width or yi >= height or p[i] > 1:
            return i
        tn = (ti - t0) * scale
        b = int(tn)
        frac = tn - b
        v = 1.0 if p[i] else -1.0
        idx = b * plane + yi * width + xi
        out[idx] += v * (1.0 - frac)
        if frac > 0.0:
            out[idx + plane] += v * frac
    return -1


def voxel_grid(events: np.ndarray, width: int, height: int, bins: int, t0: int, t1: int) -> np.ndarray:
    """[bins, H, W] float32 voxel grid of the events with t0 <= t < t1 (others excluded)."""
    check_binned_window(events, width, height, bins, t0, t1)
    out = np.zeros(bins * height * width, dtype=np.float32)
    bad = _accumulate(
        events["t"], events["x"], events["y"], events["p"], int(width), int(height), int(bins), int(t0), int(t1), out
    )
    check_first_invalid(events, bad, width, height)
    return out.reshape(bins, height, width)
