"""What the model nodes read from a SyncedSample: the window's events in sensor time, checked.

time_sync re-encodes each window's events as one self-contained EVT3 packet with time origin 0 (the encoder
writes the 16.78 s time wraps up to the window), so a fresh decoder gives sensor time exactly; encodings that
carry a time base (libcaer, mono) decode to sensor time through it. Anything wrong with a sample raises
`SampleError` with a short `kind` the node counts in /diagnostics; decoder drops and events outside the window
bounds are reported, not hidden (`read_sample` counts both on the node's Health).
`RegionSource` picks the face region of a window the same way for every model node.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.window import window_slice
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.image import ImageEncodingError, to_numpy
from microexp_ros.ros.params import ParameterError
from microexp_ros.ros.stamps import from_time_msg


class SampleError(ValueError):
    """A sample the node cannot use; `kind` names the diagnostics counter."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass
class SampleWindow:
    """The events with t0 <= t < t1 (sensor ns, time-sorted) on a width x height sensor, plus what was wrong."""

    events: np.ndarray
    t0_ns: int
    t1_ns: int
    width: int
    height: int
    drops: Counter = field(default_factory=Counter)   # decoder drops and out-of-window events, by reason
    count_mismatch: bool = False                      # decoded count differs from the sample's event_count


def sample_window(msg) -> SampleWindow:
    """Decode a microexp_ros/SyncedSample's events; SampleError for an unusable sample."""
    packet = msg.events
    t0, t1 = int(msg.sensor_time_start_ns), int(msg.sensor_time_end_ns)
    if t1 <= t0:
        raise SampleError("bad_window", f"window end {t1} ns is not after its start {t0} ns")
    try:
        decoder = make_decoder(packet.encoding, packet.width, packet.height)
    except ValueError as error:
        raise SampleError("bad_events", str(error)) from None
    try:
        result = decoder.decode(memoryview(packet.events), time_base=int(packet.time_base))
    except (ValueError, TypeError) as error:
        raise SampleError("bad_events", f"events not decodable: {error}") from None
    decoder.finish()
    events = result.events
    drops = Counter({f"decode_{k}": v for k, v in decoder.drops.items() if v})
    if events.size and np.any(np.diff(events["t"]) < 0):
        raise SampleError("unsorted_events", "the sample's events are not in time order")
    inside = window_slice(events, t0, t1)
    if inside.size != events.size:
        drops["events_outside_window"] += int(events.size - inside.size)
    return SampleWindow(inside, t0, t1, int(packet.width), int(packet.height), drops,
                        count_mismatch=int(msg.event_count) != int(events.size))


def read_sample(msg, health: Health) -> SampleWindow | None:
    """`sample_window` with its drops counted on `health`, and None (error counted) for an unusable sample,
    so every model node accounts for its samples the same way."""
    try:
        window = sample_window(msg)
    except SampleError as error:
        health.error(error.kind, str(error))
        return None
    for reason, n in window.drops.items():
        health.drop(reason, n)
    return window


def camera_frame(image) -> np.ndarray:
    """A sensor_msgs/Image as the science code takes frames: gray [H, W] or BGR [H, W, 3] (rgb8 reordered).

    ImageEncodingError (a ValueError) for an unsupported encoding or data that does not cover the image.
    """
    try:
        frame = to_numpy(image)
    except ImageEncodingError:
        raise
    except Exception as error:  # a ROS 2 cv_bridge raises its own CvBridgeError / TypeError types
        raise ImageEncodingError(f"image ({image.width}x{image.height} {image.encoding}) not readable: "
                                 f"{error}") from None
    return np.ascontiguousarray(frame[:, :, ::-1]) if image.encoding == "rgb8" else frame


Region = tuple[int, int, int, int]


def region_param(name: str, values) -> Region | None:
    """(x, y, w, h) from a 4-int region parameter; None for "the whole image" (w = h = 0); ParameterError else."""
    values = list(values)
    if len(values) != 4:
        raise ParameterError(f"parameter '{name}' needs 4 integers [x, y, w, h], got {values}")
    x, y, w, h = (int(v) for v in values)
    if (w, h) == (0, 0):
        return None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ParameterError(f"parameter '{name}' [x, y, w, h] needs x, y >= 0 and w, h > 0, got {values}")
    return x, y, w, h


class RegionUnavailable(Exception):
    """No usable face region for a window; the message is the drop reason."""


@dataclass(frozen=True)
class FaceCrop:
    """The face for one window: event-pixel region, RGB-pixel region (None = whole image) and face id."""

    event_roi: Region | None
    rgb_roi: Region | None
    face_id: str


class RegionSource:
    """The face region a model node uses: fixed by parameters, or the latest FaceRegion message if recent."""

    def __init__(self, use_face_region: bool, event_roi: Region | None, rgb_roi: Region | None, face_id: str,
                 max_age_ns: int) -> None:
        self.use_face_region = use_face_region
        self.fixed = FaceCrop(event_roi, rgb_roi, face_id)
        self.max_age_ns = int(max_age_ns)
        self._latest: tuple[int, FaceCrop] | None = None

    def update(self, stamp_ns: int, event_roi: Region, rgb_roi: Region | None, face_id: str) -> None:
        """Record a FaceRegion (stamp, event-pixel box, RGB-pixel box or None when static, face id)."""
        self._latest = (int(stamp_ns), FaceCrop(event_roi, rgb_roi, face_id))

    def update_from_msg(self, msg) -> None:
        """Record a microexp_ros/FaceRegion message (its RGB box only when it came from a detection)."""
        def box(r) -> Region:
            return int(r.x_offset), int(r.y_offset), int(r.width), int(r.height)

        self.update(from_time_msg(msg.header.stamp), box(msg.event_roi),
                    box(msg.rgb_roi) if msg.detected else None, msg.face_id)

    def select(self, window_end_ns: int) -> FaceCrop:
        """The region for a window ending at `window_end_ns` (host ns); RegionUnavailable(reason) if none."""
        if not self.use_face_region:
            return self.fixed
        if self._latest is None:
            raise RegionUnavailable("no_face_region")
        stamp, crop = self._latest
        if window_end_ns - stamp > self.max_age_ns:
            raise RegionUnavailable("stale_face_region")
        return crop
