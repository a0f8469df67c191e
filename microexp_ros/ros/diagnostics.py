"""Per-node health: counters of inputs, outputs, drops and errors by kind, published on /diagnostics.

Nothing is dropped silently: every node counts what it discards with a reason, logs the first occurrence of
each reason (then every 100th), and reports the totals once a second as diagnostic_msgs/DiagnosticArray.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from microexp_ros.ros import qos


class Health:
    """Counters of one node, with a 1 Hz /diagnostics publisher."""

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self.node = node
        self.counts: Counter[str] = Counter()    # inputs/outputs by stream: "in:events", "out:samples"
        self.drops: Counter[str] = Counter()     # discarded data by reason
        self.errors: Counter[str] = Counter()    # bad input or failures by kind
        self.values: dict[str, float] = {}       # latest gauges: latency, rates, queue sizes
        self._reported = (0, 0)                  # drop and error totals at the last report
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", qos.predictions_qos(10))
        self._timer = node.create_timer(period_s, self.publish)

    def count(self, stream: str, n: int = 1) -> None:
        self.counts[stream] += n

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
        """Counters are totals since start; the level says whether drops or errors happened since last report."""
        totals = (sum(self.drops.values()), sum(self.errors.values()))
        level, message = DiagnosticStatus.OK, "ok"
        if totals[0] > self._reported[0]:
            level, message = DiagnosticStatus.WARN, f"dropped since last report: {totals[0] - self._reported[0]}"
        if totals[1] > self._reported[1]:
            level, message = DiagnosticStatus.ERROR, f"errors since last report: {totals[1] - self._reported[1]}"
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
