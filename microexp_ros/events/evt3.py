"""Prophesee EVT 3.0: a stateful decoder across packets and a compact stateful encoder.

EVT3 is a stream of little-endian 16-bit words whose top 4 bits give the type; y, time and the vector base are
sent only when they change, so both ends keep state across packets. Time is 24 bits of µs; a TIME_HIGH more than
10 units below the previous one is a wrap (+2^24 µs), smaller backward steps are sensor bit noise (the rule of
event_camera_codecs). Output times are ns (µs x 1000). The hot loops are numba kernels (cached on disk, nogil).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE
from microexp_ros.events.codecs import Decoder

# Word types (bits 15..12).
ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0xA, 0xE, 0xF

TIME_WRAP_US = 1 << 24
# A backward TIME_HIGH step of at most this many 4096 µs units is bit noise, not a wrap.
WRAP_MIN_DISTANCE = 10
MAX_COORDINATE = 2047
# The encoder refuses to walk more than this many 16.78 s wraps in one gap (use time_origin_ns instead).
MAX_WRAPS_PER_GAP = 1 << 16

DROP_NAMES = ("before_valid_time", "out_of_bounds", "unknown_word")


def _bit_tables() -> tuple[np.ndarray, np.ndarray]:
    """For every 12-bit vector mask: the set bit positions (ascending) and how many there are."""
    masks = np.arange(4096)
    set_bits = (masks[:, None] >> np.arange(12)) & 1
    counts = set_bits.sum(axis=1).astype(np.uint8)
    positions = np.zeros((4096, 12), dtype=np.uint8)
    for m in range(4096):
        idx = np.flatnonzero(set_bits[m])
        positions[m, : idx.size] = idx
    return positions, counts


_BIT_POSITIONS, _BIT_COUNTS = _bit_tables()

# Decoder state slots: y, time high (with wrap bits), time low, vector base x, vector polarity, and validity
# (0 = no time yet, 1 = TIME_HIGH seen, 2 = valid: a TIME_HIGH followed by a TIME_LOW).


@njit(cache=True, nogil=True)
def _decode_kernel(
    words, start, state, counts, drops, limit, width, height, time_base, events, tt_out, te_out, ti_out,
):  # pragma: no cover - compiled
    """EVT3 words -> events; evt3 has no time base (the message's is unused), times come from the words.

    ADDR_X / ADDR_Y, most of the words, share one branch: the event is written speculatively and kept by
    advancing n only when it is an in-bounds ADDR_X at a valid time below the limit (fewer mispredictions).
    """
    positions = _BIT_POSITIONS
    n_bits = _BIT_COUNTS
    y = state[0]
    high = state[1]
    low = state[2]
    base = state[3]
    vpol = state[4]
    valid = state[5]
    n = counts[0]
    nt = counts[1]
    cap = events.shape[0] - 12
    tcap = tt_out.shape[0]
    t_ns = (high | low) * 1000
    emit = valid == 2 and t_ns < limit
    y_ok = y < height
    status = 0
    i = start
    n_words = words.shape[0]
    while i < n_words:
        if n >= cap:  # room for the 12 events a word can hold
            status = 2
            break
        w = np.int64(words[i])
        code = w >> 12
        if (code & 0xD) == 0:  # ADDR_Y (0) or ADDR_X (2)
            v = w & 0x7FF
            r = events[n]
            r.t = t_ns
            r.x = v
            r.y = y
            r.p = (w >> 11) & 1
            is_x = code == ADDR_X
            keep = is_x & emit & y_ok & (v < width)
            n += keep
            if is_x and not keep:
                if valid != 2:
                    drops[0] += 1
                elif t_ns >= limit:
                    status = 1
                    break
                else:
                    drops[1] += 1
            y = v if code == ADDR_Y else y
            y_ok = y < height
        elif code == VECT_12 or code == VECT_8:
            span = 12 if code == VECT_12 else 8
            m = w & (0xFFF if code == VECT_12 else 0xFF)
            k = np.int64(n_bits[m])
            if emit and y_ok and base + span <= width:
                for j in range(k):
                    r = events[n + j]
                    r.t = t_ns
                    r.x = base + positions[m, j]
                    r.y = y
                    r.p = vpol
                n += k
            elif valid != 2:
                drops[0] += k
            elif t_ns >= limit:
                status = 1
                break
            else:
                for j in range(k):
                    x = base + positions[m, j]
                    if x < width and y_ok:
                        r = events[n]
                        r.t = t_ns
                        r.x = x
                        r.y = y
                        r.p = vpol
                        n += 1
                    else:
                        drops[1] += 1
            base += span
        elif code == TIME_LOW:
            low = w & 0xFFF
            t_ns = (high | low) * 1000
            if valid == 1:
                valid = 2
            emit = valid == 2 and t_ns < limit
        elif code == TIME_HIGH:
            new = w & 0xFFF
            last = (high >> 12) & 0xFFF
            if new < last and last - new > WRAP_MIN_DISTANCE:
                high += 1 << 24
            high = (high & ~np.int64(0xFFFFFF)) | (new << 12)
            t_ns = (high | low) * 1000
            if valid == 0:
                valid = 1
            emit = valid == 2 and t_ns < limit
        elif code == VECT_BASE_X:
            base = w & 0x7FF
            vpol = (w >> 11) & 1
        elif code == EXT_TRIGGER:
            if valid != 2:
                drops[0] += 1
            elif t_ns >= limit:
                status = 1
                break
            elif nt >= tcap:
                status = 3
                break
            else:
                tt_out[nt] = t_ns
                te_out[nt] = w & 1
                ti_out[nt] = (w >> 8) & 0xF
                nt += 1
        elif code == CONTINUED_4 or code == OTHERS or code == CONTINUED_12:  # no CD data
            pass
        else:
            drops[2] += 1
        i += 1
    state[0] = y
    state[1] = high
    state[2] = low
    state[3] = base
    state[4] = vpol
    state[5] = valid
    counts[0] = n
    counts[1] = nt
    return status, i


class Evt3Decoder(Decoder):
    """EVT 3.0 words to events and triggers, state carried across packets (a stream: partial words carry)."""

    encoding = "evt3"
    word_dtype = "<u2"
    carries_partial_words = True
    max_side = MAX_COORDINATE + 1
    drop_names = DROP_NAMES
    state_size = 6
    kernel = _decode_kernel


# Encoder state slots: absolute TIME_HIGH (t_us >> 12, -1 before the first), time low, y, vector base, polarity.


@njit(cache=True, nogil=True)
def _emit_time(out, n, state, t_us, force_high):  # pragma: no cover - compiled
    """Write the TIME_HIGH/TIME_LOW words that move the decoder to t_us; return the new word count."""
    target = t_us >> 12
    if target != state[0] or force_high:
        cur = state[0] if state[0] >= 0 else 0
        cur_roll = cur >> 12
        cur_payload = cur & 0xFFF
        roll = target >> 12
        payload = target & 0xFFF
        while cur_roll < roll:
            if cur_roll + 1 == roll and cur_payload - payload > WRAP_MIN_DISTANCE:
                break  # the final TIME_HIGH below is itself a detectable wrap
            if cur_payload != 0xFFF:
                out[n] = 0x8FFF
                n += 1
            out[n] = 0x8000  # 0xFFF -> 0: a wrap
            n += 1
            cur_roll += 1
            cur_payload = 0
        out[n] = 0x8000 | payload
        n += 1
        state[0] = target
    low = t_us & 0xFFF
    if low != state[1]:
        out[n] = 0x6000 | low
        n += 1
        state[1] = low
    return n


@njit(cache=True, nogil=True)
def _encode_kernel(t_us, xs, ys, ps, tr_us, tr_edge, tr_id, state, self_contained, out):  # pragma: no cover
    n_ev = t_us.shape[0]
    n_tr = tr_us.shape[0]
    n = 0
    i = 0
    j = 0
    force = self_contained
    if force:
        state[1] = -1  # TIME_LOW, ADDR_Y and VECT_BASE_X all resent at the start of the packet
        state[2] = -1
        state[3] = -1
    while i < n_ev or j < n_tr:
        if j < n_tr and (i >= n_ev or tr_us[j] <= t_us[i]):
            n = _emit_time(out, n, state, tr_us[j], force)
            force = False
            out[n] = 0xA000 | (np.int64(tr_id[j]) << 8) | tr_edge[j]
            n += 1
            j += 1
            continue
        t = t_us[i]
        n = _emit_time(out, n, state, t, force)
        force = False
        y = np.int64(ys[i])
        if y != state[2]:
            out[n] = y
            n += 1
            state[2] = y
        x = np.int64(xs[i])
        p = np.int64(ps[i])
        base = state[3]
        if base >= 0 and state[4] == p and base <= x and x < base + 12:
            # continue the vector run: every following event of this (t, y, p) with rising x inside the window
            mask = 0
            last_x = -1
            k = i
            while k < n_ev and t_us[k] == t and ys[k] == y and ps[k] == p:
                xk = np.int64(xs[k])
                if xk <= last_x or xk >= base + 12:
                    break
                mask |= 1 << (xk - base)
                last_x = xk
                k += 1
            if mask < 256:
                out[n] = 0x5000 | mask
                state[3] = base + 8
            else:
                out[n] = 0x4000 | mask
                state[3] = base + 12
            n += 1
            i = k
        else:
            # a vector pays when at least 3 events fall in the 12-pixel window starting here
            count = 0
            last_x = -1
            k = i
            while k < n_ev and count < 3 and t_us[k] == t and ys[k] == y and ps[k] == p:
                xk = np.int64(xs[k])
                if xk <= last_x or xk >= x + 12:
                    break
                last_x = xk
                count += 1
                k += 1
            if count >= 3:
                out[n] = 0x3000 | (p << 11) | x
                state[3] = x
                state[4] = p
            else:
                out[n] = 0x2000 | (p << 11) | x
                i += 1
            n += 1
    return n


class Evt3Encoder:
    """Events (and triggers) to compact EVT 3.0 bytes, state carried across packets.

    Times are encoded in µs relative to `time_origin_ns` (sub-µs parts are floored); TIME_HIGH, TIME_LOW and
    ADDR_Y are written only when they change, runs of events on one row at one time become VECT_BASE_X +
    VECT_12/VECT_8 words, and 24-bit wraps are written so the decoder's wrap rule detects them. With
    `self_contained=True` every packet restarts with TIME_HIGH + TIME_LOW + ADDR_Y (+ VECT_BASE_X), so a
    subscriber joining mid-stream can decode it (modulo the 16.78 s wrap count, which EVT3 cannot carry).
    """

    def __init__(self, self_contained: bool = False, time_origin_ns: int = 0) -> None:
        self.self_contained = bool(self_contained)
        self.time_origin_ns = int(time_origin_ns)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._state = np.array([-1, -1, -1, -1, -1], dtype=np.int64)
        self._last_us = 0

    def encode(self, events: np.ndarray, triggers: np.ndarray | None = None) -> bytes:
        """One packet of EVT3 bytes for time-ordered events and triggers; ValueError on what cannot be encoded."""
        t_us, xs, ys, ps = self._event_columns(events)
        tr_us, tr_edge, tr_id = self._trigger_columns(triggers)
        first = min(t_us[:1].tolist() + tr_us[:1].tolist(), default=self._last_us)
        last = max(t_us[-1:].tolist() + tr_us[-1:].tolist(), default=self._last_us)
        if first < self._last_us:
            raise ValueError(
                f"time goes backwards across packets: packet starts at {first} µs, previous ended at {self._last_us} µs"
            )
        prev_roll = max(int(self._state[0]), 0) >> 12
        wraps = (last >> 24) - prev_roll
        if wraps > MAX_WRAPS_PER_GAP:
            raise ValueError(
                f"events at {last} µs after the time origin would need {wraps} EVT3 time wraps; "
                "pass time_origin_ns close to the first event time"
            )
        capacity = 4 * (t_us.size + tr_us.size) + 2 * (wraps + 1) + 8
        out = np.empty(capacity, dtype="<u2")
        n = _encode_kernel(t_us, xs, ys, ps, tr_us, tr_edge, tr_id, self._state, self.self_contained, out)
        self._last_us = last
        return out[:n].tobytes()

    def _microseconds(self, t: np.ndarray, what: str) -> np.ndarray:
        t_us = (t.astype(np.int64) - self.time_origin_ns) // 1000
        if t_us.size:
            if int(t_us[0]) < 0:
                raise ValueError(f"{what} time {int(t[0])} ns is before the time origin {self.time_origin_ns} ns")
            backwards = np.flatnonzero(np.diff(t_us) < 0)
            if backwards.size:
                k = int(backwards[0])
                raise ValueError(f"{what} must be time-ordered: t[{k + 1}]={int(t[k + 1])} < t[{k}]={int(t[k])}")
        return t_us

    def _event_columns(self, events: np.ndarray) -> tuple[np.ndarray, ...]:
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
            raise ValueError(f"events must be an EVENT_DTYPE array, got {getattr(events, 'dtype', type(events))}")
        if events.size and (
            int(events["x"].max()) > MAX_COORDINATE
            or int(events["y"].max()) > MAX_COORDINATE
            or int(events["p"].max()) > 1
        ):
            raise ValueError(f"EVT3 carries x, y <= {MAX_COORDINATE} and p in {{0, 1}}; events exceed that")
        return (
            self._microseconds(events["t"], "events"),
            np.ascontiguousarray(events["x"]),
            np.ascontiguousarray(events["y"]),
            np.ascontiguousarray(events["p"]),
        )

    def _trigger_columns(self, triggers: np.ndarray | None) -> tuple[np.ndarray, ...]:
        if triggers is None:
            triggers = np.zeros(0, dtype=TRIGGER_DTYPE)
        if not isinstance(triggers, np.ndarray) or triggers.dtype != TRIGGER_DTYPE:
            raise ValueError(f"triggers must be a TRIGGER_DTYPE array, got {getattr(triggers, 'dtype', type(triggers))}")
        if triggers.size and (int(triggers["edge"].max()) > 1 or int(triggers["id"].max()) > 15):
            raise ValueError("EVT3 triggers carry edge in {0, 1} and id in 0..15; triggers exceed that")
        return (
            self._microseconds(triggers["t"], "triggers"),
            np.ascontiguousarray(triggers["edge"]),
            np.ascontiguousarray(triggers["id"]),
        )


def encode_evt3(events: np.ndarray, triggers: np.ndarray | None = None) -> bytes:
    """One-shot EVT3 encoding of a whole time-ordered stream (time origin 0)."""
    return Evt3Encoder().encode(events, triggers)
