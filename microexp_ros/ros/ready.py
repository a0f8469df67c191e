"""A node's latched `~/ready` flag: what a replay waits for before its first message.

A node publishes std_msgs/Bool on `~/ready` (reliable, transient local: a late subscriber still gets it) once
what it publishes can reach its readers: right after construction, or, for a node that holds its first
outputs until its readers have matched (`publish_gate.PublishGate`), when that gate opens (True when they
matched, False when it gave up waiting). That a node's output topic has a publisher says only that the node
exists; its readers may still be matching it, and the first messages of a replay would then wait in its gate
(or, without one, be lost) instead of flowing through the graph in real time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from rclpy.node import Node
from std_msgs.msg import Bool

from microexp_ros.ros import qos

READY_TOPIC = "~/ready"


def ready_announcer(node: Node) -> Callable[[bool], None]:
    """The node's `~/ready` publisher, as a call that publishes the flag (nothing published yet)."""
    publisher = node.create_publisher(Bool, READY_TOPIC, qos.latched_qos())
    return lambda matched: publisher.publish(Bool(data=matched))


def announce_ready(node: Node) -> None:
    """Publish the node's `~/ready` flag (True) now: a node without a gate, at the end of its construction."""
    ready_announcer(node)(True)


class ReadyFlags:
    """Subscribes the `~/ready` topics of other nodes; which have not said ready yet, and which gave up."""

    def __init__(self, node: Node, topics: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, bool | None] = {topic: None for topic in topics}
        self._subscriptions = [node.create_subscription(Bool, topic, self._setter(topic), qos.latched_qos())
                               for topic in topics]

    def _setter(self, topic: str):
        def on_flag(msg: Bool) -> None:
            with self._lock:
                self._flags[topic] = bool(msg.data)
        return on_flag

    def missing(self) -> list[str]:
        """The topics no flag has come from yet."""
        with self._lock:
            return [topic for topic, flag in self._flags.items() if flag is None]

    def unmatched(self) -> list[str]:
        """The topics whose node said it opened without all its readers (its gate timed out)."""
        with self._lock:
            return [topic for topic, flag in self._flags.items() if flag is False]
