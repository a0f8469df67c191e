"""Where the event camera driver gets events: the pluggable source interface, pacing, and file playback.

A source yields time-ordered batches of decoded events (sensor time, ns) and triggers. A `live` source (a
camera SDK) delivers them as they happen and the driver stamps them on arrival; a recorded or simulated source
delivers as fast as it can and the driver paces it with a `Pacer` (real time, a rate factor, or as fast as
possible), stamping each packet with the host time the pacer assigns to its first event.

Plugging a source in: a class with the `EventStreamSource` attributes and a classmethod
`from_options(options: Mapping[str, Any])`, registered by kind in SOURCE_KINDS. The driver passes its
parameters (`file`, `rate`, `loop`, `width`, `height`, `encoding`, `topic`, ...) merged with the mapping in its
`source_options` parameter. Three kinds run the event simulator (`microexp_ros.sim.source.SimulatedEventSource`),
so a machine without an event camera still gets a realistic event stream of a face: "face" (the synthetic face
generator performing AU episodes, endless, paced by the driver), "sim" (a video file, paced by the driver) and
"camera" (a webcam or any stream OpenCV opens, live: stamped on arrival).
"""

from __future__ import annotations

import collections
import importlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from microexp_ros.events.array import empty_triggers
from microexp_ros.events.bag_reader import BagFile
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import EventFileError

if TYPE_CHECKING:  # the simulator (numba) is imported only by the simulated sources
    from microexp_ros.sim.event_simulator import SensorConfig

# kind -> (module, class); each class has from_options(options) -> EventStreamSource
SOURCE_KINDS: dict[str, tuple[str, str]] = {
    "file": ("microexp_ros.events.sources", "FileEventSource"),
    "sim": ("microexp_ros.events.sources", "SimulatedVideoSource"),
    "face": ("microexp_ros.events.sources", "SyntheticFaceSource"),
    "camera": ("microexp_ros.events.sources", "CameraSource"),
}
# Sensor size of the simulated sources when the driver's width/height are 0: the dataset's high resolution.
SIM_DEFAULT_SIZE = 128
# Gap inserted between the end of a recording and its next loop, so time keeps increasing.
LOOP_GAP_NS = 1_000_000


@dataclass
class SourceBatch:
    """Time-ordered events (EVENT_DTYPE) and triggers (TRIGGER_DTYPE) in sensor time, ns.

    A recording that can be forwarded as recorded also gives the EVT3 `words` they were decoded from and the
    decoder `state` before them (see `SplicingPacketizer`); both None otherwise.
    """

    events: np.ndarray
    triggers: np.ndarray = field(default_factory=empty_triggers)
    words: np.ndarray | bytes | None = None
    state: np.ndarray | None = None


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
    stream stays time-ordered. Reader drops (out of bounds, truncated words, ...) are in `drops`. A bag of
    evt3 EventPackets (`forwards_words`) is decoded here packet by packet so each batch also carries the
    packet's words and the decoder state before them, for the driver to forward instead of re-encoding; a
    packet with a time_base, one whose words the decoder dropped something from, and looped passes (shifted
    times) carry none.
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
        self.forwards_words = isinstance(self._reader, BagFile) and info.encoding == "evt3"
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
            pass_drops: dict[str, collections.Counter[str]] = {}
            for batch in (self._evt3_packets(pass_drops) if self.forwards_words else self._chunks()):
                events, triggers = batch.events, batch.triggers
                if shift:
                    events = events.copy()
                    events["t"] += shift
                    triggers = triggers.copy()
                    triggers["t"] += shift
                    batch = SourceBatch(events, triggers)
                times = events["t"][:1].tolist() + triggers["t"][:1].tolist()
                if times and first is None:
                    first = min(times)
                ends = events["t"][-1:].tolist() + triggers["t"][-1:].tolist()
                if ends:
                    last = max(ends + ([last] if last is not None else []))
                yield batch
            self.passes += 1
            for reason, n in (pass_drops or self._reader.drops).get(self.stream, {}).items():
                self.drops[reason] += n
            if not self.loop or first is None:
                return
            shift += last - first + LOOP_GAP_NS

    def _chunks(self) -> Iterator[SourceBatch]:
        for chunk in self._reader.chunks():
            if chunk.stream == self.stream:
                yield SourceBatch(chunk.events, chunk.triggers)

    def _evt3_packets(self, drops: dict[str, collections.Counter[str]]) -> Iterator[SourceBatch]:
        """The stream's packets decoded in order by one decoder, each with its words and the state before it;
        the decoder's drop counts are put in `drops` under the stream name."""
        info = self._reader.streams[self.stream]
        decoder = make_decoder("evt3", info.width, info.height)
        drops[self.stream] = decoder.drops
        for packet in self._reader.packets():
            if packet.topic != self.stream:
                continue
            msg = packet.msg
            if (msg.encoding, msg.width, msg.height) != (info.encoding, info.width, info.height):
                raise EventFileError(f"topic {self.stream} changes from {info.encoding} {info.width}x{info.height} "
                                     f"to {msg.encoding} {msg.width}x{msg.height} at seq {msg.seq}")
            state = decoder.stream_state()
            dropped = sum(decoder.drops.values())
            result = decoder.decode(msg.events, time_base=int(msg.time_base))
            whole = state is not None and int(msg.time_base) == 0 and sum(decoder.drops.values()) == dropped
            yield SourceBatch(result.events, result.triggers, msg.events if whole else None,
                              state if whole else None)
        decoder.finish()

    def close(self) -> None:
        """Nothing held open between batches (readers open the file per pass)."""


class SimulatedVideoSource:
    """The event simulator watching a video file (kind "sim"): frames → linear luminance (the centred box of the
    sensor's aspect ratio) → events, paced by the driver like a recording. Frames are read lazily, raised to
    `upsample_hz` by optical flow, and fed to `SimulatedEventSource`; with `frame_triggers` each video frame
    also gives an EXT_TRIGGER edge (channel 0), like an RGB camera's strobe line.
    """

    live = False

    def __init__(self, video: str | Path, width: int = SIM_DEFAULT_SIZE, height: int = SIM_DEFAULT_SIZE,
                 seed: int = 0, loop: bool = False, upsample_hz: float = 120.0, frame_triggers: bool = False,
                 model: str = "high") -> None:
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
        self.sensor = sensor_model(model)
        self.drops: collections.Counter[str] = collections.Counter()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedVideoSource:
        """file (the video), width/height (0 = 128), loop, seed, sensor_model; source_options: upsample_hz,
        frame_triggers."""
        path = str(options.get("file", ""))
        if not path:
            raise ValueError("source 'sim' needs the 'file' parameter: the video the simulated sensor watches")
        return cls(path, *_sensor_size(options),
                   seed=int(options.get("seed", 0)), loop=bool(options.get("loop", False)),
                   upsample_hz=float(options.get("upsample_hz", 120.0)),
                   frame_triggers=bool(options.get("frame_triggers", False)),
                   model=str(options.get("sensor_model", "high")))

    def _frames(self, shift_ns: int) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        from microexp_ros.sim.source import sensor_luminance

        capture = cv2.VideoCapture(str(self.video))
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                t = shift_ns + int(round(index * 1e9 / self.fps))
                yield t, sensor_luminance(frame, self.width, self.height)
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
            source = SimulatedEventSource(frames, self.width, self.height, self.sensor, seed=self.seed,
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


def _sensor_size(options: Mapping[str, Any]) -> tuple[int, int]:
    """The driver's width/height for a simulated sensor (0 = SIM_DEFAULT_SIZE)."""
    return int(options.get("width", 0)) or SIM_DEFAULT_SIZE, int(options.get("height", 0)) or SIM_DEFAULT_SIZE


def sensor_model(name: str) -> SensorConfig:
    """The pixel model of the generated datasets' sensors by name: "high" (EVK4-like), "low" (DAVIS346-like)."""
    from microexp_ros.sim.clip import HIGH_SENSOR, LOW_SENSOR

    models = {"high": HIGH_SENSOR, "low": LOW_SENSOR}
    if name not in models:
        raise ValueError(f"simulated sensor_model must be one of {', '.join(models)}, got {name!r}")
    return models[name]


class SyntheticFaceSource:
    """The synthetic face generator through the event simulator (kind "face"): a generated identity performing
    micro- and macro-expression AU episodes, blinks and head sway under one lighting condition
    (`microexp_ros.sim.face_stream.FaceStream`), rendered at the clips' scene rate (400 Hz, 1 kHz under
    flicker), which is also the simulator's internal rate, with the clips' sensor models ("high": EVK4-like,
    "low": DAVIS346-like). Endless unless `duration_s` > 0; deterministic for its options; paced by the driver.
    `stream.episodes` lists the AU episodes planned so far (times = sensor time, ns).
    """

    live = False

    def __init__(self, width: int = SIM_DEFAULT_SIZE, height: int = SIM_DEFAULT_SIZE, seed: int = 0,
                 lighting: str = "normal", identity: int = 0, identities_seed: int = 0, duration_s: float = 0.0,
                 model: str = "high") -> None:
        from microexp_ros.sim.face_stream import FaceStream, stream_identity

        if width < 16 or height < 16:
            raise ValueError(f"face source needs width and height >= 16, got {width}x{height}")
        if duration_s < 0:
            raise ValueError(f"face source duration_s must be >= 0 (0 = endless), got {duration_s}")
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.duration_ns = int(round(duration_s * 1e9)) or None
        self.stream = FaceStream(stream_identity(int(identity), int(identities_seed)), lighting,
                                 min(self.width, self.height), self.seed)
        self.sensor = replace(sensor_model(model), internal_rate_hz=self.stream.render_hz)
        self.drops: collections.Counter[str] = collections.Counter()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SyntheticFaceSource:
        """width/height (0 = 128), seed, lighting (normal, bright, dim, very_dim, flicker, shadow), sensor_model
        (high, low); source_options: identity (index), identities_seed, duration_s (0 = endless)."""
        return cls(*_sensor_size(options), seed=int(options.get("seed", 0)),
                   lighting=str(options.get("lighting", "normal")), identity=int(options.get("identity", 0)),
                   identities_seed=int(options.get("identities_seed", 0)),
                   duration_s=float(options.get("duration_s", 0.0)),
                   model=str(options.get("sensor_model", "high")))

    def batches(self) -> Iterator[SourceBatch]:
        from microexp_ros.sim.source import SimulatedEventSource

        sensor_seed = int(np.random.SeedSequence([self.seed, 0x5E45]).generate_state(1)[0])
        frames = self.stream.frames(self.width, self.height, self.duration_ns)
        for events, triggers in SimulatedEventSource(frames, self.width, self.height, self.sensor, sensor_seed):
            yield SourceBatch(events, triggers)

    def close(self) -> None:
        """Nothing held open."""


class CameraSource:
    """A webcam (device index) or any stream or file OpenCV opens, through the event simulator (kind "camera").

    Live: each frame is timed by the host's monotonic clock when it arrives (sensor time 0 = the first frame),
    converted to linear luminance, resampled to width x height, raised to `upsample_hz` by optical flow and
    simulated; the driver stamps the packets on arrival. A file is read at its own frame rate, as a camera
    would deliver it. Flow interpolation needs the next frame, so events lag the camera by one frame period.
    """

    live = True

    def __init__(self, device: str | int = 0, width: int = SIM_DEFAULT_SIZE, height: int = SIM_DEFAULT_SIZE,
                 seed: int = 0, upsample_hz: float = 120.0, max_motion_px: float = 1.0, model: str = "high") -> None:
        import cv2

        if width <= 0 or height <= 0 or upsample_hz <= 0 or max_motion_px <= 0:
            raise ValueError(f"camera source needs width, height, upsample_hz, max_motion_px > 0, got {width}, "
                             f"{height}, {upsample_hz}, {max_motion_px}")
        text = str(device).strip()
        self.device: str | int = int(text) if text.isdigit() else text
        if self.device == "":
            raise ValueError("camera source needs a device: an index (0) or a URL/file OpenCV opens")
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.upsample_hz, self.max_motion_px = float(upsample_hz), float(max_motion_px)
        self.sensor = sensor_model(model)
        self.drops: collections.Counter[str] = collections.Counter()
        self._capture = cv2.VideoCapture(self.device)
        if not self._capture.isOpened():
            self._capture.release()
            raise OSError(f"cannot open camera {self.device!r} with OpenCV (no such device, busy, or an "
                          f"unreadable URL/file)")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        # A file delivers frames as fast as it decodes: hold each one until its time, as the camera would.
        self._file_period_ns = int(round(1e9 / fps)) if isinstance(self.device, str) and Path(
            self.device).is_file() and fps > 0 else None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CameraSource:
        """device (index or URL/file), width/height (0 = 128), seed, sensor_model; source_options: upsample_hz,
        max_motion_px."""
        return cls(options.get("device", 0), *_sensor_size(options), seed=int(options.get("seed", 0)),
                   upsample_hz=float(options.get("upsample_hz", 120.0)),
                   max_motion_px=float(options.get("max_motion_px", 1.0)),
                   model=str(options.get("sensor_model", "high")))

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        from microexp_ros.sim.source import sensor_luminance

        first = last = None
        index = 0
        while True:
            if self._file_period_ns is not None and first is not None:
                delay = first + index * self._file_period_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            ok, frame = self._capture.read()
            arrival = time.monotonic_ns()
            if not ok:
                if self._file_period_ns is not None:
                    return  # end of the file
                raise RuntimeError(f"camera {self.device!r} stopped delivering frames")
            if first is None:
                first = arrival
            t = arrival - first
            if last is not None and t <= last:  # two reads within the clock's resolution
                t = last + 1
            last = t
            index += 1
            yield t, sensor_luminance(frame, self.width, self.height)

    def batches(self) -> Iterator[SourceBatch]:
        from microexp_ros.sim.interpolation import iter_upsampled
        from microexp_ros.sim.source import SimulatedEventSource

        frames = iter_upsampled(self._frames(), self.upsample_hz, self.max_motion_px)
        for events, triggers in SimulatedEventSource(frames, self.width, self.height, self.sensor, seed=self.seed):
            yield SourceBatch(events, triggers)

    def close(self) -> None:
        """Release the device."""
        self._capture.release()
