"""time_sync (node `time_sync`): one SyncedSample per RGB frame with the events cut exactly at the window bounds.

Subscribes `events` (EventPacket, best-effort) and `image` (Image); publishes `~/samples` (SyncedSample,
reliable). Sensor time is mapped to host time by a StampClock fed with packet stamps (`sync_mode: stamps`),
or frames are pinned to the EXT_TRIGGER edges of the RGB strobe (`sync_mode: trigger`). The window is the
`window_ms` before the frame (`trailing`) or centred on it. In `events_only` mode, windows come at
`window_rate_hz` without images. Packets are decoded and windows cut by `sync.stream_windows.EventStreamWindows`.
The sample's events are self-contained EVT3 whose decoded times are the sensor times of
`sensor_time_start_ns`/`sensor_time_end_ns`: for an evt3 stream, the input words between the window bounds
behind the decoder state at its start (no re-encoding; counted as `windows_spliced`), otherwise (other
encodings, out-of-order times) re-encoded (`windows_reencoded`). Malformed packets (unknown encoding, zero
geometry, truncated words), sequence gaps, out-of-order times and windows that cannot be completed are
counted in diagnostics; the node keeps running.
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.events.evt3 import Evt3Encoder
from microexp_ros.msg import SyncedSample
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.publish_gate import GATE_PARAMS, gated
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import from_time_msg, to_time_msg
from microexp_ros.sync.clock import StampClock, TriggerMatcher
from microexp_ros.sync.stream_windows import EventStreamWindows, PacketError
from microexp_ros.sync.windows import WINDOW_MODES, FixedRateWindows, Window, WindowCutter, window_bounds

PARAMS = [
    Param("window_ms", 33.0, "window length (ms)", min=0.01, max=10000.0),
    Param("window_mode", "trailing", "window placement relative to the frame's exposure time",
          choices=WINDOW_MODES),
    Param("sync_mode", "stamps", "stamps: sensor→host offset from packet stamps; trigger: EXT_TRIGGER edges",
          choices=("stamps", "trigger")),
    Param("events_only", False, "emit fixed-rate windows without RGB"),
    Param("window_rate_hz", 30.0, "events-only window rate (Hz)", min=0.01, max=10000.0),
    Param("history_ms", 1000.0, "how far back events are kept for late frames (ms)", min=1.0, max=60000.0),
    Param("max_buffer_events", 20_000_000, "hard cap on buffered events", min=1000, max=1_000_000_000),
    Param("max_pending", 100, "cap on frames waiting for their events", min=1, max=100000),
    Param("max_delay_ms", 200.0, "a frame's window is closed this long (wall time) after it arrived if the "
                                 "event stream is quiet", min=1.0, max=60000.0),
    Param("trigger_channel", 0, "EXT_TRIGGER channel of the RGB strobe", min=0, max=15),
    Param("trigger_tolerance_ms", 10.0, "largest frame↔trigger distance accepted (ms)", min=0.001, max=1000.0),
    Param("clock_reset_ms", 100.0, "an offset jump larger than this restarts the clock and the stream (ms)",
          min=1.0, max=1e7),
    Param("frame_id", "", "header.frame_id of samples ('' = the image's, or the events' in events-only mode)"),
    *GATE_PARAMS,
]

# Packets taken per events callback beyond the first when they queued up, in events-only mode (timers still run
# between bursts).
DRAIN_PACKETS = 64


def _warm_up_codecs() -> None:
    """Load the compiled EVT3 and window kernels now: a first packet that waits ~1 s for them would overflow
    the queue."""
    probe = np.zeros(2, EVENT_DTYPE)
    probe["t"] = [1000, 2000]
    stream = EventStreamWindows(WindowCutter(), splice=True)
    stream.add(Evt3Encoder(self_contained=True).encode(probe), 0, 0, "evt3", 16, 16)
    stream.cutter.request(1000, 2000)
    for window in stream.ready():
        stream.encoded(window)


class TimeSync(Node):
    def __init__(self) -> None:
        super().__init__("time_sync")
        self.p = declare_parameters(self, PARAMS)
        self.health = Health(self)
        self.window_ns = int(round(self.p["window_ms"] * 1e6))
        fixed = (FixedRateWindows(int(round(1e9 / self.p["window_rate_hz"])), self.window_ns,
                                  max_due=self.p["max_pending"]) if self.p["events_only"] else None)
        self.stream = EventStreamWindows(
            WindowCutter(int(self.p["history_ms"] * 1e6), self.p["max_buffer_events"], self.p["max_pending"]),
            fixed, StampClock(reset_threshold_ns=int(self.p["clock_reset_ms"] * 1e6)), splice=True)
        self.clock, self.cutter = self.stream.clock, self.stream.cutter   # frames' windows are asked for on them
        self.triggers = TriggerMatcher(self.p["trigger_channel"], 1, int(self.p["trigger_tolerance_ms"] * 1e6))
        self.stream_frame_id = ""
        self.sequence = 0
        self.stream_drops: dict[str, int] = {}
        self.waiting_images: deque[Image] = deque(maxlen=self.p["max_pending"])
        self.last_packet_wall = 0.0
        # Subscriptions first: the `~/ready` flag a bag player waits for comes after them, so the first
        # packets and frames are not missed.
        self.events_sub = self.create_subscription(EventPacket, "events", self.on_events, qos.events_qos())
        self.health.watch(self.events_sub, "in:packets")
        if not self.p["events_only"]:
            self.health.watch(self.create_subscription(Image, "image", self.on_image, qos.image_qos()), "in:images")
        self.publisher = self.create_publisher(SyncedSample, "~/samples", qos.samples_qos())
        self.gate = gated(self, self.publisher, self.p, self.health)
        self.create_timer(0.05, self.on_timer)

    # ---- events ----------------------------------------------------------------------------------------
    def on_events(self, msg: EventPacket) -> None:
        """One packet, then in events-only mode those that queued meanwhile (up to DRAIN_PACKETS): when the
        node runs behind, a burst costs one executor pass (~0.2 ms of Python per packet at 1 kHz) instead of
        one per packet. With images, one packet per pass, so frames never wait behind a burst of events."""
        self._on_packet(msg)
        for _ in range(DRAIN_PACKETS if self.p["events_only"] else 0):
            with self.events_sub.handle:
                taken = self.events_sub.handle.take_message(EventPacket, False)
            if taken is None:
                return
            self.health.count("packets_drained")
            self._on_packet(taken[0])

    def _on_packet(self, msg: EventPacket) -> None:
        self.health.count("in:packets")
        self.last_packet_wall = time.monotonic()
        try:
            result = self.stream.add(msg.events, from_time_msg(msg.header.stamp), msg.seq, msg.encoding, msg.width,
                                     msg.height, msg.time_base)
        except PacketError as error:
            self.health.error("bad_packet", str(error))
            if error.stream_rejected:
                self.health.drop("bad_packet")
        else:
            self.stream_frame_id = msg.header.frame_id
            self.health.count("in:events", int(result.events.size))
            self.triggers.add(result.triggers)
            if self.clock.ready:
                self.health.values["clock/offset_ms"] = self.clock.offset_ns / 1e6
                self.health.values["clock/drift_ppm"] = self.clock.drift_ppm
        self._process()

    # ---- frames ----------------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        self.health.count("in:images")
        if len(self.waiting_images) == self.waiting_images.maxlen:
            self.health.drop("image_waited_too_long")
        self.waiting_images.append(msg)
        self._process()

    def _request_for(self, msg: Image) -> bool:
        """Ask the cutter for this frame's window; False if it must wait (no clock yet, trigger not decoded)."""
        if not self.clock.ready:
            return False
        host = from_time_msg(msg.header.stamp)
        sensor = self.clock.to_sensor(host)
        if self.p["sync_mode"] == "trigger":
            complete = self.cutter.complete_until
            if complete is None or complete < sensor + self.triggers.tolerance_ns:
                return False  # its strobe edge may still be in a packet on the way
            edge = self.triggers.match(sensor)
            if edge is None:
                self.health.drop("image_without_trigger")
                return True
            self.health.values["trigger/offset_ms"] = (sensor - edge) / 1e6
            sensor = edge
        start, end = window_bounds(sensor, self.window_ns, self.p["window_mode"])
        self.cutter.request(start, end, (msg, time.monotonic()))
        return True

    # ---- windows ---------------------------------------------------------------------------------------
    def _process(self) -> None:
        while self.waiting_images and self._request_for(self.waiting_images[0]):
            self.waiting_images.popleft()
        for window in self.stream.ready():
            self._publish(window)
        self.health.drop_increase(self.stream.drop_totals("decode:", "events_only_windows_skipped"),
                                  self.stream_drops)
        self.health.values["buffer/events"] = self.cutter.buffered_events
        self.health.values["buffer/pending"] = self.cutter.pending

    def on_timer(self) -> None:
        """Close windows of frames that waited max_delay_ms while no event packet came (a quiet stream)."""
        now = time.monotonic()
        quiet = now - self.last_packet_wall > self.p["max_delay_ms"] / 1e3
        if quiet and self.cutter.pending:
            waited = self.p["max_delay_ms"] / 1e3
            limit = self.cutter.latest_pending_end(lambda tag: tag is not None and now - tag[1] > waited)
            if limit is not None:
                self.cutter.advance(limit)
                self.health.count("windows_closed_by_timeout")
                self._process()

    def _publish(self, window: Window) -> None:
        image, _ = window.tag if window.tag is not None else (None, None)
        packet = EventPacket(
            header=Header(stamp=to_time_msg(max(self.clock.to_host(window.start), 0)), frame_id=self.stream_frame_id),
            height=self.stream.height, width=self.stream.width, seq=self.sequence, time_base=0,
            encoding="evt3", is_bigendian=False)
        try:
            packet.events, spliced = self.stream.encoded(window)
        except ValueError as exc:  # e.g. times garbage input pushed days ahead: no sample, the stream goes on
            self.health.error("window_not_encodable", f"window [{window.start}, {window.end}) ns: {exc}")
            return
        self.health.count("windows_spliced" if spliced else "windows_reencoded")
        sample = SyncedSample(
            header=Header(stamp=to_time_msg(max(self.clock.to_host(window.end), 0)),
                          frame_id=self.p["frame_id"] or (image.header.frame_id if image else self.stream_frame_id)),
            has_rgb=image is not None, events=packet,
            window_start=to_time_msg(max(self.clock.to_host(window.start), 0)),
            window_end=to_time_msg(max(self.clock.to_host(window.end), 0)),
            sensor_time_start_ns=max(window.start, 0), sensor_time_end_ns=max(window.end, 0),
            event_count=window.event_count, on_count=window.on_count,
            trigger_count=int(window.triggers.size), sequence=self.sequence)
        if image is not None:
            sample.rgb = image
        self.gate.publish(sample)
        self.sequence += 1
        self.health.count("out:samples")
        self.health.count("out:events", window.event_count)



def main() -> None:
    sys.exit(run_node(TimeSync, prepare=_warm_up_codecs))


if __name__ == "__main__":
    main()
