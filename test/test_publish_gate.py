"""PublishGate: a node's first outputs wait for the graph's readers, in order, then flow straight through."""

from __future__ import annotations

from collections import Counter

from microexp_ros.ros.dds import DISCOVERY_SETTLE_S
from microexp_ros.ros.publish_gate import PublishGate


class FakePublisher:
    def __init__(self) -> None:
        self.subscribers = 0
        self.sent: list[int] = []

    def get_subscription_count(self) -> int:
        return self.subscribers

    def publish(self, msg: int) -> None:
        self.sent.append(msg)


class FakeHealth:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.errors: list[tuple[str, str]] = []

    def count(self, stream: str, n: int = 1) -> None:
        self.counts[stream] += n

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def error(self, kind: str, detail: str) -> None:
        self.errors.append((kind, detail))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_holds_until_every_reader_matched_for_the_settle_time_then_passes_through():
    publisher, health, clock = FakePublisher(), FakeHealth(), Clock()
    gate = PublishGate(publisher, 2, 10.0, health, clock)
    gate.publish(0)
    publisher.subscribers = 1
    clock.now += 1.0
    gate.publish(1)
    gate.poll()
    assert publisher.sent == []          # one reader of two
    publisher.subscribers = 2
    gate.poll()                          # both there: the settle time starts now
    clock.now += DISCOVERY_SETTLE_S / 2
    gate.publish(2)
    assert publisher.sent == []
    clock.now += DISCOVERY_SETTLE_S / 2
    gate.poll()
    assert publisher.sent == [0, 1, 2]
    assert health.counts["held_until_matched"] == 3 and not health.errors
    publisher.subscribers = 0            # open for good: a reader that restarts does not stall the stream
    gate.publish(3)
    assert publisher.sent == [0, 1, 2, 3]


def test_a_reader_that_leaves_during_the_settle_time_restarts_it():
    publisher, health, clock = FakePublisher(), FakeHealth(), Clock()
    gate = PublishGate(publisher, 1, 10.0, health, clock)
    gate.publish(0)
    publisher.subscribers = 1
    gate.poll()
    publisher.subscribers = 0
    clock.now += DISCOVERY_SETTLE_S
    gate.poll()
    publisher.subscribers = 1
    gate.poll()
    clock.now += DISCOVERY_SETTLE_S / 2
    gate.poll()
    assert publisher.sent == []
    clock.now += DISCOVERY_SETTLE_S / 2
    gate.poll()
    assert publisher.sent == [0]


def test_after_the_timeout_it_sends_what_it_held_and_reports_it():
    publisher, health, clock = FakePublisher(), FakeHealth(), Clock()
    gate = PublishGate(publisher, 3, 5.0, health, clock)
    clock.now += 60.0                     # waiting with nothing held is not a timeout
    gate.poll()
    gate.publish("a")
    publisher.subscribers = 2
    clock.now += 4.9
    gate.publish("b")
    assert publisher.sent == []
    clock.now += 0.1
    gate.poll()
    assert publisher.sent == ["a", "b"]
    assert [kind for kind, _ in health.errors] == ["subscribers_not_matched"]
    assert "2 of 3 subscribers" in health.errors[0][1] and "2 held messages" in health.errors[0][1]


def test_waiting_for_no_reader_publishes_at_once():
    publisher, health = FakePublisher(), FakeHealth()
    gate = PublishGate(publisher, 0, 5.0, health)
    gate.publish(7)
    assert publisher.sent == [7] and not health.counts


def test_at_most_max_held_wait_the_oldest_are_dropped_and_counted():
    publisher, health, clock = FakePublisher(), FakeHealth(), Clock()
    gate = PublishGate(publisher, 1, 60.0, health, clock, max_held=3)
    for k in range(5):
        gate.publish(k)
    publisher.subscribers = 1
    gate.poll()
    clock.now += 2 * DISCOVERY_SETTLE_S
    gate.poll()
    assert publisher.sent == [2, 3, 4] and health.drops["held_overflow"] == 2
    assert health.counts["held_until_matched"] == 3


def test_on_open_says_whether_the_readers_matched_once():
    opened: list[bool] = []
    publisher, health, clock = FakePublisher(), FakeHealth(), Clock()
    gate = PublishGate(publisher, 1, 5.0, health, clock, on_open=opened.append)
    publisher.subscribers = 1
    gate.poll()
    assert opened == []                  # matched, not yet settled
    clock.now += 2 * DISCOVERY_SETTLE_S
    gate.poll()
    gate.poll()
    assert opened == [True]
    late = PublishGate(FakePublisher(), 1, 5.0, health, clock, on_open=opened.append)
    late.publish("x")
    clock.now += 5.0
    late.poll()
    assert opened == [True, False]       # opened on its timeout, without its reader
