"""Exact event windows from a stream of encoded event packets: decode, map sensor to host time, cut, re-emit.

time_sync (its frames' windows, or fixed-rate ones in events-only mode), the AU classifier's events-only mode
and `microexp bench dataplane` consume EventPacket streams alike, so it is done once, here, without ROS. Each
packet is decoded by one decoder per stream (encoding and geometry); its first element's sensor time and its
host stamp feed a `StampClock`; its events and triggers go to a `WindowCutter`. A change of encoding or
geometry, or a jump of the sensor clock (a replay loop, a sensor reset), restarts the stream: open windows are
abandoned and counted. A stream whose first packet is not seq 0 was joined mid-way, so no window may reach
before it. With `splice`, an evt3 stream's words are kept, so a window's self-contained EVT3 is the input
words between its bounds behind the decoder state at its start (`Evt3Splicer`, no re-encoding); otherwise,
or where splicing cannot be shown exact, the window is re-encoded.
"""

from __future__ import annotations

from collections import Counter

from microexp_ros.events.codecs import DecodeResult, Decoder, make_decoder
from microexp_ros.events.evt3 import Evt3Encoder, Evt3Splicer
from microexp_ros.sync.clock import StampClock
from microexp_ros.sync.windows import FixedRateWindows, Window, WindowCutter


class PacketError(ValueError):
    """A packet that cannot be decoded. `stream_rejected`: its encoding or geometry is unusable (no decoder
    exists for it), rather than its words or time base."""

    def __init__(self, detail: str, stream_rejected: bool) -> None:
        super().__init__(detail)
        self.stream_rejected = stream_rejected


class EventStreamWindows:
    """Windows cut from a live packet stream by `cutter`: the ones requested on it (frames' windows), plus
    those `fixed` gives (events-only mode); `clock` maps their bounds to host time. Everything lost is
    counted (`drop_totals`); a packet that cannot be decoded raises `PacketError`.
    """

    def __init__(self, cutter: WindowCutter, fixed: FixedRateWindows | None = None, clock: StampClock | None = None,
                 splice: bool = False) -> None:
        self.cutter = cutter
        self.fixed = fixed
        self.clock = clock if clock is not None else StampClock()
        self.splice = bool(splice)
        self.decoder: Decoder | None = None
        self._splicer: Evt3Splicer | None = None
        self._key: tuple[str, int, int] | None = None
        self._first_t: int | None = None
        self._last_seq: int | None = None
        self._drops: Counter[str] = Counter()
        self._retired_decode_drops: Counter[str] = Counter()   # drop totals of decoders replaced

    @property
    def width(self) -> int:
        """Sensor width of the current stream (0 before its first packet)."""
        return self.decoder.width if self.decoder is not None else 0

    @property
    def height(self) -> int:
        return self.decoder.height if self.decoder is not None else 0

    def add(self, data, stamp_ns: int, seq: int, encoding: str, width: int, height: int,
            time_base: int = 0) -> DecodeResult:
        """Feed one packet: its bytes (any buffer), host stamp, sequence number, encoding, geometry and time
        base; what it decoded to. Windows it completed come out of `ready()`."""
        seq = int(seq)
        backwards = self._count_sequence(seq)
        key = (encoding, int(width), int(height))
        if key != self._key:
            self._start_stream(key, seq)
        elif backwards:
            # The sequence started over (a replay loop, a restarted driver): decoding this packet with the
            # old stream's state would read its earlier times as a time wrap, 16.8 s ahead.
            self.decoder.reset()
            if self._splicer is not None:
                self._splicer.reset()
        state = self.decoder.stream_state() if self._splicer is not None else None
        try:
            result = self.decoder.decode(memoryview(data), time_base=int(time_base))
        except (ValueError, TypeError) as error:
            if self._splicer is not None:   # the kept words no longer continue into the next packet
                self._splicer.reset()
            raise PacketError(f"packet seq {seq} not decodable: {error}", stream_rejected=False) from None
        events, triggers = result.events, result.triggers
        if events.size == 0 and triggers.size == 0:
            if self._splicer is not None:
                self._splicer.add(data, state, events, triggers, clean=True)
            return result
        first = min(events["t"][:1].tolist() + triggers["t"][:1].tolist())
        if self.clock.add(first, stamp_ns):
            self._drops["clock_restart"] += 1
            self._restart()
            # Garbage words can leave the decoder counting phantom time wraps, so every later time would be
            # shifted; the stream re-synchronises from the next TIME_HIGH word of a fresh decoder.
            self.decoder.reset()
            state = None   # the decoder state changed under this packet: the splicer starts after it
        if self._first_t is None:
            self._first_t = first
            if seq != 0:  # a stream joined mid-way (restarted node, late start): nothing before was seen
                self.cutter.missed_before(first)
        dropped = self.cutter.add(events, triggers)
        if self._splicer is not None:
            self._splicer.add(data, state, events, triggers, clean=dropped == 0)
            if self.cutter.history_start is not None:
                self._splicer.trim_before(self.cutter.history_start)
        return result

    def _count_sequence(self, seq: int) -> bool:
        """Count packets missing from the sequence; whether it went backwards."""
        backwards = False
        if self._last_seq is not None and seq != self._last_seq + 1:  # a packet the transport lost
            if seq > self._last_seq + 1:
                self._drops["packet_gap"] += seq - self._last_seq - 1
            else:
                self._drops["seq_backwards"] += 1
                backwards = True
        self._last_seq = seq
        return backwards

    def _start_stream(self, key: tuple[str, int, int], seq: int) -> None:
        try:
            decoder = make_decoder(*key)
        except ValueError as error:
            raise PacketError(f"packet seq {seq} not decodable: {error}", stream_rejected=True) from None
        if self._key is not None:
            self._drops["stream_reconfigured"] += 1
            self._restart()
            self._retired_decode_drops.update(self.decoder.drops)
        self.decoder, self._key = decoder, key
        self._splicer = Evt3Splicer(key[1], key[2]) if self.splice and key[0] == "evt3" else None

    def _restart(self) -> None:
        """The sensor time base changed (new stream, replay loop): windows of the old one are abandoned."""
        if self.cutter.pending:
            self._drops["window_abandoned_on_restart"] += self.cutter.pending
        self.cutter.reset()
        if self.fixed is not None:
            self.fixed.reset()
        if self._splicer is not None:
            self._splicer.reset()
        self._first_t = None

    def ready(self) -> list[Window]:
        """Every window the stream has completed: the requested ones and, with `fixed`, those due."""
        if self.fixed is not None:
            for start, end in self.fixed.due(self._first_t, self.cutter.complete_until):
                self.cutter.request(start, end)
        return self.cutter.ready()

    def encoded(self, window: Window) -> tuple[bytes, bool]:
        """Self-contained EVT3 decoding to exactly the window's events and triggers in sensor time, and whether
        it was spliced from the input words (else re-encoded). Call it before the next `add`, which may
        forget the words. ValueError for a window EVT3 cannot carry (e.g. times pushed days ahead by garbage)."""
        if self._splicer is not None:
            data = self._splicer.cut(window.start, window.end, window.event_count, int(window.triggers.size))
            if data is not None:
                return data, True
        return Evt3Encoder(self_contained=True).encode(window.events, window.triggers), False

    def drop_totals(self, decode_prefix: str, skipped_reason: str) -> Counter[str]:
        """What was lost since the start, by reason: packets missing from the sequence (`packet_gap`) or out of
        it (`seq_backwards`), stream restarts (`stream_reconfigured`, `clock_restart`) and the windows they
        abandoned, the cutter's losses, the decoders' drops (`decode_prefix` + reason) and fixed-rate windows
        skipped after a jump (`skipped_reason`); the nodes name the last two differently."""
        decode = self._retired_decode_drops + (self.decoder.drops if self.decoder is not None else Counter())
        totals = self._drops + self.cutter.drops + Counter({decode_prefix + k: v for k, v in decode.items()})
        if self.fixed is not None and self.fixed.skipped:
            totals[skipped_reason] += self.fixed.skipped
        return totals
