"""Per-node health: counters of inputs, outputs, drops and errors by kind, published on /diagnostics.

Nothing is dropped silently: every node counts what it discards with a reason, logs the first occurrence of
each reason (then every 100th), and reports the totals once a second as diagnostic_msgs/DiagnosticArray.
A sensor-rate input that stops arriving while its publishers are still matched (a stalled camera, a reader
left deaf by a crashed peer) is reported too: WARN, with how long it has been silent.

Where the node's launcher respawns it, `deaf_restart_s` ends a node that has gone deaf: a watched input silent
that long while its publishers are matched, and over the same time not one /diagnostics report from the other
nodes, which every node sends once a second, although they are matched too. That is how a participant left deaf
by a killed peer (FastDDS shared memory, eProsima/Fast-DDS#5469) looks from inside; it does not recover in its
process, and the respawned node joins with a new participant. A stalled camera or a finished recording leaves
the other nodes' reports flowing: WARN only, no restart. The node leaves only when the next report, a period
later, still finds it so: a node whose process was starved of CPU first runs the reports that queued meanwhile.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.subscription import Subscription

from microexp_ros.ros import qos
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.runtime import request_exit

SILENT_AFTER_S = 5.0   # sensor streams arrive at 30 Hz or more: five seconds without one is not a hiccup
DEAF_EXIT_CODE = 75    # EX_TEMPFAIL: "try again", which is what a respawning launcher does
DEAF_RESTART = Param(
    "deaf_restart_s", 0.0, "end the node (exit code 75) when it has heard neither a watched sensor-rate input nor "
    "any other node's /diagnostics for this long while their publishers are matched (a deaf DDS participant), for "
    "the launcher to respawn it with a new one; 0 = never (set it only where the node respawns: the hri and sim "
    "graphs do)", min=0.0)


@dataclass
class _Watch:
    """A watched input: its subscription, the count that measures it, and since when it has been silent."""

    subscription: Subscription
    stream: str
    after_s: float
    seen: int = -1                 # the stream's count when it last changed
    silent_since: float | None = None
    reported: bool = False


class Health:
    """Counters of one node, with a 1 Hz /diagnostics publisher."""

    def __init__(self, node: Node, period_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 leave: Callable[[int], None] = request_exit) -> None:
        self.node = node
        self._clock = clock
        self._leave = leave
        self._watches: list[_Watch] = []
        self.restart_after_s = 0.0               # deaf_restart_s, declared with the first watch
        self.deaf: str | None = None             # why the node is leaving, once it found itself deaf
        self._deaf_since: float | None = None    # when a report first found it deaf (confirmed a period later)
        self._period_s = period_s
        self._peers: Subscription | None = None  # other nodes' /diagnostics, heard while deaf_restart_s is set
        self._peers_heard_at = clock()
        self.counts: Counter[str] = Counter()    # inputs/outputs by stream: "in:events", "out:samples"
        self.drops: Counter[str] = Counter()     # discarded data by reason
        self.errors: Counter[str] = Counter()    # bad input or failures by kind
        self.values: dict[str, float] = {}       # latest gauges: latency, rates, queue sizes
        self._reported = (0, 0)                  # drop and error totals at the last report
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", qos.predictions_qos(10))
        self._timer = node.create_timer(period_s, self.publish)

    def count(self, stream: str, n: int = 1) -> None:
        self.counts[stream] += n

    def watch(self, subscription: Subscription, stream: str, silent_after_s: float = SILENT_AFTER_S) -> None:
        """Report `subscription` when its count `stream`, once it has started, has not moved for `silent_after_s`
        while the subscription has matched publishers (gauge `silent_s/<stream>`, WARN, one log line per silence).
        For continuous streams only (sensor data, samples), not for outputs that pause by design. The first watch
        declares the node's `deaf_restart_s` parameter."""
        if not self._watches:
            self.restart_after_s = declare_parameters(self.node, [DEAF_RESTART])[DEAF_RESTART.name]
            if self.restart_after_s:
                self._peers = self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_peer_report,
                                                            qos.predictions_qos(10))
        self._watches.append(_Watch(subscription, stream, silent_after_s))

    def on_peer_report(self, array: DiagnosticArray) -> None:
        """A /diagnostics report; one from another node shows this participant still hears the graph."""
        if any(status.name != self.node.get_fully_qualified_name() for status in array.status):
            self._peers_heard_at = self._clock()

    def _deaf_to_peers(self, now: float) -> str | None:
        """How long no other node's report has arrived although other nodes' reporters are matched, when that
        is at least restart_after_s; else None (the graph is still heard, or there is nobody else)."""
        others = self._publishers(self._peers) - 1    # this node's own reporter is matched too
        unheard = now - self._peers_heard_at
        if others < 1 or unheard < self.restart_after_s:
            return None
        return f"no /diagnostics from {others} other node(s) for {unheard:.0f} s"

    def _publishers(self, subscription: Subscription) -> int:
        """Publishers matched to `subscription`; rclpy before Iron (Humble) has no Subscription.get_publisher_count,
        and there the publishers of its topic in the graph stand in."""
        count = getattr(subscription, "get_publisher_count", None)
        return count() if count is not None else self.node.count_publishers(subscription.topic_name)

    def _silences(self) -> list[str]:
        """What each watched input has to report now; updates the silent_s gauges."""
        now, found, deaf = self._clock(), [], None
        for w in self._watches:
            count, publishers = self.counts[w.stream], self._publishers(w.subscription)
            # Arriving, not started yet (a player waiting for the graph), or nobody left to publish: not silent.
            if count != w.seen or not count or not publishers:
                if w.reported:
                    ended = "arrives again" if publishers else "has no publisher left"
                    self.node.get_logger().info(f"{w.stream} on {w.subscription.topic_name} {ended} after "
                                                f"{now - w.silent_since:.0f} s of silence")
                w.seen, w.reported = count, False
                w.silent_since = now if count and publishers else None
            elif w.silent_since is None:   # publishers again after none: the silence starts with them
                w.silent_since = now
            silent = 0.0 if w.silent_since is None else now - w.silent_since
            self.values[f"silent_s/{w.stream}"] = silent
            if silent >= w.after_s:
                found.append(f"no {w.stream} for {silent:.0f} s from {publishers} matched publisher(s) of "
                             f"{w.subscription.topic_name}")
                if not w.reported:
                    self.node.get_logger().warning(found[-1])
                    w.reported = True
                peers = self._deaf_to_peers(now) if self._peers is not None and silent >= self.restart_after_s else None
                if peers is not None:
                    deaf = f"{found[-1]}, and {peers}: deaf, leaving to be respawned with a new DDS participant"
        if deaf is None:
            self._deaf_since = None
        elif self._deaf_since is None:
            self._deaf_since = now
        elif now - self._deaf_since >= self._period_s and self.deaf is None:
            self.deaf = deaf
        return found

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n
        self._log_sometimes(self.drops, reason, "dropped", n)

    def drop_increase(self, totals: Mapping[str, int], seen: dict[str, int], prefix: str = "") -> None:
        """Count as drops (reason `prefix` + key) what the cumulative counters `totals` of a codec, cutter or
        source gained since `seen`, the totals already reported (updated here)."""
        for reason, total in totals.items():
            new = total - seen.get(reason, 0)
            if new > 0:
                self.drop(prefix + reason, new)
                seen[reason] = total

    def error(self, kind: str, detail: str) -> None:
        """Count a bad input or failure of `kind`; log it (the first time and then every 100th)."""
        self.errors[kind] += 1
        if self.errors[kind] == 1 or self.errors[kind] % 100 == 0:
            self.node.get_logger().error(f"{kind} (#{self.errors[kind]}): {detail}")

    def _log_sometimes(self, counter: Counter[str], key: str, verb: str, n: int) -> None:
        total = counter[key]
        if total == n or (total // 100) != ((total - n) // 100):
            self.node.get_logger().warning(f"{verb} {n} ({total} so far): {key}")

    def status(self) -> DiagnosticStatus:
        """Counters are totals since start; the level says whether drops or errors happened since the last
        report (WARN, ERROR), a watched input is silent (WARN) or the node is leaving because it is deaf (ERROR);
        the message names each."""
        totals = (sum(self.drops.values()), sum(self.errors.values()))
        notes = self._silences()
        level = DiagnosticStatus.WARN if notes else DiagnosticStatus.OK
        if self.deaf is not None:
            level, notes = DiagnosticStatus.ERROR, [self.deaf]
        if totals[0] > self._reported[0]:
            level = max(level, DiagnosticStatus.WARN)
            notes.append(f"dropped since last report: {totals[0] - self._reported[0]}")
        if totals[1] > self._reported[1]:
            level = DiagnosticStatus.ERROR
            notes.append(f"errors since last report: {totals[1] - self._reported[1]}")
        message = "; ".join(notes) or "ok"
        self._reported = totals
        values = [KeyValue(key=f"count/{k}", value=str(v)) for k, v in sorted(self.counts.items())]
        values += [KeyValue(key=f"drop/{k}", value=str(v)) for k, v in sorted(self.drops.items())]
        values += [KeyValue(key=f"error/{k}", value=str(v)) for k, v in sorted(self.errors.items())]
        values += [KeyValue(key=k, value=f"{v:.6g}") for k, v in sorted(self.values.items())]
        return DiagnosticStatus(level=level, name=self.node.get_fully_qualified_name(), message=message,
                                hardware_id="microexp_ros", values=values)

    def publish(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        array.status = [self.status()]
        self._publisher.publish(array)
        if self.deaf is not None:   # the last report said why: now leave
            self.node.get_logger().error(self.deaf)
            self._leave(DEAF_EXIT_CODE)
