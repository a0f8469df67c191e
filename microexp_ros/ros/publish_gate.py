"""Holding a publisher's first messages until the graph's readers have matched it.

A volatile writer's messages reach only the readers that have matched it. In a graph started all at once, a
node that publishes as soon as its first input arrives can do so before a downstream reader has matched (on
a loaded machine that takes hundreds of milliseconds after both exist), and that reader never sees those
messages. `PublishGate` holds messages until `wanted` subscribers have been matched for DISCOVERY_SETTLE_S
(or `timeout_s` after the first held message, when it opens anyway and reports it), then opens for good: a
reader that restarts later misses only what was sent while it was away, and a live stream never stalls. At
most `max_held` messages wait (a live camera's frames while the model nodes load): the oldest go first. The
node's `~/ready` flag (`ros.ready`) says when the gate opened, so that a replay can start only then.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from rclpy.node import Node

from microexp_ros.ros.dds import DISCOVERY_SETTLE_S
from microexp_ros.ros.params import Param
from microexp_ros.ros.ready import ready_announcer

POLL_S = 0.05

# The parameters of a gated publisher (the graph sets wait_for_subscribers to the number of its readers).
GATE_PARAMS = [
    Param("wait_for_subscribers", 0, "hold the first outputs until this many subscribers have matched "
                                     "(0 = publish at once)", min=0, max=1000, read_only=True),
    Param("subscriber_timeout_s", 10.0, "after holding outputs this long, publish them anyway (an error)",
          min=0.0, max=3600.0, read_only=True),
    Param("max_held", 100, "outputs held at most; beyond, the oldest are dropped (counted)", min=1, max=100000,
          read_only=True),
]


class _Publisher(Protocol):
    def get_subscription_count(self) -> int: ...

    def publish(self, msg: Any) -> None: ...


class _Health(Protocol):
    def count(self, stream: str, n: int = 1) -> None: ...

    def drop(self, reason: str, n: int = 1) -> None: ...

    def error(self, kind: str, detail: str) -> None: ...


class SubscriberWait:
    """True once `wanted` subscribers have been matched for `settle_s` (so they have matched us too)."""

    def __init__(self, publisher: _Publisher, wanted: int, settle_s: float = DISCOVERY_SETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.publisher, self.wanted, self.settle_s, self.clock = publisher, wanted, settle_s, clock
        self.since: float | None = None

    def ready(self) -> bool:
        if self.publisher.get_subscription_count() < self.wanted:
            self.since = None
            return False
        now = self.clock()
        if self.since is None:
            self.since = now
        return now - self.since >= self.settle_s


class PublishGate:
    """`publish` passes messages through once open; before that it holds them, in order, and `poll` (called
    every POLL_S by the owner, e.g. a node timer) sends them when the readers are there or time is up.
    `on_open(matched)` is called once, when it opens later than at construction."""

    def __init__(self, publisher: _Publisher, wanted: int, timeout_s: float, health: _Health,
                 clock: Callable[[], float] = time.monotonic, max_held: int = 100,
                 on_open: Callable[[bool], None] | None = None) -> None:
        self.publisher, self.timeout_s, self.health, self.clock = publisher, timeout_s, health, clock
        self.on_open = on_open
        self.wait = SubscriberWait(publisher, wanted, clock=clock)
        self.is_open = wanted == 0
        self.held: deque[Any] = deque()
        self.max_held = max_held
        self.first_held: float | None = None

    def publish(self, msg: Any) -> None:
        if self.is_open:
            self.publisher.publish(msg)
            return
        if self.first_held is None:
            self.first_held = self.clock()
        if len(self.held) == self.max_held:   # a live stream whose readers are slow to start: keep the newest
            self.held.popleft()
            self.health.drop("held_overflow")
        self.held.append(msg)
        self.poll()

    def poll(self) -> None:
        if self.is_open:
            return
        if self.wait.ready():
            self._open(True)
        elif self.first_held is not None and self.clock() - self.first_held >= self.timeout_s:
            matched = self.publisher.get_subscription_count()
            self.health.error("subscribers_not_matched", f"{matched} of {self.wait.wanted} subscribers matched after "
                                                         f"{self.timeout_s} s; sending the {len(self.held)} held "
                                                         "messages anyway")
            self._open(False)

    def _open(self, matched: bool) -> None:
        self.is_open = True
        if self.held:
            self.health.count("held_until_matched", len(self.held))
        while self.held:
            self.publisher.publish(self.held.popleft())
        if self.on_open is not None:
            self.on_open(matched)


def gated(node: Node, publisher: _Publisher, params: dict[str, Any], health: _Health) -> PublishGate:
    """A PublishGate for `publisher` with GATE_PARAMS' values, polled by a timer of `node` until it opens;
    the node's `~/ready` flag is published when it does."""
    announce = ready_announcer(node)
    gate = PublishGate(publisher, params["wait_for_subscribers"], params["subscriber_timeout_s"], health,
                       max_held=params["max_held"], on_open=announce)
    if gate.is_open:
        announce(True)
        return gate

    def poll() -> None:
        gate.poll()
        if gate.is_open:   # open for good: the node need not wake up for it any more
            timer.cancel()

    timer = node.create_timer(POLL_S, poll)
    return gate
