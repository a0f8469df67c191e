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
def _accumulate(events, width, height, bins, t0, t1, out):  # pragma: no cover - compiled
    """Add every in-window event to `out` (flat [(bins + 1) * H * W]); return the first invalid event or -1.

    Reads each event record once (not four strided columns) and does the weights in float32, the grid's type;
    the spare last plane takes the zero upper weight of events in the last bin, so there is no branch per event.
    """
    scale = (bins - 1) / (t1 - t0)
    plane = width * height
    one = np.float32(1.0)
    for i in range(events.shape[0]):
        r = events[i]
        ti = r.t
        if ti < t0 or ti >= t1:
            continue
        xi = np.int64(r.x)
        yi = np.int64(r.y)
        if xi >= width or yi >= height or r.p > 1:
            return i
        tn = (ti - t0) * scale
        b = int(tn)
        frac = np.float32(tn - b)
        v = one if r.p else -one
        idx = b * plane + yi * width + xi
        out[idx] += v * (one - frac)
        out[idx + plane] += v * frac
    return -1


def voxel_grid(events: np.ndarray, width: int, height: int, bins: int, t0: int, t1: int) -> np.ndarray:
    """[bins, H, W] float32 voxel grid of the events with t0 <= t < t1 (others excluded)."""
    check_binned_window(events, width, height, bins, t0, t1)
    plane = int(width) * int(height)
    out = np.zeros((int(bins) + 1) * plane, dtype=np.float32)
    bad = _accumulate(np.ascontiguousarray(events).reshape(-1), int(width), int(height), int(bins), int(t0),
                      int(t1), out)
    check_first_invalid(events, bad, width, height)
    return out[: int(bins) * plane].reshape(bins, height, width)
