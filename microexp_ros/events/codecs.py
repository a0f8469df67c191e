"""One decoder interface for every event encoding an EventPacket (or a raw file) can carry.

Each codec module (evt3, evt2, mono, libcaer, libcaer_cmp) subclasses `Decoder` with its word type, state size,
drop reasons and one numba kernel over whole words. This base class owns what they share: turning any buffer
into words, carrying a partial word across packets (stream formats) or counting it as truncated (message
formats), the `decode_until` byte bookkeeping, growing the output arrays, and the cumulative `drops` counter.
"""

from __future__ import annotations

import collections
import importlib
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, empty_triggers

# Every encoding make_decoder accepts, with the module and class that decode it.
_DECODERS: dict[str, tuple[str, str]] = {
    "evt3": ("microexp_ros.events.evt3", "Evt3Decoder"),
    "evt2": ("microexp_ros.events.evt2", "Evt2Decoder"),
    "mono": ("microexp_ros.events.mono", "MonoDecoder"),
    "libcaer": ("microexp_ros.events.libcaer", "LibcaerDecoder"),
    "libcaer_cmp": ("microexp_ros.events.libcaer_cmp", "LibcaerCmpDecoder"),
}
ENCODINGS: tuple[str, ...] = tuple(_DECODERS)

# A time limit no event reaches: decode() is decode_until() without a bound.
NO_LIMIT = np.iinfo(np.int64).max


@dataclass
class DecodeResult:
    """Events (EVENT_DTYPE, stream order, t in ns of sensor time) and external triggers (TRIGGER_DTYPE)."""

    events: np.ndarray = field(default_factory=empty_events)
    triggers: np.ndarray = field(default_factory=empty_triggers)


class OutputBuffer:
    """Growable output of a kernel: events written as records, triggers through per-field views."""

    def __init__(self, event_capacity: int, trigger_capacity: int = 16) -> None:
        self.events = np.empty(max(int(event_capacity), 16), dtype=EVENT_DTYPE)
        self.triggers = np.empty(max(int(trigger_capacity), 16), dtype=TRIGGER_DTYPE)
        self.n_events = 0
        self.n_triggers = 0

    def trigger_fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tr = self.triggers
        return tr["t"], tr["edge"], tr["id"]

    def grow_events(self, needed: int) -> None:
        """Make room for at least `needed` more events (amortised doubling)."""
        size = max(self.events.size * 2, self.n_events + int(needed))
        grown = np.empty(size, dtype=EVENT_DTYPE)
        grown[: self.n_events] = self.events[: self.n_events]
        self.events = grown

    def grow_triggers(self) -> None:
        grown = np.empty(self.triggers.size * 2, dtype=TRIGGER_DTYPE)
        grown[: self.n_triggers] = self.triggers[: self.n_triggers]
        self.triggers = grown

    def result(self) -> DecodeResult:
        return DecodeResult(self.events[: self.n_events], self.triggers[: self.n_triggers])


# Kernel return codes shared by every codec's numba loop.
DONE, STOPPED_AT_LIMIT, EVENTS_FULL, TRIGGERS_FULL = 0, 1, 2, 3


# The helpers below are inlined into each codec's kernel (numba IR inlining), so sharing them costs no speed.
# numba's on-disk cache keys a kernel on its own file only: after editing them, delete events/__pycache__.
@njit(inline="always")
def stop_status(t: int, limit: int, n: int, needed: int, cap: int, full: int) -> int:  # pragma: no cover - compiled
    """STOPPED_AT_LIMIT, `full` (EVENTS_FULL/TRIGGERS_FULL) or DONE: may `needed` records at t join n of cap?"""
    if t >= limit:
        return STOPPED_AT_LIMIT
    if n + needed > cap:
        return full
    return DONE


@njit(inline="always")
def put_event(
    events: np.ndarray, n: int, t: int, x: int, y: int, p: int, width: int, height: int, drops: np.ndarray,
    off_sensor: int,
) -> int:  # pragma: no cover - compiled
    """Write the event at events[n] if (x, y) is on the sensor, else count it in drops[off_sensor]; the new n."""
    if x < width and y < height:
        r = events[n]
        r.t = t
        r.x = x
        r.y = y
        r.p = p
        return n + 1
    drops[off_sensor] += 1
    return n


def run_kernel(call, out: OutputBuffer, counts: np.ndarray, n_words: int) -> int:
    """Drive a decode kernel until it finishes or stops at the limit, growing `out` when it fills.

    `call(pos)` runs the kernel from word `pos` and returns (status, word reached). Returns the words used.
    """
    pos = 0
    while True:
        status, pos = call(pos)
        out.n_events, out.n_triggers = int(counts[0]), int(counts[1])
        if status == EVENTS_FULL:
            remaining = max(n_words - pos, 1)
            per_word = out.n_events / max(pos, 1)
            out.grow_events(int(remaining * min(max(per_word, 1.0), 12.0) * 1.25) + 64)
        elif status == TRIGGERS_FULL:
            out.grow_triggers()
        else:
            assert status in (DONE, STOPPED_AT_LIMIT)
            return pos


def as_byte_array(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only uint8 view of `data` without copying where the layout allows; TypeError otherwise."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    raise TypeError(f"event data must be bytes, bytearray, memoryview or a numpy array, got {type(data).__name__}")


class Decoder:
    """A stateful decoder for one stream: state (time, coordinates, partial words) carries across calls.

    `drops` counts, cumulatively, what was dropped and why ("before_valid_time", "out_of_bounds",
    "unknown_word", "truncated", "invalid"). After a decode_until() that stopped early, the next call
    (decode_until or decode) continues that message from where it stopped; reset() abandons it.
    """

    encoding: str = ""
    # Little-endian word type the stream is made of ('<u2' EVT3, '<u4' EVT2, '<u8' mono/libcaer).
    word_dtype: str = "<u2"
    # Stream formats (evt3, evt2) keep a partial trailing word for the next call; message formats count it.
    carries_partial_words: bool = False
    # Largest sensor side the format's coordinate fields can address.
    max_side: int = 1 << 15
    # What the kernel's drop counters mean, in its order, and how many int64 state slots it keeps.
    drop_names: tuple[str, ...] = ()
    state_size: int = 0
    # The numba kernel: (words, start, state, counts, drops, limit, width, height, time_base,
    #   events, trigger_t, trigger_edge, trigger_id) -> (status, word reached); see run_kernel. It writes
    #   events as records (faster than per-field views) and returns EVENTS_FULL when it needs more room.
    kernel = None

    def __init__(self, width: int, height: int) -> None:
        width, height = int(width), int(height)
        if not (0 < width <= self.max_side and 0 < height <= self.max_side):
            raise ValueError(
                f"{self.encoding} sensor geometry must be 1..{self.max_side} per side, got {width}x{height}"
            )
        self.width = width
        self.height = height
        self.word_bytes = np.dtype(self.word_dtype).itemsize
        self.drops: collections.Counter[str] = collections.Counter()
        self.reset()

    def reset(self) -> None:
        """Forget the stream state (as for a new stream); the cumulative drop counts are kept."""
        self._pending = np.empty(0, dtype=np.uint8)
        self._state = np.zeros(self.state_size, dtype=np.int64)
        self._resume = False

    def finish(self) -> None:
        """End of stream: a partial word still held from the last packet is counted as truncated."""
        if self._pending.size:
            self.drops["truncated"] += 1
            self._pending = np.empty(0, dtype=np.uint8)

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray, time_base: int = 0) -> DecodeResult:
        """Decode one packet (or any chunk of a stream) completely."""
        result, _ = self._run(data, int(time_base), NO_LIMIT)
        return result

    def decode_until(
        self, data: bytes | bytearray | memoryview | np.ndarray, time_limit_ns: int, time_base: int = 0
    ) -> tuple[DecodeResult, int]:
        """Decode only events with t < time_limit_ns; return them and how many bytes of `data` were used.

        Pass data[n_bytes_consumed:] (with the same time_base) on the next call to continue the message.
        """
        return self._run(data, int(time_base), int(time_limit_ns))

    def _start_message(self) -> None:
        """Reset what a message format restarts per message (its relative time); stream formats keep all."""

    def _run(self, data, time_base: int, limit: int) -> tuple[DecodeResult, int]:
        if not 0 <= time_base <= NO_LIMIT:
            raise ValueError(f"time_base must be a non-negative int64 of ns, got {time_base}")
        limit = min(limit, NO_LIMIT)
        raw = as_byte_array(data)
        if not self._resume:
            self._start_message()
        carried = self._pending.size
        buf = np.concatenate([self._pending, raw]) if carried else raw
        n_whole = buf.size - buf.size % self.word_bytes
        out = OutputBuffer(n_whole // self.word_bytes + 16)
        used = self._decode_words(buf[:n_whole], time_base, limit, out)
        self._resume = used < n_whole
        if self._resume:  # stopped at the time limit
            if used < carried:  # the stopping word began in the carried bytes: keep them, use nothing new
                return out.result(), 0
            self._pending = np.empty(0, dtype=np.uint8)
            return out.result(), used - carried
        tail = buf[n_whole:]
        if self.carries_partial_words:
            self._pending = tail.copy()
        else:
            self._pending = np.empty(0, dtype=np.uint8)
            if tail.size:
                self.drops["truncated"] += 1
        return out.result(), raw.size

    def _decode_words(self, buf: np.ndarray, time_base: int, limit: int, out: OutputBuffer) -> int:
        """Run the kernel over the whole words of `buf`; return the bytes used (< buf.size only at the limit)."""
        words = buf.view(self.word_dtype)
        words.flags.writeable = False  # one numba signature whatever buffer type came in
        counts = np.zeros(2, dtype=np.int64)
        drops = np.zeros(max(len(self.drop_names), 1), dtype=np.int64)
        kernel = type(self).kernel

        def call(pos: int) -> tuple[int, int]:
            return kernel(
                words, pos, self._state, counts, drops, limit, self.width, self.height, time_base,
                out.events, *out.trigger_fields(),
            )

        used = run_kernel(call, out, counts, words.size)
        for name, count in zip(self.drop_names, drops.tolist()):
            if count:
                self.drops[name] += count
        return used * self.word_bytes


def make_decoder(encoding: str, width: int, height: int) -> Decoder:
    """A fresh decoder for `encoding` (one of ENCODINGS) and a width x height sensor; ValueError if either is bad."""
    if encoding not in _DECODERS:
        raise ValueError(f"unknown event encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    module_name, class_name = _DECODERS[encoding]
    return getattr(importlib.import_module(module_name), class_name)(width, height)
