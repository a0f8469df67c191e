"""event_camera_driver (node `event_camera`): publishes `~/events` EventPackets (evt3) from a pluggable source.

Like metavision_driver: best-effort `events_qos()`, packets closed by `event_message_time_threshold` (s) or
`event_message_size_threshold` (bytes), header.stamp = host time of the packet's first event, width/height/seq
set, time_base 0. Sources: `file` (recordings and bags, paced at `rate`, optionally looped) and any kind in
`microexp_ros.events.sources.SOURCE_KINDS`: `face` (the synthetic face generator through the event simulator),
`sim` (a video file through the simulator), `camera` (a webcam through the simulator, stamped on arrival); their
extra options go in `source_options`. An evt3 bag is forwarded as recorded (`forward_recorded_words`, on by
default): each packet is the bag's own words between its bounds behind the decoder state
(`SplicingPacketizer`, `count/packets_spliced`), encoded only where that cannot be shown to carry the same
events (`count/packets_encoded`). A source that cannot be opened or fails is logged, counted in diagnostics
and retried with exponential backoff; the node never exits because of it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import yaml
from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from std_msgs.msg import Header

from microexp_ros.data.dataset import RESOLUTIONS
from microexp_ros.events.packetizer import Packet, Packetizer, SplicingPacketizer
from microexp_ros.events.sources import SOURCE_KINDS, EventStreamSource, Pacer, make_source
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.publish_gate import POLL_S, SubscriberWait
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import to_time_msg

PARAMS = [
    Param("source", "file", "where events come from", choices=tuple(SOURCE_KINDS)),
    Param("file", "", "recording for source=file: .raw, .aedat4, .bin, rosbag2 or ROS 1 bag (a video for sim)"),
    Param("device", "0", "camera for source=camera: a device index, or a URL/file OpenCV opens"),
    Param("seed", 0, "seed of the simulated sources (face, sim, camera): pixel noise, the face's episodes",
          min=0, max=2**31 - 1),
    Param("sensor_model", "high", "pixel model of the simulated sources: high (EVK4-like), low (DAVIS346-like)",
          choices=RESOLUTIONS),
    Param("lighting", "normal", "lighting of source=face: normal, bright, dim, very_dim, flicker, shadow"),
    Param("rate", 1.0, "playback rate of recorded/simulated sources: 1 = real time, 0 = as fast as possible",
          min=0.0, max=1000.0),
    Param("loop", False, "restart the recording at its end"),
    Param("width", 0, "sensor width for files that do not store it (0 = from the file)", min=0, max=2048),
    Param("height", 0, "sensor height for files that do not store it (0 = from the file)", min=0, max=2048),
    Param("encoding", "", "encoding of a .raw file without a header line (evt3, evt2; '' = from the file)"),
    Param("topic", "", "EventPacket topic to play from a bag with several ('' = the only one)"),
    Param("source_options", "", "YAML mapping of extra options for the source (e.g. the simulator's)"),
    Param("frame_id", "event_camera", "header.frame_id of the packets"),
    Param("event_message_time_threshold", 1e-3, "close a packet once it spans this long (s)", min=1e-6, max=10.0),
    Param("event_message_size_threshold", 1 << 20, "close a packet before it exceeds this many bytes",
          min=64, max=1 << 30),
    Param("send_queue_size", 1000, "publisher queue depth", min=1, max=100000),
    Param("wait_for_subscribers", 0, "before playing, wait for this many subscribers (0 = start at once)",
          min=0, max=100),
    Param("retry_initial_s", 0.5, "first retry delay after a source failure (s)", min=0.01, max=60.0),
    Param("retry_max_s", 10.0, "longest retry delay (s)", min=0.01, max=600.0),
    Param("exit_when_done", False, "exit (code 0) when a non-looping source ends"),
    Param("forward_recorded_words", True, "publish an evt3 bag's own words re-cut at the packet bounds instead "
                                          "of decoding and re-encoding them (false: always re-encode)"),
]


class EventCameraDriver(Node):
    def __init__(self) -> None:
        super().__init__("event_camera")
        self.p = declare_parameters(self, PARAMS)
        self.health = Health(self)
        self.publisher = self.create_publisher(EventPacket, "~/events", qos.events_qos(self.p["send_queue_size"]))
        self.options = dict(self.p)
        if self.p["source_options"]:
            extra = yaml.safe_load(self.p["source_options"])
            if not isinstance(extra, dict):
                raise ValueError(f"parameter 'source_options' must be a YAML mapping, got {self.p['source_options']!r}")
            self.options.update(extra)
        self.seq = 0
        self._msg: EventPacket | None = None
        self._stop = threading.Event()
        self._reported: dict[str, dict[str, int]] = {}   # per counter group: totals already reported
        self._worker = threading.Thread(target=self._run, name="event_source", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        delay = self.p["retry_initial_s"]
        while not self._stop.is_set():
            try:
                source = make_source(self.p["source"], self.options)
            except Exception as exc:  # missing file, bad format, device absent: retry, never crash
                self.health.error("source_open", f"cannot open {self.p['source']} source: {exc}; "
                                                 f"retrying in {delay:.2f} s")
                self._stop.wait(delay)
                delay = min(delay * 2, self.p["retry_max_s"])
                continue
            self.get_logger().info(f"{self.p['source']} source open: {source.width}x{source.height}"
                                   + (f" ({self.p['file']})" if self.p["file"] else ""))
            try:
                self._wait_for_subscribers()
                self._stream(source)
            except Exception as exc:
                self.health.error("source_failed", f"{type(exc).__name__}: {exc}; reopening in {delay:.2f} s")
                self._stop.wait(delay)
                delay = min(delay * 2, self.p["retry_max_s"])
                continue
            finally:
                source.close()
            if self._stop.is_set():
                return
            self.get_logger().info("source ended")
            time.sleep(0.5)  # let the last packets leave
            if self.p["exit_when_done"]:
                os.kill(os.getpid(), signal.SIGINT)
            else:   # the stream is over: readers see no publisher rather than one that went silent (Health.watch)
                self.destroy_publisher(self.publisher)
            return

    def _wait_for_subscribers(self) -> None:
        if not self.p["wait_for_subscribers"]:
            return
        subscribers = SubscriberWait(self.publisher, self.p["wait_for_subscribers"])
        while not subscribers.ready() and not self._stop.wait(POLL_S):
            pass

    def _stream(self, source: EventStreamSource) -> None:
        thresholds = (int(round(self.p["event_message_time_threshold"] * 1e9)), self.p["event_message_size_threshold"])
        forwards = self.p["forward_recorded_words"] and getattr(source, "forwards_words", False)
        packetizer = (SplicingPacketizer(source.width, source.height, *thresholds) if forwards
                      else Packetizer(*thresholds))
        pacer = None if source.live else Pacer(self.p["rate"])
        self._reported = {"packetizer": {}, "source": {}, "packets": {}}
        for batch in source.batches():
            if self._stop.is_set():
                return
            arrival = time.time_ns()
            if forwards and batch.words is not None:
                packets = packetizer.add_words(batch.words, batch.state, batch.events, batch.triggers)
            else:
                packets = packetizer.add(batch.events, batch.triggers)
            for packet in packets:
                self._publish(packet, source, pacer, arrival)
            self._count_drops(packetizer, source)
        for packet in packetizer.flush():
            self._publish(packet, source, pacer, time.time_ns())
        self._count_drops(packetizer, source)

    def _publish(self, packet: Packet, source: EventStreamSource, pacer: Pacer | None, arrival_ns: int) -> None:
        stamp = arrival_ns if pacer is None else pacer.wait(packet.first_t, self._stop)
        if self._stop.is_set():
            return
        msg = self._message(source)
        msg.header.stamp = to_time_msg(stamp)
        msg.seq = self.seq
        msg.events = packet.data   # bytes: one memcpy into the message's array
        self.publisher.publish(msg)
        self.seq += 1
        self.health.count("out:packets")
        self.health.count("out:events", int(packet.events.size))
        self.health.count("out:triggers", int(packet.triggers.size))

    def _message(self, source: EventStreamSource) -> EventPacket:
        """The packet message, built once per source and refilled per publish (publish copies it out)."""
        msg = self._msg
        if msg is None or (msg.width, msg.height) != (source.width, source.height):
            msg = self._msg = EventPacket(header=Header(frame_id=self.p["frame_id"]), height=source.height,
                                          width=source.width, time_base=0, encoding="evt3", is_bigendian=False)
        return msg

    def _count_drops(self, packetizer: Packetizer, source: EventStreamSource) -> None:
        """Report what the packetizer and the source dropped since the last call (their counters are totals),
        and how a splicing packetizer made its packets."""
        if isinstance(packetizer, SplicingPacketizer):
            seen = self._reported["packets"]
            for key, total in (("packets_spliced", packetizer.spliced), ("packets_encoded", packetizer.encoded)):
                self.health.count(key, total - seen.get(key, 0))
                seen[key] = total
        for prefix, counter in (("packetizer", packetizer.drops), ("source", source.drops)):
            self.health.drop_increase(counter, self._reported[prefix], f"{prefix}:")

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)


def main() -> None:
    sys.exit(run_node(EventCameraDriver))


if __name__ == "__main__":
    main()
