"""Events → EVT3 EventPacket payloads, closed like metavision_driver closes its messages.

A packet opens at its first event (or trigger) and closes when the stream reaches `time_threshold_ns` past
that start, or when it holds as many events as `size_threshold_bytes` can carry in EVT3's worst case (8 bytes
per event: TIME_HIGH, TIME_LOW, ADDR_Y, ADDR_X), so a packet never exceeds the size threshold by more than its
few per-packet state words. Packets are self-contained EVT3 (time and row restated at the start), so a
subscriber that loses a best-effort packet still decodes the next one. Times are encoded relative to
`time_origin_ns`, a multiple of the 16.78 s EVT3 time wrap, so a decoder that sees the stream from its start
reproduces sensor time exactly (modulo whole wraps for a late joiner, which EVT3 cannot avoid).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, empty_triggers
from microexp_ros.events.evt3 import TIME_WRAP_US, Evt3Encoder, Evt3Splicer
from microexp_ros.events.window import in_order_mask, join

WRAP_NS = TIME_WRAP_US * 1000
# EVT3 worst case per event when nothing is shared with its neighbour: TIME_HIGH, TIME_LOW, ADDR_Y, ADDR_X.
WORST_BYTES_PER_EVENT = 8


@dataclass(frozen=True)
class Packet:
    """One closed packet: its EVT3 bytes and the events/triggers it carries (sensor time, ns)."""

    data: bytes
    events: np.ndarray
    triggers: np.ndarray

    @property
    def first_t(self) -> int:
        """Sensor time of the packet's first element (event or trigger)."""
        return int(min(self.events["t"][:1].tolist() + self.triggers["t"][:1].tolist()))

    @property
    def last_t(self) -> int:
        return int(max(self.events["t"][-1:].tolist() + self.triggers["t"][-1:].tolist()))


def wrap_origin(t_ns: int) -> int:
    """The EVT3 wrap boundary at or below `t_ns`: encoding relative to it keeps decoded times equal to t_ns."""
    return (int(t_ns) // WRAP_NS) * WRAP_NS


class Packetizer:
    """A stateful events → packets splitter and EVT3 encoder for one stream.

    `drops["time_backwards"]` counts events/triggers earlier than one already accepted (EVT3 cannot go back
    in time); they are discarded, everything else is carried.
    """

    def __init__(self, time_threshold_ns: int = 1_000_000, size_threshold_bytes: int = 1 << 20,
                 time_origin_ns: int | None = None) -> None:
        if time_threshold_ns <= 0:
            raise ValueError(f"time_threshold_ns must be > 0, got {time_threshold_ns}")
        if size_threshold_bytes < 2 * WORST_BYTES_PER_EVENT:
            raise ValueError(f"size_threshold_bytes must be >= {2 * WORST_BYTES_PER_EVENT}, got {size_threshold_bytes}")
        self.time_threshold_ns = int(time_threshold_ns)
        self.max_events = int(size_threshold_bytes) // WORST_BYTES_PER_EVENT
        self._fixed_origin = time_origin_ns
        self.drops: collections.Counter[str] = collections.Counter()
        self.reset()

    def reset(self) -> None:
        """Start a new stream: forget buffered events, the encoder state and the time origin."""
        self._events = empty_events(0)
        self._triggers = empty_triggers(0)
        self._last_t = np.iinfo(np.int64).min
        self._encoder: Evt3Encoder | None = None
        if self._fixed_origin is not None:
            self._encoder = Evt3Encoder(self_contained=True, time_origin_ns=int(self._fixed_origin))

    @property
    def time_origin_ns(self) -> int | None:
        """Sensor time that encodes as 0 (None until the first event fixes it)."""
        return None if self._encoder is None else self._encoder.time_origin_ns

    @property
    def pending_events(self) -> int:
        return int(self._events.size)

    def add(self, events: np.ndarray, triggers: np.ndarray | None = None) -> list[Packet]:
        """Buffer time-ordered events/triggers; return every packet the stream has now closed."""
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
            raise ValueError(f"events must be an EVENT_DTYPE array, got {getattr(events, 'dtype', type(events))}")
        triggers = empty_triggers(0) if triggers is None else triggers
        if not isinstance(triggers, np.ndarray) or triggers.dtype != TRIGGER_DTYPE:
            raise ValueError(f"triggers must be a TRIGGER_DTYPE array, got {getattr(triggers, 'dtype', type(triggers))}")
        received = (events, triggers)
        events = self._accept(events)
        triggers = self._accept(triggers)
        self._received(*received, clean=events.size + triggers.size == received[0].size + received[1].size)
        if events.size == 0 and triggers.size == 0:
            return []
        if self._encoder is None:
            first = min(events["t"][:1].tolist() + triggers["t"][:1].tolist())
            self._encoder = Evt3Encoder(self_contained=True, time_origin_ns=wrap_origin(first))
        self._events = join([self._events, events], EVENT_DTYPE) if self._events.size else events
        self._triggers = join([self._triggers, triggers], TRIGGER_DTYPE) if self._triggers.size else triggers
        last = max(self._events["t"][-1:].tolist() + self._triggers["t"][-1:].tolist())
        self._last_t = max(self._last_t, last)
        return self._close(final=False)

    def _received(self, events: np.ndarray, triggers: np.ndarray, clean: bool) -> None:
        """Hook: what add() was given, and whether all of it was accepted."""

    def flush(self) -> list[Packet]:
        """Close whatever is buffered (end of stream, or the source went quiet)."""
        return self._close(final=True)

    def _accept(self, items: np.ndarray) -> np.ndarray:
        keep = in_order_mask(items["t"], self._last_t)
        if keep is None:
            return items
        self.drops["time_backwards"] += int(items.size - np.count_nonzero(keep))
        return items[keep]

    def _close(self, final: bool) -> list[Packet]:
        ev, tr = self._events, self._triggers
        # contiguous copies once: searchsorted on a strided field view would copy the whole column per call
        ev_t, tr_t = np.ascontiguousarray(ev["t"]), np.ascontiguousarray(tr["t"])
        packets: list[Packet] = []
        i = j = 0
        while i < ev.size or j < tr.size:
            start = min(ev_t[i:i + 1].tolist() + tr_t[j:j + 1].tolist())
            end = start + self.time_threshold_ns
            i_end = int(np.searchsorted(ev_t, end, side="left"))
            if i_end - i > self.max_events:  # size threshold: close early, at an event boundary
                i_end = i + self.max_events
                cut = int(ev_t[i_end])
                j_end = int(np.searchsorted(tr_t, cut, side="left"))
            else:
                if not final and self._last_t < end:  # the stream has not reached the end of this packet yet
                    break
                j_end = int(np.searchsorted(tr_t, end, side="left"))
            packets.append(self._encode(ev[i:i_end], tr[j:j_end]))
            i, j = i_end, j_end
        self._events = ev[i:]   # views: the next add() joins them into a new buffer anyway
        self._triggers = tr[j:]
        return packets

    def _encode(self, events: np.ndarray, triggers: np.ndarray) -> Packet:
        assert self._encoder is not None
        return Packet(self._encoder.encode(events, triggers), events, triggers)


class SplicingPacketizer(Packetizer):
    """A Packetizer for an EVT3 recording that forwards the recording's own words instead of re-encoding.

    Packets close exactly where `Packetizer` closes them (same thresholds, same events); each packet's bytes
    are the input words between its bounds behind a restatement of the decoder state (`Evt3Splicer` with
    `restate=True`), so they are self-contained like the encoder's and a decoder that follows the stream
    decodes the same events at the same times. Where that cannot be shown (a bound between two events of one
    time, out-of-order input, a batch given without its words) the packet is encoded as before.
    `spliced`/`encoded` count the packets made each way. Times are encoded from origin 0, the origin a
    decoder of the recording counts from.
    """

    def __init__(self, width: int, height: int, time_threshold_ns: int = 1_000_000,
                 size_threshold_bytes: int = 1 << 20) -> None:
        self.splicer = Evt3Splicer(width, height, restate=True)
        self.spliced = 0
        self.encoded = 0
        self._words: tuple[bytes | np.ndarray, np.ndarray | None] | None = None
        super().__init__(time_threshold_ns, size_threshold_bytes, time_origin_ns=0)

    def reset(self) -> None:
        super().reset()
        self.splicer.reset()

    def add_words(self, words: bytes | np.ndarray, state: np.ndarray | None, events: np.ndarray,
                  triggers: np.ndarray | None = None) -> list[Packet]:
        """Like add(), for events decoded from `words` by a decoder that was in `state` before them (None if
        unknown: packets reaching back into these words are then encoded)."""
        self._words = (words, state)
        try:
            packets = self.add(events, triggers)
        finally:
            self._words = None
        return packets

    def _received(self, events: np.ndarray, triggers: np.ndarray, clean: bool) -> None:
        words, state = self._words if self._words is not None else (b"", None)
        self.splicer.add(words, state, events, triggers, clean)

    def _close(self, final: bool) -> list[Packet]:
        packets = super()._close(final)
        pending = self._events["t"][:1].tolist() + self._triggers["t"][:1].tolist()
        if pending:
            self.splicer.trim_before(min(pending))
        return packets

    def _encode(self, events: np.ndarray, triggers: np.ndarray) -> Packet:
        assert self._encoder is not None
        first = min(events["t"][:1].tolist() + triggers["t"][:1].tolist())
        last = max(events["t"][-1:].tolist() + triggers["t"][-1:].tolist())
        data = self.splicer.cut(first, last + 1, int(events.size), int(triggers.size))
        if data is None:
            self.encoded += 1
            return super()._encode(events, triggers)
        self.spliced += 1
        end = self.splicer.end_state
        # an encoded packet may follow: the encoder must continue from the time the decoder is at
        self._encoder.follow((int(end[1]) >> 12) if end is not None else (last // 1000) >> 12, last // 1000)
        return Packet(data, events, triggers)
