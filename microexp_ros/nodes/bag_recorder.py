"""bag_recorder (node `bag_recorder`): records chosen topics to a rosbag2 MCAP bag, raw (no decode/encode).

Topics are discovered as publishers appear (type and offered QoS from the graph); each is subscribed with
`raw=True` and a QoS that connects to its publishers (best-effort if any publisher is), and written with the
publisher's offered QoS, its message definition and RIHS01 hash (metadata v9) through `data.bag_io`. The bag is
closed when the node stops (SIGINT/SIGTERM), so every message received is in the file and metadata.yaml exists.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from microexp_ros.data.bag_io import STORAGES, BagError, BagWriter, TopicQos
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.msg_types import message_class
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.runtime import run_node

PARAMS = [
    Param("topics", ["/event_camera/events", "/rgb/image_raw"], "topics to record"),
    Param("output", "", "bag directory to create ('' = recording_<UTC date>_<time> in the working directory)"),
    Param("storage", "mcap", "rosbag2 storage", choices=tuple(STORAGES)),
    Param("discovery_period_s", 0.2, "how often to look for publishers of topics not yet recorded (s)",
          min=0.01, max=60.0),
]


def offered_qos(profiles: list[QoSProfile]) -> TopicQos:
    """What to store as offered QoS: best-effort if any publisher is, transient-local if all are."""
    best_effort = any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in profiles)
    latched = bool(profiles) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    depth = max((int(p.depth) for p in profiles), default=10)
    return TopicQos("best_effort" if best_effort else "reliable", "transient_local" if latched else "volatile",
                    max(depth, 1))


class BagRecorder(Node):
    def __init__(self) -> None:
        super().__init__("bag_recorder")
        self.p = declare_parameters(self, PARAMS)
        self.health = Health(self)
        self.wanted = [t for t in self.p["topics"] if t]
        if not self.wanted:
            raise ValueError("parameter 'topics' names no topic to record")
        output = self.p["output"] or datetime.now(timezone.utc).strftime("recording_%Y%m%d_%H%M%S")
        self.writer = BagWriter(Path(output), self.p["storage"])
        self.get_logger().info(f"recording {', '.join(self.wanted)} to {self.writer.path} ({self.p['storage']})")
        self.subscriptions_by_topic: dict[str, object] = {}
        self.rejected: set[str] = set()
        self.create_timer(self.p["discovery_period_s"], self.discover)
        self.discover()

    def discover(self) -> None:
        missing = [t for t in self.wanted if t not in self.subscriptions_by_topic and t not in self.rejected]
        if not missing:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in missing:
            if topic not in types:
                continue
            if len(types[topic]) != 1:
                self._reject(topic, f"has several types {types[topic]}")
                continue
            msgtype = types[topic][0]
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            offered = offered_qos([info.qos_profile for info in publishers])
            try:
                cls = message_class(msgtype)
                self.writer.add_topic(topic, msgtype, offered)
            except (ValueError, BagError) as exc:
                self._reject(topic, str(exc))
                continue
            profile = qos.events_qos(1000) if offered.reliability == "best_effort" else qos.samples_qos(1000)
            self.subscriptions_by_topic[topic] = self.create_subscription(
                cls, topic, lambda raw, topic=topic: self.on_message(topic, raw), profile, raw=True)
            self.get_logger().info(f"recording {topic} ({msgtype}, offered {offered.reliability})")

    def _reject(self, topic: str, why: str) -> None:
        self.rejected.add(topic)
        self.health.error("topic_not_recordable", f"{topic}: {why}")

    def on_message(self, topic: str, raw: bytes) -> None:
        if self.writer.closed:
            self.health.drop("after_close")
            return
        self.writer.write(topic, time.time_ns(), raw)
        self.health.count(f"in:{topic}")

    def close(self) -> None:
        self.writer.close()
        self.get_logger().info(f"closed {self.writer.path}: " +
                               ", ".join(f"{t} {n}" for t, n in self.writer.counts.items()))


def main() -> None:
    sys.exit(run_node(BagRecorder))


if __name__ == "__main__":
    main()
