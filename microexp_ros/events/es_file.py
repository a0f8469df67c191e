"""Event Stream (`.es`, version 2.x) files from the neuromorphic-paris tools (sepia, faery): DVS and ATIS streams.

Layout: "Event Stream", three version bytes, a stream-type byte, then (for DVS and ATIS) width and height as
little-endian uint16, then a byte-wise state machine. DVS: an idle byte is overflow (0xFF: +127 µs), reset (0xFE)
or byte 0 (7-bit µs delta, polarity in bit 0), followed by x and y as little-endian uint16. ATIS: idle bytes
0b111111xx add 63 µs times xx (xx = 0 is the reset byte), byte 0 holds a 6-bit delta, polarity (bit 1) and
is_tc (bit 0); threshold-crossing (exposure) events are counted in drops, not returned as CD events.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numba
import numpy as np

from microexp_ros.events.array import empty_events
from microexp_ros.events.reader_protocol import EventFileError, WholeFileSource

MAGIC = b"Event Stream"
DVS, ATIS = 1, 2
_TYPE_NAMES = {0: "generic", 1: "dvs", 2: "atis", 3: "display", 4: "color"}
US_TO_NS = 1000


@numba.njit(cache=True, nogil=True)
def _decode(buf, atis, t_out, x_out, y_out, p_out):  # pragma: no cover - compiled
    """Run the state machine over `buf`; return (events written, threshold crossings skipped, final state)."""
    n = 0
    n_tc = 0
    t = 0
    state = 0
    x = 0
    y = 0
    polarity = 0
    is_tc = 0
    for i in range(buf.shape[0]):
        b = np.int64(buf[i])
        if state == 0:
            if atis:
                if b >= 0xFC:
                    t += 63 * (b & 3)
                    continue
                t += b >> 2
                polarity = (b >> 1) & 1
                is_tc = b & 1
            else:
                if b == 0xFF:
                    t += 127
                    continue
                if b == 0xFE:
                    continue
                t += b >> 1
                polarity = b & 1
            state = 1
        elif state == 1:
            x = b
            state = 2
        elif state == 2:
            x |= b << 8
            state = 3
        elif state == 3:
            y = b
            state = 4
        else:
            y |= b << 8
            state = 0
            if is_tc:
                n_tc += 1
            else:
                t_out[n] = t * US_TO_NS
                x_out[n] = x
                y_out[n] = y
                p_out[n] = polarity
                n += 1
    return n, n_tc, state


class EsFile(WholeFileSource):
    """An Event Stream file (DVS or ATIS) as an event source with one stream, "events" (read whole)."""

    format = "es"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        if not data.startswith(MAGIC) or len(data) < 20:
            raise EventFileError("not an Event Stream file (no 'Event Stream' magic and 20-byte header)")
        major, minor, patch, kind = data[12], data[13], data[14], data[15]
        if major != 2:
            raise EventFileError(f"Event Stream version {major}.{minor}.{patch} is not supported (2.x is)")
        if kind not in (DVS, ATIS):
            raise EventFileError(f"Event Stream type {_TYPE_NAMES.get(kind, kind)} has no CD events (dvs, atis do)")
        width = int.from_bytes(data[16:18], "little")
        height = int.from_bytes(data[18:20], "little")
        self.version = f"{major}.{minor}.{patch}"
        body = np.frombuffer(data, dtype=np.uint8, offset=20)
        events = empty_events(body.size // 5 + 1)
        n, n_tc, state = _decode(body, kind == ATIS, events["t"], events["x"], events["y"], events["p"])
        drops: collections.Counter[str] = collections.Counter()
        if n_tc:
            drops["threshold_crossing"] += int(n_tc)
        if state:
            drops["truncated"] += 1
        self._hold(events[:n], _TYPE_NAMES[kind], width, height, drops)
