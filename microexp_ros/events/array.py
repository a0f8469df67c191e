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
