"""The `libcaer` EventPacket encoding (libcaer_driver): libcaer polarity events, 8 bytes each, copied as is.

Each event is a little-endian `uint32 data` (bit 0 valid, bit 1 polarity, bits 16..2 y, bits 31..17 x) and an
`int32` timestamp in µs. The message's time_base (ns) already holds the host start time plus the timestamp's
overflow bits; a 31-bit rollover inside a message (the timestamp falling back) adds 2^31 µs, as in
event_camera_codecs. Invalid events (bit 0 clear) and negative timestamps are dropped and counted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microexp_ros.events.codecs import EVENTS_FULL, Decoder, put_event, stop_status

ROLLOVER_NS = (1 << 31) * 1000


@njit(cache=True, nogil=True)
def _decode_kernel(
    words, start, state, counts, drops, limit, width, height, time_base,
    events, tt_out, te_out, ti_out,
):  # pragma: no cover - compiled
    """state[0] = rollovers seen in this message, state[1] = last timestamp (µs)."""
    n = counts[0]
    cap = events.shape[0]
    rollovers = state[0]
    last = state[1]
    status = 0
    i = start
    while i < words.shape[0]:
        w = np.int64(words[i])  # signed 64-bit arithmetic throughout (no uint64 promotion)
        data = w & 0xFFFFFFFF
        ts = (w >> 32) & 0xFFFFFFFF
        if ts >= 0x80000000 or (data & 1) == 0:
            drops[1] += 1
            i += 1
            continue
        rolls = rollovers + 1 if ts < last else rollovers
        t = time_base + rolls * ROLLOVER_NS + ts * 1000
        status = stop_status(t, limit, n, 1, cap, EVENTS_FULL)
        if status:
            break
        rollovers = rolls
        last = ts
        x, y, p = (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1
        n = put_event(events, n, t, x, y, p, width, height, drops, 0)
        i += 1
    state[0] = rollovers
    state[1] = last
    counts[0] = n
    return status, i


class LibcaerDecoder(Decoder):
    """`libcaer` messages to events; the rollover state restarts with each message (its time_base)."""

    encoding = "libcaer"
    word_dtype = "<u8"
    drop_names = ("out_of_bounds", "invalid")
    state_size = 2
    kernel = _decode_kernel

    def _start_message(self) -> None:
        self._state[:] = 0
