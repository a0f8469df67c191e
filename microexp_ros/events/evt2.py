"""Prophesee EVT 2.0 (the word stream of older .raw files): little-endian 32-bit words, top 4 bits the type.

CD_OFF (0x0) / CD_ON (0x1): bits 27..22 = time bits 5..0, bits 21..11 = x, bits 10..0 = y.
EVT_TIME_HIGH (0x8): bits 27..0 = time bits 33..6. EXT_TRIGGER (0xA): bits 27..22 time low, bits 12..8 channel
id, bit 0 edge. OTHERS (0xE) and CONTINUED (0xF) carry no CD data. Events before the first TIME_HIGH have no
time and are dropped; a TIME_HIGH more than 10 units below the last is a 2^34 µs wrap. Times out in ns.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microexp_ros.events.codecs import EVENTS_FULL, TRIGGERS_FULL, Decoder, put_event, stop_status


@njit(cache=True, nogil=True)
def _decode_kernel(
    words, start, state, counts, drops, limit, width, height, time_base,
    events, tt_out, te_out, ti_out,
):  # pragma: no cover - compiled
    """state: time high in µs (with wrap bits), validity (1 once a TIME_HIGH was seen)."""
    n = counts[0]
    nt = counts[1]
    cap = events.shape[0]
    tcap = tt_out.shape[0]
    high = state[0]
    valid = state[1]
    status = 0
    i = start
    while i < words.shape[0]:
        w = np.int64(words[i])  # signed 64-bit arithmetic throughout (no uint64 promotion)
        code = w >> 28
        if code <= 1:  # CD_OFF / CD_ON
            if valid:
                t = (high | ((w >> 22) & 0x3F)) * 1000
                status = stop_status(t, limit, n, 1, cap, EVENTS_FULL)
                if status:
                    break
                n = put_event(events, n, t, (w >> 11) & 0x7FF, w & 0x7FF, code, width, height, drops, 1)
            else:
                drops[0] += 1
        elif code == 8:  # EVT_TIME_HIGH
            new = w & 0xFFFFFFF
            last = (high >> 6) & 0xFFFFFFF
            if new < last and last - new > 10:
                high += 1 << 34
            high = (high & ~((1 << 34) - 1)) | (new << 6)
            valid = 1
        elif code == 10:  # EXT_TRIGGER
            if valid:
                t = (high | ((w >> 22) & 0x3F)) * 1000
                status = stop_status(t, limit, nt, 1, tcap, TRIGGERS_FULL)
                if status:
                    break
                tt_out[nt] = t
                te_out[nt] = w & 1
                ti_out[nt] = (w >> 8) & 0x1F
                nt += 1
            else:
                drops[0] += 1
        elif code == 14 or code == 15:
            pass
        else:
            drops[2] += 1
        i += 1
    state[0] = high
    state[1] = valid
    counts[0] = n
    counts[1] = nt
    return status, i


class Evt2Decoder(Decoder):
    """EVT 2.0 words to events and triggers, state carried across chunks (a stream: partial words carry)."""

    encoding = "evt2"
    word_dtype = "<u4"
    carries_partial_words = True
    max_side = 2048
    drop_names = ("before_valid_time", "out_of_bounds", "unknown_word")
    state_size = 2
    kernel = _decode_kernel
