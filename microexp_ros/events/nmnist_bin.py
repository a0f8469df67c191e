"""N-MNIST / N-Caltech101 `.bin` files (Orchard et al. 2015): 40-bit ATIS events, no header.

Each event is 5 bytes: x (8 bits), y (8 bits), then polarity (1 bit, 1 = ON) and t (23 bits, µs),
big-endian. The sensor size is not stored: it is passed in, or taken as the extent of the events.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from microexp_ros.events.array import empty_events
from microexp_ros.events.reader_protocol import WholeFileSource

EVENT_BYTES = 5
US_TO_NS = 1000


def decode_nmnist(data: bytes) -> tuple[np.ndarray, int]:
    """The events in `data` (EVENT_DTYPE) and the number of trailing bytes that did not form a whole event."""
    raw = np.frombuffer(data, dtype=np.uint8)
    n = raw.size // EVENT_BYTES
    words = raw[: n * EVENT_BYTES].reshape(n, EVENT_BYTES)
    ev = empty_events(n)
    ev["x"] = words[:, 0]
    ev["y"] = words[:, 1]
    ev["p"] = words[:, 2] >> 7
    t_us = ((words[:, 2].astype(np.int64) & 0x7F) << 16) | (words[:, 3].astype(np.int64) << 8) | words[:, 4]
    ev["t"] = t_us * US_TO_NS
    return ev, raw.size - n * EVENT_BYTES


class NmnistFile(WholeFileSource):
    """An N-MNIST/N-Caltech `.bin` file as an event source with one stream, "events" (read whole: files are small)."""

    format = "nmnist_bin"

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None) -> None:
        self.path = Path(path)
        events, tail = decode_nmnist(self.path.read_bytes())
        if (width is None) != (height is None):
            raise ValueError("pass both width and height, or neither (then the events' extent is used)")
        drops: collections.Counter[str] = collections.Counter()
        if tail:
            drops["truncated"] += 1  # a partial trailing event
        self._hold(events, "nmnist_bin", width, height, drops)
