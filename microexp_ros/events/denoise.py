"""Background-activity filter: drop events that no neighbouring pixel supports within a short time.

Shot noise in the dark fires pixels independently, while a moving edge crosses neighbouring pixels within
milliseconds of each other. An event is kept when one of its 8 neighbours (not the pixel itself, so a hot
pixel cannot support itself) fired in the preceding `dt_ns` (Delbruck 2008, "Frame-free dynamic digital
vision"; the nearest-neighbour filter of DVS toolkits). One numba pass over the time-sorted events.
"""

from __future__ import annotations

import numba
import numpy as np

from microexp_ros.events._checks import check_array, check_first_invalid

_NEVER = np.iinfo(np.int64).min // 2   # "no event yet" in the timestamp map: t - _NEVER never fits in dt


@numba.njit(cache=True, nogil=True)
def _support(t, x, y, width, height, dt, keep):  # pragma: no cover - compiled
    """Mark in `keep` the events a neighbour supports; return the first invalid event's index or -1."""
    last = np.full((height + 2, width + 2), _NEVER, dtype=np.int64)   # padded: no bounds checks per neighbour
    for i in range(t.shape[0]):
        xi = x[i]
        yi = y[i]
        if xi >= width or yi >= height:
            return i
        ti = t[i]
        keep[i] = ti - last[yi + 1, xi + 1] <= dt
        for dy in range(3):       # this event supports its 8 neighbours' later events, not its own pixel's
            for dx in range(3):
                if dy != 1 or dx != 1:
                    last[yi + dy, xi + dx] = ti
    return -1


def background_activity_filter(events: np.ndarray, width: int, height: int, dt_ns: int) -> np.ndarray:
    """The time-sorted `events` that a neighbouring pixel supports within the preceding `dt_ns` (> 0)."""
    if dt_ns <= 0:
        raise ValueError(f"the filter's support time must be > 0 ns, got {dt_ns}")
    check_array(events, width, height)
    keep = np.zeros(len(events), dtype=np.bool_)
    bad = _support(events["t"], events["x"], events["y"], int(width), int(height), np.int64(dt_ns), keep)
    check_first_invalid(events, bad, width, height)
    return events[keep]
