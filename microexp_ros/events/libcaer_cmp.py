"""The compressed `libcaer_cmp` EventPacket encoding published by libcaer_driver (iniVation cameras).

Little-endian 16-bit words, top 4 bits the code (layout of event_camera_codecs' libcaer_cmp decoder):
0 TIME_HIGH (bits 11..0 = time bits 23..12), 1 TIME_LOW (bits 11..0), 2 ADDR_X (bits 10..0 = x),
3 ADDR_Y (bits 10..0 = y, bit 11 polarity: emits one event at the current x), 4 VECT_BASE_Y (base y and
polarity), 5 VECT_8 (bits 7..0: events at y = base + i, then base += 8). Time is µs since the message's
first event: t = time_base + (high | low) * 1000; it restarts at 0 with every message, x and the vector state
do not. Other codes are counted as unknown words.
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
    """state: time high, time low, x, vector base y, vector polarity."""
    n = counts[0]
    cap = events.shape[0]
    high = state[0]
    low = state[1]
    x = state[2]
    base = state[3]
    vpol = state[4]
    t = time_base + (high | low) * 1000
    status = 0
    i = start
    while i < words.shape[0]:
        w = np.int64(words[i])  # signed 64-bit arithmetic throughout (no uint64 promotion)
        code = w >> 12
        if code == 3:  # ADDR_Y: one event
            status = stop_status(t, limit, n, 1, cap, EVENTS_FULL)
            if status:
                break
            n = put_event(events, n, t, x, w & 0x7FF, (w >> 11) & 1, width, height, drops, 0)
        elif code == 5:  # VECT_8
            status = stop_status(t, limit, n, 8, cap, EVENTS_FULL)
            if status:
                break
            for j in range(8):
                if (w >> j) & 1:
                    n = put_event(events, n, t, x, base + j, vpol, width, height, drops, 0)
            base += 8
        elif code == 2:
            x = w & 0x7FF
        elif code == 1:
            low = w & 0xFFF
            t = time_base + (high | low) * 1000
        elif code == 0:
            high = (w & 0xFFF) << 12
            t = time_base + (high | low) * 1000
        elif code == 4:
            base = w & 0x7FF
            vpol = (w >> 11) & 1
        else:
            drops[1] += 1
        i += 1
    state[0] = high
    state[1] = low
    state[2] = x
    state[3] = base
    state[4] = vpol
    counts[0] = n
    return status, i


class LibcaerCmpDecoder(Decoder):
    """`libcaer_cmp` messages to events (the format carries no triggers)."""

    encoding = "libcaer_cmp"
    word_dtype = "<u2"
    max_side = 2048
    drop_names = ("out_of_bounds", "unknown_word")
    state_size = 5
    kernel = _decode_kernel

    def _start_message(self) -> None:
        self._state[0] = 0  # time high and low restart with every message
        self._state[1] = 0
