"""The deprecated `mono` EventPacket encoding: one little-endian uint64 per event, time relative to time_base.

Bit 63 polarity, bits 62..48 y (15 bits), bits 47..32 x (16 bits), bits 31..0 dt in ns; t = time_base + dt.
Each message stands alone, so nothing but a decode_until position carries between calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microexp_ros.events.codecs import EVENTS_FULL, Decoder, put_event, stop_status


@njit(cache=True, nogil=True)
def _decode_kernel(
    words, start, state, counts, drops, limit, width, height, time_base,
    events, tt_out, te_out, ti_out,
):  # pragma: no cover - compiled
    n = counts[0]
    cap = events.shape[0]
    status = 0
    i = start
    while i < words.shape[0]:
        w = np.int64(words[i])  # signed 64-bit arithmetic throughout (no uint64 promotion)
        t = time_base + (w & 0xFFFFFFFF)
        status = stop_status(t, limit, n, 1, cap, EVENTS_FULL)
        if status:
            break
        x, y, p = (w >> 32) & 0xFFFF, (w >> 48) & 0x7FFF, (w >> 63) & 1
        n = put_event(events, n, t, x, y, p, width, height, drops, 0)
        i += 1
    counts[0] = n
    return status, i


class MonoDecoder(Decoder):
    """`mono` words to events (no triggers: those came in the separate, also deprecated, `trigger` encoding)."""

    encoding = "mono"
    word_dtype = "<u8"
    drop_names = ("out_of_bounds",)
    kernel = _decode_kernel
