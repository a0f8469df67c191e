"""What every event file reader provides, so `open_events` callers (CLI, player, datasets) need not care which.

A source has one or more named streams (a bag topic, or "events" for a single-stream file), each with an
encoding and sensor size, and yields decoded chunks in file order. What a reader had to drop is counted per
stream in `drops`, by reason; nothing is discarded silently.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE, empty_triggers

# The one stream of a single-stream file (everything but bags and multi-stream AEDAT4).
STREAM = "events"


class EventFileError(ValueError):
    """A file that exists but cannot be read as events (unknown format, corrupt, missing geometry)."""


@dataclass(frozen=True)
class StreamInfo:
    """One event stream of a source: a bag topic or a file's single stream."""

    name: str
    encoding: str
    width: int
    height: int


@dataclass
class Chunk:
    """Decoded events and triggers of one stream, in stream order (t in ns of sensor time)."""

    stream: str
    events: np.ndarray
    triggers: np.ndarray = field(default_factory=empty_triggers)


class EventSource(Protocol):
    """The interface of every reader (RawFile, DatFile, EsFile, Aedat4File, BagFile, NmnistFile)."""

    path: Path
    format: str
    streams: dict[str, StreamInfo]
    drops: dict[str, collections.Counter[str]]

    def chunks(self) -> Iterator[Chunk]:
        """Decoded chunks of all streams in file order; starts from the beginning on each call."""
        ...


def read_all(source: EventSource) -> dict[str, Chunk]:
    """Every stream of `source` decoded in full: one Chunk per stream name (empty streams included)."""
    parts: dict[str, list[Chunk]] = {name: [] for name in source.streams}
    for chunk in source.chunks():
        parts.setdefault(chunk.stream, []).append(chunk)
    return {
        name: Chunk(
            name,
            np.concatenate([c.events for c in chunks]) if chunks else np.zeros(0, EVENT_DTYPE),
            np.concatenate([c.triggers for c in chunks]) if chunks else np.zeros(0, TRIGGER_DTYPE),
        )
        for name, chunks in parts.items()
    }


def keep_in_bounds(events: np.ndarray, width: int, height: int, drops: collections.Counter[str]) -> np.ndarray:
    """The events inside the sensor; the others are counted in drops["out_of_bounds"]."""
    inside = (events["x"] < width) & (events["y"] < height)
    n_out = int(events.size - np.count_nonzero(inside))
    if n_out:
        drops["out_of_bounds"] += n_out
        return events[inside]
    return events


def optional_int(fields: dict[str, str], key: str, error: str) -> int | None:
    """fields[key] as an int, None if absent; EventFileError(error.format(key=..., value=...)) if not an integer."""
    if key not in fields:
        return None
    try:
        return int(fields[key])
    except ValueError:
        raise EventFileError(error.format(key=key, value=fields[key])) from None


class WholeFileSource:
    """Base of the single-stream readers that decode the whole file when opened (dataset files are small).

    A subclass decodes in __init__ and calls _hold(); chunks() then replays the events as one chunk.
    """

    def _hold(
        self, events: np.ndarray, encoding: str, width: int | None, height: int | None, drops: collections.Counter[str]
    ) -> None:
        """Keep the decoded events and what decoding dropped; a size not given is the events' extent."""
        if width is None:
            width = int(events["x"].max()) + 1 if events.size else 1
        if height is None:
            height = int(events["y"].max()) + 1 if events.size else 1
        self._events = events
        self._drops = drops
        self.streams = {STREAM: StreamInfo(STREAM, encoding, int(width), int(height))}
        self.drops: dict[str, collections.Counter[str]] = {STREAM: collections.Counter()}

    def chunks(self) -> Iterator[Chunk]:
        """The whole file as one chunk; events outside the sensor are dropped and counted in drops."""
        drops = collections.Counter(self._drops)
        info = self.streams[STREAM]
        events = keep_in_bounds(self._events, info.width, info.height, drops)
        self.drops[STREAM] = drops
        yield Chunk(STREAM, events)


def summarize(source: EventSource) -> dict[str, dict[str, Any]]:
    """Per stream: encoding, size, event/ON/OFF/trigger counts, time span and drops, decoding the source once."""
    stats: dict[str, dict[str, Any]] = {}
    for name, info in source.streams.items():
        stats[name] = {"encoding": info.encoding, "width": info.width, "height": info.height, "events": 0, "on": 0,
                       "off": 0, "triggers": 0, "triggers_rising": 0, "t_first_ns": None, "t_last_ns": None}
    for chunk in source.chunks():
        s = stats[chunk.stream]
        n, on = int(chunk.events.size), int(chunk.events["p"].sum())
        s["events"] += n
        s["on"] += on
        s["off"] += n - on
        s["triggers"] += int(chunk.triggers.size)
        s["triggers_rising"] += int(chunk.triggers["edge"].sum())
        if n:
            lo, hi = int(chunk.events["t"].min()), int(chunk.events["t"].max())
            s["t_first_ns"] = lo if s["t_first_ns"] is None else min(s["t_first_ns"], lo)
            s["t_last_ns"] = hi if s["t_last_ns"] is None else max(s["t_last_ns"], hi)
    for name, s in stats.items():
        s["duration_s"] = (s["t_last_ns"] - s["t_first_ns"]) / 1e9 if s["events"] else 0.0
        s["drops"] = dict(source.drops.get(name, collections.Counter()))
    return stats
