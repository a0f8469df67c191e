"""Argument checks every representation shares, so bad geometry or coordinates fail with one clear message."""

from __future__ import annotations

import numpy as np

from microexp_ros.events.array import EVENT_DTYPE


def check_array(events: np.ndarray, width: int, height: int) -> None:
    """Raise ValueError unless `events` is an EVENT_DTYPE array and the sensor size is positive."""
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        dtype = getattr(events, "dtype", type(events).__name__)
        raise ValueError(f"events must be a numpy array of EVENT_DTYPE, got {dtype}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"sensor size must be positive, got width={width} height={height}")


def check_events(events: np.ndarray, width: int, height: int) -> None:
    """check_array, and every event inside the width x height sensor with polarity 0 or 1."""
    check_array(events, width, height)
    if events.size:
        bad = np.flatnonzero((events["x"] >= width) | (events["y"] >= height) | (events["p"] > 1))
        if bad.size:
            check_first_invalid(events, int(bad[0]), width, height)


def check_first_invalid(events: np.ndarray, index: int, width: int, height: int) -> None:
    """Raise ValueError for events[index], outside the sensor or with a polarity other than 0/1; -1 means none.

    Representation kernels validate as they go and report the first bad index, so they need no extra pass.
    """
    if index < 0:
        return
    e = events[index]
    raise ValueError(
        f"event {index} (x={e['x']} y={e['y']} p={e['p']}) is outside the {width}x{height} sensor or has a "
        "polarity other than 0/1; crop the events or pass the right size"
    )


def check_binned_window(events: np.ndarray, width: int, height: int, bins: int, t0: int, t1: int) -> None:
    """check_array, a non-empty time window [t0, t1) and at least one time bin: what binned representations take."""
    check_array(events, width, height)
    if not t1 > t0:
        raise ValueError(f"time window must have t1 > t0, got t0={t0} t1={t1}")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
