"""Cutting exact event windows out of a live stream of decoded events, against frame times.

Events arrive in packets (decoded, sensor time); frames arrive separately and may lag. `WindowCutter` keeps a
bounded history of events, accepts window requests [start, end) in sensor time, and hands a window out once
the stream is known to be complete up to `end` (an event or trigger at or after `end` has arrived, or the caller
advanced the stream with `advance`). A window holds exactly the events with start <= t < end. Everything lost
is counted in `drops`: events out of time order, history overflow, windows whose start was already discarded
from the history, and requests beyond the pending limit. `FixedRateWindows` produces the bounds of the
events-only mode (no RGB): back-to-back windows at a fixed rate.
"""

from __future__ import annotations

import collections
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE, empty_triggers
from microexp_ros.events.window import in_order_mask, join

WINDOW_MODES = ("trailing", "centred")


def window_bounds(frame_t_ns: int, window_ns: int, mode: str = "trailing") -> tuple[int, int]:
    """[start, end) of the window belonging to a frame at `frame_t_ns`: ending at it, or centred on it."""
    if window_ns <= 0:
        raise ValueError(f"window length must be > 0 ns, got {window_ns}")
    if mode == "trailing":
        return int(frame_t_ns) - int(window_ns), int(frame_t_ns)
    if mode == "centred":
        half = int(window_ns) // 2
        return int(frame_t_ns) - half, int(frame_t_ns) - half + int(window_ns)
    raise ValueError(f"window mode must be one of {WINDOW_MODES}, got {mode!r}")


@dataclass
class Window:
    """A cut window: bounds in sensor time, its events (as the history's chunks) and triggers, and what the
    caller attached. `events` joins the chunks on first use; the counts do not need them joined (time_sync
    forwards spliced input bytes and never needs the joined array)."""

    start: int
    end: int
    event_parts: list[np.ndarray]
    triggers: np.ndarray
    tag: Any = None

    @functools.cached_property
    def events(self) -> np.ndarray:
        return join(self.event_parts, EVENT_DTYPE)

    @property
    def event_count(self) -> int:
        return sum(part.size for part in self.event_parts)

    @property
    def on_count(self) -> int:
        return sum(int(np.count_nonzero(part["p"])) for part in self.event_parts)


@dataclass
class _Request:
    start: int
    end: int
    tag: Any = None


class _History:
    """Time-ordered chunks of one record type with their time spans; trimmed from the old end."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.chunks: deque[np.ndarray] = deque()
        self.size = 0

    def append(self, items: np.ndarray) -> None:
        if items.size:
            self.chunks.append(items)
            self.size += items.size

    def first_t(self) -> int | None:
        return int(self.chunks[0]["t"][0]) if self.chunks else None

    def slice(self, start: int, end: int) -> np.ndarray:
        return join(self.parts(start, end), self.dtype)

    def parts(self, start: int, end: int) -> list[np.ndarray]:
        """Views of the kept items with start <= t < end, chunk by chunk."""
        parts = []
        for chunk in self.chunks:
            t = chunk["t"]
            if t[-1] < start:
                continue
            if t[0] >= end:
                break
            lo = 0 if t[0] >= start else int(np.searchsorted(t, start, side="left"))
            hi = t.size if t[-1] < end else int(np.searchsorted(t, end, side="left"))
            if hi > lo:
                parts.append(chunk[lo:hi])
        return parts

    def trim_before(self, t_ns: int) -> int:
        """Discard items with t < t_ns; return how many."""
        removed = 0
        while self.chunks and int(self.chunks[0]["t"][-1]) < t_ns:
            removed += self.chunks[0].size
            self.size -= self.chunks[0].size
            self.chunks.popleft()
        if self.chunks and int(self.chunks[0]["t"][0]) < t_ns:
            head = self.chunks[0]
            k = int(np.searchsorted(head["t"], t_ns, side="left"))
            self.chunks[0] = head[k:]
            removed += k
            self.size -= k
        return removed

    def drop_oldest(self, n: int) -> int | None:
        """Discard at least n items from the old end (whole chunks); return the first time left (None if empty)."""
        while self.chunks and n > 0:
            chunk = self.chunks.popleft()
            n -= chunk.size
            self.size -= chunk.size
        return int(self.chunks[0]["t"][0]) if self.chunks else None


class WindowCutter:
    """Exact [start, end) event windows from a decoded stream, with bounded memory and counted losses.

    history_ns: how far behind the newest event the history reaches (must cover the window length plus the
    frames' lag behind the events); max_events: hard cap on buffered events; max_pending: cap on open requests.
    """

    def __init__(self, history_ns: int = 500_000_000, max_events: int = 20_000_000, max_pending: int = 100) -> None:
        if history_ns <= 0 or max_events < 1 or max_pending < 1:
            raise ValueError(f"WindowCutter needs history_ns > 0, max_events >= 1, max_pending >= 1; got "
                             f"{history_ns}, {max_events}, {max_pending}")
        self.history_ns = int(history_ns)
        self.max_events = int(max_events)
        self.max_pending = int(max_pending)
        self.drops: collections.Counter[str] = collections.Counter()
        self.reset()

    def reset(self) -> None:
        """Forget history and requests (a stream restart); drop counts are kept."""
        self._events = _History(EVENT_DTYPE)
        self._triggers = _History(TRIGGER_DTYPE)
        self._complete_until: int | None = None   # every event with t < this has arrived
        self._lost_until: int | None = None       # events with t < this may have been discarded
        self._last_t: int | None = None
        self._pending: deque[_Request] = deque()

    @property
    def complete_until(self) -> int | None:
        return self._complete_until

    @property
    def buffered_events(self) -> int:
        return self._events.size

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def history_start(self) -> int | None:
        """Events before this time may have been discarded: no window can start earlier (None: nothing lost)."""
        return self._lost_until

    def add(self, events: np.ndarray, triggers: np.ndarray | None = None) -> int:
        """Append the next decoded events/triggers of the stream (time-ordered; older ones are dropped and
        counted); return how many were dropped as out of order."""
        triggers = empty_triggers(0) if triggers is None else triggers
        given = events.size + triggers.size
        events = self._in_order(events, "events_out_of_order")
        triggers = self._in_order(triggers, "triggers_out_of_order")
        self._events.append(events)
        self._triggers.append(triggers)
        newest = max(events["t"][-1:].tolist() + triggers["t"][-1:].tolist(), default=None)
        if newest is not None:
            self._last_t = newest if self._last_t is None else max(self._last_t, newest)
            # all events below the newest time are in: the stream is time-ordered
            self._advance(newest)
        self._trim()
        self._bound_memory()
        return int(given - events.size - triggers.size)

    def _in_order(self, items: np.ndarray, reason: str) -> np.ndarray:
        if items.size == 0:
            return items
        keep = in_order_mask(items["t"], self._last_t if self._last_t is not None else np.iinfo(np.int64).min)
        if keep is None:
            return items
        self.drops[reason] += int(items.size - np.count_nonzero(keep))
        return items[keep]

    def missed_before(self, t_ns: int) -> None:
        """Events before `t_ns` were never received (a running stream joined mid-way, e.g. by a restarted
        node): windows starting earlier would be incomplete, so they are discarded and counted."""
        self._mark_lost(int(t_ns))

    def advance(self, t_ns: int) -> None:
        """Declare the stream complete below `t_ns` (e.g. the clock says no older packet can still arrive)."""
        self._advance(int(t_ns))

    def _advance(self, t_ns: int) -> None:
        if self._complete_until is None or t_ns > self._complete_until:
            self._complete_until = t_ns

    def request(self, start: int, end: int, tag: Any = None) -> None:
        """Ask for the events with start <= t < end; they come out of `ready()` once the stream passed `end`."""
        if end <= start:
            raise ValueError(f"window must have end > start, got [{start}, {end})")
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.drops["pending_overflow"] += 1
        self._pending.append(_Request(int(start), int(end), tag))

    def latest_pending_end(self, selected: Callable[[Any], bool]) -> int | None:
        """The latest end among pending windows whose tag is `selected` (to force them closed), or None."""
        ends = [r.end for r in self._pending if selected(r.tag)]
        return max(ends) if ends else None

    def ready(self) -> list[Window]:
        """Every requested window the stream has completed, in request order; trims the history."""
        out: list[Window] = []
        still: deque[_Request] = deque()
        for req in self._pending:
            if self._lost_until is not None and req.start < self._lost_until:
                self.drops["window_start_discarded"] += 1
                continue
            if self._complete_until is None or req.end > self._complete_until:
                still.append(req)
                continue
            out.append(Window(req.start, req.end, self._events.parts(req.start, req.end),
                              self._triggers.slice(req.start, req.end), req.tag))
        self._pending = still
        self._trim()
        return out

    def _trim(self) -> None:
        """Keep history_ns behind the newest event, and everything a pending window still needs."""
        if self._last_t is None:
            return
        keep_from = self._last_t - self.history_ns
        if self._pending:
            keep_from = min(keep_from, min(r.start for r in self._pending))
        self._events.trim_before(keep_from)
        self._triggers.trim_before(keep_from)
        self._mark_lost(keep_from)

    def _mark_lost(self, t_ns: int) -> None:
        if self._lost_until is None or t_ns > self._lost_until:
            self._lost_until = t_ns

    def _bound_memory(self) -> None:
        excess = self._events.size - self.max_events
        if excess > 0:
            before = self._events.size
            first_left = self._events.drop_oldest(excess)
            self.drops["history_overflow"] += before - self._events.size
            lost = (first_left if first_left is not None else self._last_t) + 1
            self._triggers.trim_before(lost)
            self._mark_lost(lost)


class FixedRateWindows:
    """Back-to-back (or overlapping) window bounds at a fixed rate, for events-only mode.

    Window k ends at anchor + (k + 1) * period and spans `window_ns`; the anchor is the first event time.
    When the stream jumps ahead by more than `max_due` windows at once, only the last `max_due` are returned
    and the rest are counted in `skipped`.
    """

    def __init__(self, period_ns: int, window_ns: int, max_due: int = 100) -> None:
        if period_ns <= 0 or window_ns <= 0 or max_due < 1:
            raise ValueError(f"period and window must be > 0 ns and max_due >= 1, got {period_ns}, {window_ns}, "
                             f"{max_due}")
        self.period_ns, self.window_ns, self.max_due = int(period_ns), int(window_ns), int(max_due)
        self._anchor: int | None = None
        self._next = 0
        self.skipped = 0

    def reset(self) -> None:
        self._anchor = None
        self._next = 0

    def due(self, first_t: int | None, complete_until: int | None) -> list[tuple[int, int]]:
        """Bounds of every window that ends at or before `complete_until` and was not returned yet."""
        if first_t is None or complete_until is None:
            return []
        if self._anchor is None:
            self._anchor = int(first_t)
        last = (int(complete_until) - self._anchor) // self.period_ns - 1   # index of the last window due
        if last - self._next + 1 > self.max_due:
            self.skipped += last - self.max_due + 1 - self._next
            self._next = last - self.max_due + 1
        out = []
        while self._anchor + (self._next + 1) * self.period_ns <= complete_until:
            end = self._anchor + (self._next + 1) * self.period_ns
            out.append((end - self.window_ns, end))
            self._next += 1
        return out
