"""The event array types every codec, reader, representation and model shares."""

from __future__ import annotations

import numpy as np

# CD events: time in nanoseconds of sensor time, pixel coordinates, polarity (1 = ON, 0 = OFF).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])

# External trigger events: time in ns, edge (1 = rising, 0 = falling), channel id.
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("edge", "u1"), ("id", "u1")])


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length n."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def empty_triggers(n: int = 0) -> np.ndarray:
    """A zeroed trigger array of length n."""
    return np.zeros(n, dtype=TRIGGER_DTYPE)


def synthetic_events(width: int, height: int, t0_ns: int, t1_ns: int, count: int = 4000, seed: int = 0) -> np.ndarray:
    """`count` time-sorted events spread uniformly over [t0_ns, t1_ns) and a width x height sensor: a stand-in
    window for warming up a model node before any data arrives, or a benchmark input (at least 2 events, so
    the compiled kernels see the same array layout as real windows do)."""
    if count < 2 or t1_ns <= t0_ns or width < 1 or height < 1:
        raise ValueError(f"a synthetic window needs count >= 2, t1_ns > t0_ns and a sensor of at least 1x1, got "
                         f"count={count}, [{t0_ns}, {t1_ns}), {width}x{height}")
    rng = np.random.default_rng(seed)
    events = empty_events(count)
    events["t"] = np.sort(rng.integers(t0_ns, t1_ns, count))
    events["x"] = rng.integers(0, width, count)
    events["y"] = rng.integers(0, height, count)
    events["p"] = rng.integers(0, 2, count)
    return events
