"""Where the event camera driver gets events: the pluggable source interface, pacing, and file playback.

A source yields time-ordered batches of decoded events (sensor time, ns) and triggers. A `live` source (a
camera SDK) delivers them as they happen and the driver stamps them on arrival; a recorded or simulated source
delivers as fast as it can and the driver paces it with a `Pacer` (real time, a rate factor, or as fast as
possible), stamping each packet with the host time the pacer assigns to its first event.

Plugging a source in: a class with the `EventStreamSource` attributes and a classmethod
`from_options(options: Mapping[str, Any])`, registered by kind in SOURCE_KINDS. The driver passes its
parameters (`file`, `rate`, `loop`, `width`, `height`, `encoding`, `topic`, ...) merged with the mapping in its
`source_options` parameter. Kind "sim" is the event simulator (`microexp_ros.sim.source.SimulatedEventSource`)
watching a video, so a webcam-less machine still gets a realistic event stream of a face.
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
    "sim": ("microexp_ros.events.sources", "SimulatedVideoSource"),
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

    The first sensor time seen is anchored to the host time then. Host times (the stamps) follow sensor time
    1:1 whatever the rate, as a replayed bag keeps its recorded stamps, so the sensor→host offset stays
    constant; the rate only changes when a packet is released.
    """

    def __init__(self, rate: float = 1.0, clock: Callable[[], int] = time.time_ns) -> None:
        if rate < 0:
            raise ValueError(f"playback rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.rate = float(rate)
        self._clock = clock
        self._anchor: tuple[int, int] | None = None  # (sensor ns, host ns)

    def reset(self) -> None:
        self._anchor = None

    def _anchored(self, sensor_ns: int) -> tuple[int, int]:
        if self._anchor is None:
            self._anchor = (int(sensor_ns), int(self._clock()))
        return self._anchor

    def host_time(self, sensor_ns: int) -> int:
        sensor0, host0 = self._anchored(sensor_ns)
        return host0 + int(sensor_ns) - sensor0

    def due_time(self, sensor_ns: int) -> int:
        """Host time at which `sensor_ns` is released (rate 0: at once)."""
        sensor0, host0 = self._anchored(sensor_ns)
        if self.rate == 0:
            return host0
        return host0 + int(round((int(sensor_ns) - sensor0) / self.rate))

    def wait(self, sensor_ns: int, stop: threading.Event | None = None) -> int:
        """Sleep until `sensor_ns` is due; return its host time. Returns early if `stop` is set."""
        delay = (self.due_time(sensor_ns) - self._clock()) / 1e9
        if self.rate > 0 and delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        return self.host_time(sensor_ns)


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


class SimulatedVideoSource:
    """The event simulator watching a video file (kind "sim"): frames → linear luminance → events, paced by
    the driver like a recording. Frames are read lazily, raised to `upsample_hz` by optical flow, and fed to
    `SimulatedEventSource`; with `frame_triggers` each video frame also gives an EXT_TRIGGER edge (channel 0),
    like an RGB camera's strobe line.
    """

    live = False

    def __init__(self, video: str | Path, width: int = 128, height: int = 128, seed: int = 0, loop: bool = False,
                 upsample_hz: float = 120.0, frame_triggers: bool = False) -> None:
        import cv2

        self.video = Path(video)
        if not self.video.is_file():
            raise FileNotFoundError(f"video for the simulated event source not found: {self.video}")
        capture = cv2.VideoCapture(str(self.video))
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
        capture.release()
        if not fps > 0:
            raise ValueError(f"OpenCV cannot read a frame rate from {self.video}")
        if width <= 0 or height <= 0 or upsample_hz <= 0:
            raise ValueError(f"simulated source needs width, height, upsample_hz > 0, got {width}, {height}, "
                             f"{upsample_hz}")
        self.fps, self.width, self.height = fps, int(width), int(height)
        self.seed, self.loop = int(seed), bool(loop)
        self.upsample_hz, self.frame_triggers = float(upsample_hz), bool(frame_triggers)
        self.drops: collections.Counter[str] = collections.Counter()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedVideoSource:
        """file (the video), width/height (0 = 128), loop; source_options: seed, upsample_hz, frame_triggers."""
        path = str(options.get("file", ""))
        if not path:
            raise ValueError("source 'sim' needs the 'file' parameter: the video the simulated sensor watches")
        return cls(path, int(options.get("width", 0)) or 128, int(options.get("height", 0)) or 128,
                   seed=int(options.get("seed", 0)), loop=bool(options.get("loop", False)),
                   upsample_hz=float(options.get("upsample_hz", 120.0)),
                   frame_triggers=bool(options.get("frame_triggers", False)))

    def _frames(self, shift_ns: int) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        from microexp_ros.sim.event_simulator import resample
        from microexp_ros.sim.video import bgr_to_linear

        capture = cv2.VideoCapture(str(self.video))
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                t = shift_ns + int(round(index * 1e9 / self.fps))
                yield t, resample(bgr_to_linear(frame), self.width, self.height)
                index += 1
        finally:
            capture.release()

    def batches(self) -> Iterator[SourceBatch]:
        from microexp_ros.sim.interpolation import iter_upsampled
        from microexp_ros.sim.source import SimulatedEventSource

        shift = 0
        while True:
            last = shift
            frames = iter_upsampled(self._frames(shift), self.upsample_hz, 1.0)
            source = SimulatedEventSource(frames, self.width, self.height, seed=self.seed,
                                          frame_triggers=self.frame_triggers)
            for events, triggers in source:
                if events.size:
                    last = max(last, int(events["t"][-1]))
                yield SourceBatch(events, triggers)
            if not self.loop:
                return
            shift = last + LOOP_GAP_NS

    def close(self) -> None:
        """Nothing held open between batches (the video is opened per pass)."""
