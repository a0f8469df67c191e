"""bag_player (node `bag_player`): plays a bag (MCAP, sqlite3, ROS 1) with its original timing.

Messages are published as their serialized CDR bytes (`publish(raw)`, no decode/encode; ROS 1 bags are
converted to CDR once by the reader), each topic with the QoS it was recorded with (reliable depth 10 for ROS 1
bags, which record none). `rate` scales time, `start_offset` skips the first seconds, `loop` repeats,
`topics` selects topics, and `exit_when_done` ends the process (code 0) after the last message.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from microexp_ros.data.bag_io import BagReader, TopicQos
from microexp_ros.events.sources import Pacer
from microexp_ros.resources import share_path
from microexp_ros.ros.dds import DISCOVERY_SETTLE_S
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.msg_types import message_class
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.ready import ReadyFlags
from microexp_ros.ros.runtime import run_node

PARAMS = [
    Param("bag", "", "bag to play: rosbag2 directory, .mcap, .db3 or ROS 1 .bag ('' = the embedded bag)"),
    Param("rate", 1.0, "playback rate factor (0 = as fast as possible)", min=0.0, max=1000.0),
    Param("loop", False, "replay from the start after the end"),
    Param("start_offset", 0.0, "seconds of the bag to skip", min=0.0, max=1e9),
    Param("topics", [""], "topics to play (empty entries ignored; none = all)"),
    Param("exit_when_done", True, "exit after the last message (else stay idle)"),
    Param("wait_for_subscribers", 0, "before playing, wait until every topic has this many subscribers",
          min=0, max=100),
    Param("wait_for_readers", [""], "before playing, wait until each of these topics (those of the bag) has a "
          "subscriber matched: the graph's inputs (empty entries ignored)"),
    Param("wait_for_ready", [""], "before playing, wait for a flag on each of these latched `~/ready` topics: "
          "the downstream nodes of a graph are up and their readers matched (empty entries ignored)"),
    Param("subscriber_timeout_s", 30.0, "longest wait for subscribers and ready flags (s)", min=0.0, max=3600.0),
]
EMBEDDED_BAG = ("bags", "default")


def qos_profile(recorded: TopicQos | None) -> QoSProfile:
    """The rclpy profile of a recorded QoS (reliable, volatile, depth 10 when the bag recorded none)."""
    recorded = recorded or TopicQos()
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(recorded.depth, 10),
                      reliability=(ReliabilityPolicy.BEST_EFFORT if recorded.reliability == "best_effort"
                                   else ReliabilityPolicy.RELIABLE),
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if recorded.durability == "transient_local"
                                  else DurabilityPolicy.VOLATILE))


class BagPlayer(Node):
    def __init__(self) -> None:
        super().__init__("bag_player")
        self.p = declare_parameters(self, PARAMS)
        self.health = Health(self)
        path = Path(self.p["bag"]) if self.p["bag"] else share_path(*EMBEDDED_BAG)
        topics = [t for t in self.p["topics"] if t] or None
        self.reader = BagReader(path, topics)
        self.publishers_by_topic = {}
        for topic, info in self.reader.topics.items():
            try:
                cls = message_class(info.msgtype)
            except ValueError as exc:
                self.health.error("topic_not_playable", f"{topic}: {exc}")
                continue
            self.publishers_by_topic[topic] = self.create_publisher(cls, topic, qos_profile(info.qos))
        self.ready = ReadyFlags(self, [t for t in self.p["wait_for_ready"] if t])
        if not self.publishers_by_topic:
            raise ValueError(f"{path}: no playable topic (have: {', '.join(self.reader.topics)})")
        self.get_logger().info(f"playing {path}: " + ", ".join(
            f"{t} ({self.reader.topics[t].msgtype}, {self.reader.topics[t].count})" for t in self.publishers_by_topic))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="bag_player", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        try:
            self._wait_for_subscribers()
            start = self.reader.start_ns + int(round(self.p["start_offset"] * 1e9))
            while not self._stop.is_set():
                pacer = Pacer(self.p["rate"])
                for message in self.reader.messages(start_ns=start):
                    if self._stop.is_set():
                        return
                    publisher = self.publishers_by_topic.get(message.topic)
                    if publisher is None:
                        self.health.drop(f"unplayable:{message.topic}")
                        continue
                    pacer.wait(message.time_ns, self._stop)
                    publisher.publish(message.cdr)
                    self.health.count(f"out:{message.topic}")
                if not self.p["loop"]:
                    break
                self.health.count("loops")
        except Exception as exc:  # a corrupt bag stops playback, reported, not a crash of the process
            self.health.error("playback_failed", f"{type(exc).__name__}: {exc}")
        if self._stop.is_set():
            return
        self.get_logger().info("playback done")
        if self.p["exit_when_done"]:
            self._stop.wait(0.5)  # reliable subscribers acknowledge the last messages
            os.kill(os.getpid(), signal.SIGINT)

    def _wait_for_subscribers(self) -> None:
        wanted = self.p["wait_for_subscribers"]

        readers = [t for t in self.p["wait_for_readers"] if t in self.publishers_by_topic]

        def missing() -> list[str]:
            topics = [t for t, p in self.publishers_by_topic.items()
                      if p.get_subscription_count() < max(wanted, int(t in readers))]
            return topics + self.ready.missing()

        if not missing():
            return
        deadline = time.monotonic() + self.p["subscriber_timeout_s"]
        while missing():
            if time.monotonic() > deadline:
                self.health.error("graph_not_ready", f"after {self.p['subscriber_timeout_s']} s still waiting for "
                                                     f"{missing()}; playing anyway")
                break
            if self._stop.wait(0.05):
                return
        if self.ready.unmatched():
            self.health.error("graph_not_ready", f"{self.ready.unmatched()}: not all readers matched; playing")
        self._stop.wait(DISCOVERY_SETTLE_S)  # the subscribers we saw, and those of the nodes, must match us too

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)


def main() -> None:
    sys.exit(run_node(BagPlayer))


if __name__ == "__main__":
    main()
