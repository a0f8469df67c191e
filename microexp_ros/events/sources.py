"""Where the event camera driver gets events: the pluggable source interface, pacing, and file playback.

A source yields time-ordered batches of decoded events (sensor time, ns) and triggers. A `live` source (a
camera SDK) delivers them as they happen and the driver stamps them on arrival; a recorded or simulated source
delivers as fast as it can and the driver paces it with a `Pacer` (real time, a rate factor, or as fast as
possible), stamping each packet with the host time the pacer assigns to its first event.

Plugging a source in: a class with the `EventStreamSource` attributes and a classmethod
`from_options(options: Mapping[str, Any])`, registered by kind in SOURCE_KINDS. The driver passes its
parameters (`file`, `rate`, `loop`, `width`, `height`, `encoding`, `topic`, ...) merged with the mapping in its
`source_options` parameter. The simulator registers as kind "sim" (`microexp_ros.sim.source.SimulatedEventSource`).
"""

from __future__ import annotations

import collections
import importlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from microexp_ros.events.array import empty_triggers
from microexp_ros.events.reader import open_events

# kind -> (module, class); each class has from_options(options) -> EventStreamSource
SOURCE_KINDS: dict[str, tuple[str, str]] = {
    "file": ("microexp_ros.events.sources", "FileEventSource"),
    "sim": ("microexp_ros.sim.source", "SimulatedEventSource"),
}
# Gap inserted between the end of a recording and its next loop, so time keeps increasing.
LOOP_GAP_NS = 1_000_000


@dataclass
class SourceBatch:
    """Time-ordered events (EVENT_DTYPE) and triggers (TRIGGER_DTYPE) in sensor time, ns."""

    events: np.ndarray
    triggers: np.ndarray = field(default_factory=empty_triggers)


class EventStreamSource(Protocol):
    """What the driver reads. `batches()` ends at the end of the stream; `close()` releases the device/file."""

    width: int
    height: int
    live: bool                                   # True: stamp on arrival; False: the driver paces it
    drops: collections.Counter[str]              # what the source itself discarded, by reason

    def batches(self) -> Iterator[SourceBatch]:
        ...

    def close(self) -> None:
        ...


def make_source(kind: str, options: Mapping[str, Any]) -> EventStreamSource:
    """The source of `kind` built from `options`; ValueError for an unknown kind or one not installed."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown event source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    module_name, class_name = SOURCE_KINDS[kind]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"event source {kind!r} is not available ({module_name}.{class_name}: {exc})") from exc
    return cls.from_options(options)


class Pacer:
    """Releases recorded sensor times at `rate` x real time (0 = as fast as possible) and says their host time.

    The first sensor time seen is anchored to the host time then; later ones map linearly. With rate 0 the
    host times still advance 1:1 with sensor time (a virtual clock), so stamps stay consistent.
    """

    def __init__(self, rate: float = 1.0, clock: Callable[[], int] = time.time_ns) -> None:
        if rate < 0:
            raise ValueError(f"playback rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.rate = float(rate)
        self._clock = clock
        self._anchor: tuple[int, int] | None = None  # (sensor ns, host ns)

    def reset(self) -> None:
        self._anchor = None

    def host_time(self, sensor_ns: int) -> int:
        if self._anchor is None:
            self._anchor = (int(sensor_ns), int(self._clock()))
        sensor0, host0 = self._anchor
        scale = self.rate if self.rate > 0 else 1.0
        return host0 + int(round((int(sensor_ns) - sensor0) / scale))

    def wait(self, sensor_ns: int, stop: threading.Event | None = None) -> int:
        """Sleep until `sensor_ns` is due (not at rate 0); return its host time. Returns early if `stop` is set."""
        due = self.host_time(sensor_ns)
        if self.rate > 0:
            delay = (due - self._clock()) / 1e9
            if delay > 0:
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
        return due


class FileEventSource:
    """Playback of an event file or bag (.raw, .aedat4, .bin, rosbag2, ROS 1 .bag) as a non-live source.

    With `loop`, the recording restarts after its end with times shifted past the previous pass, so the
    stream stays time-ordered. Reader drops (out of bounds, truncated words, ...) are in `drops`.
    """

    live = False

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None,
                 encoding: str | None = None, topic: str | None = None, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = bool(loop)
        self._reader = open_events(self.path, width=width, height=height, encoding=encoding,
                                   topics=[topic] if topic else None)
        streams = list(self._reader.streams)
        if topic is None and len(streams) != 1:
            raise ValueError(f"{self.path} has {len(streams)} event streams ({', '.join(streams)}); choose a topic")
        self.stream = topic or streams[0]
        info = self._reader.streams[self.stream]
        self.width, self.height = info.width, info.height
        self.drops: collections.Counter[str] = collections.Counter()
        self.passes = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FileEventSource:
        """From driver parameters: file (required), width/height/encoding (0/'' = from the file), topic, loop."""
        path = str(options.get("file", ""))
        if not path:
            raise ValueError("source 'file' needs the 'file' parameter (a .raw, .aedat4, .bin or bag path)")
        return cls(path, width=int(options.get("width", 0)) or None, height=int(options.get("height", 0)) or None,
                   encoding=str(options.get("encoding", "")) or None, topic=str(options.get("topic", "")) or None,
                   loop=bool(options.get("loop", False)))

    def batches(self) -> Iterator[SourceBatch]:
        shift = 0
        while True:
            first = last = None
            for chunk in self._reader.chunks():
                if chunk.stream != self.stream:
                    continue
                events, triggers = chunk.events, chunk.triggers
                if shift:
                    events = events.copy()
                    events["t"] += shift
                    triggers = triggers.copy()
                    triggers["t"] += shift
                times = events["t"][:1].tolist() + triggers["t"][:1].tolist()
                if times and first is None:
                    first = min(times)
                ends = events["t"][-1:].tolist() + triggers["t"][-1:].tolist()
                if ends:
                    last = max(ends + ([last] if last is not None else []))
                yield SourceBatch(events, triggers)
            self.passes += 1
            for reason, n in self._reader.drops.get(self.stream, {}).items():
                self.drops[reason] += n
            if not self.loop or first is None:
                return
            shift += last - first + LOOP_GAP_NS

    def close(self) -> None:
        """Nothing held open between batches (readers open the file per pass)."""
