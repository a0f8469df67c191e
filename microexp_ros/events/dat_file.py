"""Prophesee DAT files (N-CARS and other ATIS datasets): a `%` text header, two bytes giving the event type
and size, then 8-byte CD events: uint32 t (µs) and uint32 with x in bits 0-13, y in 14-27, polarity in 28-31.

The sensor size comes from `% Width`/`% Height` header lines, the parameters, or the extent of the events
(dataset samples are crops, so there is often no true sensor size).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from microexp_ros.events.array import empty_events
from microexp_ros.events.raw_header import split_raw_header
from microexp_ros.events.reader_protocol import EventFileError, WholeFileSource, optional_int

EVENT_BYTES = 8
US_TO_NS = 1000


def decode_dat(body: bytes, drops: collections.Counter[str]) -> np.ndarray:
    """The CD events of a DAT body (after the type/size bytes); partial and bad-polarity events counted in drops."""
    n = len(body) // EVENT_BYTES
    if len(body) % EVENT_BYTES:
        drops["truncated"] += 1
    words = np.frombuffer(body, dtype="<u4", count=2 * n).reshape(n, 2)
    data = words[:, 1]
    polarity = data >> 28
    valid = polarity <= 1
    if not valid.all():
        drops["invalid"] += int(n - np.count_nonzero(valid))
        words, data, polarity = words[valid], data[valid], polarity[valid]
    ev = empty_events(words.shape[0])
    ev["t"] = words[:, 0].astype(np.int64) * US_TO_NS
    ev["x"] = data & 0x3FFF
    ev["y"] = (data >> 14) & 0x3FFF
    ev["p"] = polarity
    return ev


class DatFile(WholeFileSource):
    """A Prophesee DAT file as an event source with one stream, "events" (read whole: dataset files are small)."""

    format = "dat"

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        lines, offset = split_raw_header(data)
        if offset == 0 or len(data) < offset + 2:
            raise EventFileError("not a Prophesee DAT file: no '%' header followed by the event type and size bytes")
        event_type, event_size = data[offset], data[offset + 1]
        if event_size != EVENT_BYTES:
            raise EventFileError(f"DAT event type {event_type} has {event_size}-byte events; only 8-byte CD is read")
        fields = {key.lower(): value.strip() for key, _, value in (line.partition(" ") for line in lines)}
        self.header = fields
        drops: collections.Counter[str] = collections.Counter()
        events = decode_dat(data[offset + 2 :], drops)
        width = width if width is not None else _header_int(fields, "width")
        height = height if height is not None else _header_int(fields, "height")
        self._hold(events, "dat", width, height, drops)


def _header_int(fields: dict[str, str], key: str) -> int | None:
    return optional_int(fields, key, "DAT header {key} {value!r} is not an integer")
