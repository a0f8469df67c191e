"""Prophesee EVT 3.0: a stateful decoder across packets, a compact stateful encoder, and a splicer that cuts
self-contained windows out of a stream's own words.

EVT3 is a stream of little-endian 16-bit words whose top 4 bits give the type; y, time and the vector base are
sent only when they change, so both ends keep state across packets. Time is 24 bits of µs; a TIME_HIGH more than
10 units below the previous one is a wrap (+2^24 µs), smaller backward steps are sensor bit noise (the rule of
event_camera_codecs). Output times are ns (µs x 1000). The hot loops are numba kernels (cached on disk, nogil).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numba import njit

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE
from microexp_ros.events.codecs import DONE, STOPPED_AT_LIMIT, Decoder

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

    def stream_state(self) -> np.ndarray | None:
        """A copy of the state the next packet starts from (y, time high with wraps, time low, vector base,
        vector polarity, validity); None while a partial word or a stopped decode_until is held."""
        if self._pending.size or self._resume:
            return None
        return self._state.copy()


# Encoder state slots: absolute TIME_HIGH (t_us >> 12, -1 before the first), TIME_LOW, ADDR_Y, vector base and
# vector polarity as last written (-1 = not yet), and the time of the last element encoded (µs).
_HIGH, _LOW, _Y, _BASE, _VPOL, _LAST_US = range(6)
# Reasons _check_times gives for the first time that cannot be encoded.
_OK, _BEFORE_ORIGIN, _NOT_ORDERED = range(3)


@njit(cache=True, nogil=True)
def _check_times(t, origin_ns):  # pragma: no cover - compiled
    """(reason, index) of the first time before the origin or earlier in µs than the one before it (_OK, -1
    if none), and the last time in µs after the origin (-1 if empty)."""
    prev = np.int64(-1)
    for i in range(t.shape[0]):
        rel = t[i] - origin_ns
        if rel < 0:
            return _BEFORE_ORIGIN, i, prev
        t_us = rel // 1000
        if t_us < prev:
            return _NOT_ORDERED, i, prev
        prev = t_us
    return _OK, -1, prev


@njit(cache=True, nogil=True)
def _first_event_out_of_range(events):  # pragma: no cover - compiled
    """Index of the first event EVT3 cannot address (x or y > 2047, p > 1), -1 if none."""
    for i in range(events.shape[0]):
        r = events[i]
        if r.x > MAX_COORDINATE or r.y > MAX_COORDINATE or r.p > 1:
            return i
    return -1


@njit(inline="always")
def _put_time(out, n, high, low, t_us, force_high):  # pragma: no cover - compiled
    """Write the TIME_HIGH/TIME_LOW words that move the decoder from (high, low) to t_us; (n, high, low) after."""
    target = t_us >> 12
    if target != high or force_high:
        cur = high if high >= 0 else 0
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
        high = target
    t_low = t_us & 0xFFF
    if t_low != low:
        out[n] = 0x6000 | t_low
        n += 1
        low = t_low
    return n, high, low


@njit(cache=True, nogil=True)
def _time_words(out, t_us):  # pragma: no cover - compiled
    """TIME_HIGH (walking the wraps up from 0) and TIME_LOW words that bring a fresh decoder to t_us."""
    n, _, _ = _put_time(out, 0, -1, -1, t_us, True)
    return n


@njit(inline="always")
def _put_trigger(out, n, high, low, triggers, j, t_us, origin_ns, force_high):  # pragma: no cover - compiled
    """Write trigger j (time words, then EXT_TRIGGER) at t_us; (n, high, low, j + 1, next trigger's t_us)."""
    n, high, low = _put_time(out, n, high, low, t_us, force_high)
    out[n] = 0xA000 | (np.int64(triggers[j].id) << 8) | np.int64(triggers[j].edge)
    n += 1
    j += 1
    if j < triggers.shape[0]:
        t_us = (triggers[j].t - origin_ns) // 1000
    return n, high, low, j, t_us


@njit(cache=True, nogil=True)
def _encode_kernel(events, triggers, origin_ns, state, self_contained, out):  # pragma: no cover - compiled
    """Checked, time-ordered event and trigger records -> EVT3 words in `out`; returns the word count.

    Reads the records directly (no column copies) and keeps the stream state in locals. A run of events on
    one row at one time and polarity with rising x becomes VECT_BASE_X + VECT_12/VECT_8 words where that pays
    (at least 3 events in the 12-pixel window), otherwise each event is one ADDR_X word.
    """
    n_ev = events.shape[0]
    n_tr = triggers.shape[0]
    high = state[_HIGH]
    low = state[_LOW]
    y_cur = state[_Y]
    base = state[_BASE]
    vpol = state[_VPOL]
    force = self_contained
    if force:  # TIME_LOW, ADDR_Y and VECT_BASE_X all resent at the start of the packet
        low = -1
        y_cur = -1
        base = -1
    n = 0
    i = 0
    j = 0
    next_tr = (triggers[0].t - origin_ns) // 1000 if n_tr else 0
    while i < n_ev:
        r = events[i]
        t = (r.t - origin_ns) // 1000
        while j < n_tr and next_tr <= t:
            n, high, low, j, next_tr = _put_trigger(out, n, high, low, triggers, j, next_tr, origin_ns, force)
            force = False
        n, high, low = _put_time(out, n, high, low, t, force)
        force = False
        y = np.int64(r.y)
        if y != y_cur:
            out[n] = y
            n += 1
            y_cur = y
        x = np.int64(r.x)
        p = np.int64(r.p)
        if base >= 0 and vpol == p and base <= x and x < base + 12:
            # continue the vector run: every following event of this (t, y, p) with rising x inside the window
            mask = 1 << (x - base)
            last_x = x
            k = i + 1
            while k < n_ev:
                rk = events[k]
                xk = np.int64(rk.x)
                if (rk.y != y or rk.p != p or xk <= last_x or xk >= base + 12
                        or (rk.t - origin_ns) // 1000 != t):
                    break
                mask |= 1 << (xk - base)
                last_x = xk
                k += 1
            if mask < 256:
                out[n] = 0x5000 | mask
                base += 8
            else:
                out[n] = 0x4000 | mask
                base += 12
            n += 1
            i = k
        else:
            # a vector pays when at least 3 events fall in the 12-pixel window starting here
            count = 1
            last_x = x
            k = i + 1
            while k < n_ev and count < 3:
                rk = events[k]
                xk = np.int64(rk.x)
                if (rk.y != y or rk.p != p or xk <= last_x or xk >= x + 12
                        or (rk.t - origin_ns) // 1000 != t):
                    break
                last_x = xk
                count += 1
                k += 1
            if count >= 3:
                out[n] = 0x3000 | (p << 11) | x
                base = x
                vpol = p
            else:
                out[n] = 0x2000 | (p << 11) | x
                i += 1
            n += 1
    while j < n_tr:
        n, high, low, j, next_tr = _put_trigger(out, n, high, low, triggers, j, next_tr, origin_ns, force)
        force = False
    state[_HIGH] = high
    state[_LOW] = low
    state[_Y] = y_cur
    state[_BASE] = base
    state[_VPOL] = vpol
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
        self._state = np.array([-1, -1, -1, -1, -1, 0], dtype=np.int64)

    def follow(self, high: int, last_us: int) -> None:
        """Continue after words written elsewhere that left the decoder at TIME_HIGH `high` (t_us >> 12,
        origin 0) after an element at `last_us`: the next packet walks no wrap the decoder has already seen."""
        self._state[_HIGH] = int(high)
        self._state[_LAST_US] = max(int(self._state[_LAST_US]), int(last_us))

    def encode(self, events: np.ndarray, triggers: np.ndarray | None = None) -> bytes:
        """One packet of EVT3 bytes for time-ordered events and triggers; ValueError on what cannot be encoded."""
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
            raise ValueError(f"events must be a 1-D EVENT_DTYPE array, got {getattr(events, 'dtype', type(events))}")
        if triggers is None:
            triggers = np.zeros(0, dtype=TRIGGER_DTYPE)
        if not isinstance(triggers, np.ndarray) or triggers.dtype != TRIGGER_DTYPE or triggers.ndim != 1:
            raise ValueError(f"triggers must be a 1-D TRIGGER_DTYPE array, got "
                             f"{getattr(triggers, 'dtype', type(triggers))}")
        bad = _first_event_out_of_range(events)
        if bad >= 0:
            raise ValueError(f"EVT3 carries x, y <= {MAX_COORDINATE} and p in {{0, 1}}; events[{bad}] = "
                             f"{events[bad]} exceeds that")
        if triggers.size and (int(triggers["edge"].max()) > 1 or int(triggers["id"].max()) > 15):
            raise ValueError("EVT3 triggers carry edge in {0, 1} and id in 0..15; triggers exceed that")
        last_ev = self._check_times(events, "events")
        last_tr = self._check_times(triggers, "triggers")
        origin = self.time_origin_ns
        first = min([(int(a["t"][0]) - origin) // 1000 for a in (events, triggers) if a.size],
                    default=int(self._state[_LAST_US]))
        last = max(last_ev, last_tr, int(self._state[_LAST_US]))
        if first < self._state[_LAST_US]:
            raise ValueError(f"time goes backwards across packets: packet starts at {first} µs, previous ended "
                             f"at {int(self._state[_LAST_US])} µs")
        wraps = (last >> 24) - (max(int(self._state[_HIGH]), 0) >> 12)
        if wraps > MAX_WRAPS_PER_GAP:
            raise ValueError(f"events at {last} µs after the time origin would need {wraps} EVT3 time wraps; "
                             "pass time_origin_ns close to the first event time")
        out = np.empty(4 * (events.size + triggers.size) + 2 * (wraps + 1) + 8, dtype="<u2")
        n = _encode_kernel(events, triggers, origin, self._state, self.self_contained, out)
        self._state[_LAST_US] = last
        return out[:n].tobytes()

    def _check_times(self, records: np.ndarray, what: str) -> int:
        """The last time (µs after the origin) of the records; ValueError naming the first that cannot be sent."""
        reason, k, last = _check_times(records["t"], self.time_origin_ns)
        if reason == _BEFORE_ORIGIN:
            raise ValueError(f"{what} time {int(records['t'][k])} ns is before the time origin "
                             f"{self.time_origin_ns} ns")
        if reason == _NOT_ORDERED:
            raise ValueError(f"{what} must be time-ordered: t[{k}]={int(records['t'][k])} < "
                             f"t[{k - 1}]={int(records['t'][k - 1])}")
        return int(last)


def encode_evt3(events: np.ndarray, triggers: np.ndarray | None = None) -> bytes:
    """One-shot EVT3 encoding of a whole time-ordered stream (time origin 0)."""
    return Evt3Encoder().encode(events, triggers)


@dataclass
class _SplicePacket:
    words: np.ndarray        # the packet's EVT3 words
    state: np.ndarray        # decoder state before its first word
    min_t: int               # earliest event/trigger time it decoded to (ns; max_t if it has none)
    max_t: int               # latest event/trigger time it decoded to (ns)
    events_before: int       # events the stream decoded before this packet
    triggers_before: int
    clean: bool              # its events and triggers all reached the window history (none out of order)


class Evt3Splicer:
    """Self-contained EVT3 for a time window, spliced from the stream's own words instead of re-encoded.

    time_sync keeps the words of recent packets with the decoder state before each (`add`). `cut(start, end)`
    finds where a decoder stops for `start` and for `end` (re-decoding only the two packets concerned), and
    returns the state at `start` as words (TIME_HIGH walk from 0 with the wraps, TIME_LOW, ADDR_Y,
    VECT_BASE_X) followed by the input words in between: it decodes to exactly the events and triggers the
    stream decoded between those points. It returns None when that cannot be shown to equal the window (the
    counts differ, a packet had out-of-order times, or the state cannot be written); the caller then encodes.
    A bound that falls between two kept packets (every element of one before it, of the next at or after it)
    needs no re-decode: the cut starts or ends at that packet's first word.

    `restate=False` writes the state for a fresh decoder (time_sync's windows, decoded one by one);
    `restate=True` for a decoder that follows the whole stream (the driver's packets): TIME_HIGH is restated
    without walking the wraps up from 0, as a self-contained packet of `Packetizer` restates it, so a stateful
    decoder sees no phantom wrap and a late joiner decodes times modulo the wrap. `end_state` is the decoder
    state where the last cut ended (None when it ended at the newest kept word).
    """

    def __init__(self, width: int, height: int, restate: bool = False) -> None:
        self.width, self.height = int(width), int(height)
        self.restate = bool(restate)
        self.end_state: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the kept packets (a stream restart or a packet that does not start at a word boundary)."""
        self._packets: deque[_SplicePacket] = deque()
        self._events = 0
        self._triggers = 0

    def add(self, data: bytes | memoryview, state: np.ndarray | None, events: np.ndarray, triggers: np.ndarray,
            clean: bool) -> None:
        """Keep one packet: its bytes, the decoder state before it (None: not splice-able, forget all)."""
        if state is None or len(data) % 2:
            self.reset()
            return
        if clean:   # in time order: the first elements are the earliest, the last the latest
            firsts = events["t"][:1].tolist() + triggers["t"][:1].tolist()
            times = events["t"][-1:].tolist() + triggers["t"][-1:].tolist()
        else:
            firsts = [int(t.min()) for t in (events["t"], triggers["t"]) if t.size]
            times = [int(t.max()) for t in (events["t"], triggers["t"]) if t.size]
        last = max(times + [self._packets[-1].max_t if self._packets else np.iinfo(np.int64).min])
        words = np.frombuffer(data if isinstance(data, bytes) else bytes(data), "<u2")
        self._packets.append(_SplicePacket(words, state, min(firsts, default=last), last,
                                           self._events, self._triggers, bool(clean)))
        self._events += int(events.size)
        self._triggers += int(triggers.size)

    def trim_before(self, t_ns: int) -> None:
        """Forget packets whose elements are all earlier than `t_ns` (no window starting there can need them)."""
        while self._packets and self._packets[0].max_t < t_ns:
            self._packets.popleft()

    def cut(self, start: int, end: int, n_events: int, n_triggers: int) -> bytes | None:
        """EVT3 bytes decoding to the stream's events/triggers with start <= t < end, expected to number
        n_events/n_triggers; None if the kept packets cannot show that."""
        packets = list(self._packets)
        k_s = next((k for k, p in enumerate(packets) if p.max_t >= start), None)
        if k_s is None:
            return None
        k_e = next((k for k in range(k_s, len(packets)) if packets[k].max_t >= end), None)
        if not all(p.clean for p in packets[k_s:(len(packets) if k_e is None else k_e + 1)]):
            return None
        self.end_state = None
        i_s, ev_s, tr_s, state = self._seek(packets[k_s], start)
        if k_e is None:  # the stream has not passed `end` yet: everything kept up to now
            k_e, i_e, ev_e, tr_e = len(packets) - 1, packets[-1].words.size, self._events, self._triggers
        else:
            i_e, ev_e, tr_e, self.end_state = self._seek(packets[k_e], end)
        if i_s < 0 or i_e < 0 or ev_e - ev_s != n_events or tr_e - tr_s != n_triggers:
            return None
        prefix = _state_words(state, self.restate)
        if prefix is None:
            return None
        if k_s == k_e:
            parts = [packets[k_s].words[i_s:i_e]]
        else:
            parts = [packets[k_s].words[i_s:], *(p.words for p in packets[k_s + 1:k_e]), packets[k_e].words[:i_e]]
        return b"".join([prefix.tobytes(), *(part.tobytes() for part in parts)])

    def _seek(self, packet: _SplicePacket, limit: int) -> tuple[int, int, int, np.ndarray]:
        """Where a decoder entering `packet` stops for `limit`: (word index, stream events and triggers decoded
        before it, state there); word index -1 if it did not stop inside the packet."""
        if packet.clean and packet.min_t >= limit and packet.state[5] == 2:
            # it stops at the first word (the previous max_t < limit), in a state that can be written
            return 0, packet.events_before, packet.triggers_before, packet.state
        state = packet.state.copy()
        counts = np.zeros(2, dtype=np.int64)
        drops = np.zeros(len(DROP_NAMES), dtype=np.int64)
        n_words = packet.words.size
        events = np.empty(12 * n_words + 16, dtype=EVENT_DTYPE)   # pages are touched only where written
        tt = np.empty(n_words + 1, dtype=np.int64)
        te = np.empty(n_words + 1, dtype=np.uint8)
        ti = np.empty(n_words + 1, dtype=np.uint8)
        status, i = _decode_kernel(packet.words, 0, state, counts, drops, limit, self.width, self.height, 0,
                                   events, tt, te, ti)
        if status != STOPPED_AT_LIMIT:
            assert status == DONE
            i = -1
        return int(i), packet.events_before + int(counts[0]), packet.triggers_before + int(counts[1]), state


def _state_words(state: np.ndarray, restate: bool) -> np.ndarray | None:
    """Words that bring a decoder to a valid decoder `state` (None if it is not valid or not writable): with
    `restate`, for a decoder already in it, TIME_HIGH restated without its wraps (what a self-contained packet
    starts with); otherwise for a fresh decoder, TIME_HIGH walked up from 0 through the wraps."""
    y, high, low, base, vpol, valid = (int(v) for v in state)
    if valid != 2 or not (0 <= y <= MAX_COORDINATE and 0 <= base <= MAX_COORDINATE):
        return None
    position = np.array([y, (VECT_BASE_X << 12) | (vpol << 11) | base], dtype="<u2")
    if restate:
        return np.concatenate([np.array([(TIME_HIGH << 12) | ((high >> 12) & 0xFFF), (TIME_LOW << 12) | low],
                                        dtype="<u2"), position])
    if high >> 24 > MAX_WRAPS_PER_GAP:   # garbage time far ahead: as many words as the encoder would refuse
        return None
    out = np.empty(2 * ((high >> 24) + 1) + 8, dtype="<u2")
    n = _time_words(out, high | low)
    out[n:n + 2] = position
    return out[:n + 2]

