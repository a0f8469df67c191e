"""Exponentially decaying time surface: per pixel and polarity, how recently it fired before a reference time."""

from __future__ import annotations

import numba
import numpy as np

from microexp_ros.events._checks import check_array, check_first_invalid

_NEVER = np.iinfo(np.int64).min


@numba.njit(cache=True, nogil=True)
def _latest(t, x, y, p, width, height, t_ref, last):  # pragma: no cover - compiled
    """Latest time per (polarity, y, x) of the events at or before t_ref; the first invalid event's index or -1."""
    plane = width * height
    for i in range(t.shape[0]):
        ti = t[i]
        if ti > t_ref:
            continue
        xi = x[i]
        yi = y[i]
        pi = p[i]
        if xi >= width or yi >= height or pi > 1:
            return i
        idx = pi * plane + yi * width + xi
        if ti > last[idx]:
            last[idx] = ti
    return -1


def time_surface(events: np.ndarray, width: int, height: int, t_ref: int, tau_ns: float) -> np.ndarray:
    """[2, H, W] float32: exp(-(t_ref - t_last) / tau_ns) with t_last the latest event at or before t_ref.

    Channel 0 = OFF, 1 = ON (as in polarity_histograms); pixels with no such event are 0; events after
    t_ref are excluded.
    """
    check_array(events, width, height)
    if not tau_ns > 0:
        raise ValueError(f"tau_ns must be > 0, got {tau_ns}")
    last = np.full(2 * height * width, _NEVER, dtype=np.int64)
    bad = _latest(events["t"], events["x"], events["y"], events["p"], int(width), int(height), int(t_ref), last)
    check_first_invalid(events, bad, width, height)
    seen = last != _NEVER
    surface = np.zeros(2 * height * width, dtype=np.float32)
    surface[seen] = np.exp(-(t_ref - last[seen]) / float(tau_ns))
    return surface.reshape(2, height, width)
