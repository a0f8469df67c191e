"""Mapping event-camera sensor time to host time, two ways.

`StampClock` (software sync): every EventPacket carries the host time its first event reached the driver
(`header.stamp`) and, once decoded, that event's sensor time. host - sensor = true offset + a non-negative
transport delay, so the lower envelope of those differences is the offset. It is tracked per block of
`block_ns` of sensor time (the minimum of each block), and a least-squares line through the recent block
minima gives offset and drift, the way event_camera_tools reports sensor/ROS drift. A jump larger than
`reset_threshold_ns` (a sensor time reset, a replay loop, a late join across an EVT3 wrap) restarts it.

`TriggerMatcher` (hardware sync): the RGB camera's strobe wired to the event camera's trigger input puts an
EXT_TRIGGER edge at each exposure, in sensor time. A frame's host stamp, mapped to sensor time with the
software clock, is matched to the nearest edge within a tolerance; that edge is the exposure's exact
sensor time.
"""

from __future__ import annotations

import collections
from collections import deque

import numpy as np


class StampClock:
    """Sensor→host offset and drift from (sensor time, host stamp) pairs of event packets."""

    def __init__(self, block_ns: int = 250_000_000, blocks: int = 40, reset_threshold_ns: int = 100_000_000,
                 min_fit_span_ns: int = 3_000_000_000, max_drift_ppm: float = 300.0) -> None:
        if block_ns <= 0 or blocks < 1 or reset_threshold_ns <= 0 or min_fit_span_ns < 0 or max_drift_ppm < 0:
            raise ValueError(f"StampClock needs block_ns > 0, blocks >= 1, reset_threshold_ns > 0, "
                             f"min_fit_span_ns >= 0, max_drift_ppm >= 0; got {block_ns}, {blocks}, "
                             f"{reset_threshold_ns}, {min_fit_span_ns}, {max_drift_ppm}")
        self.block_ns = int(block_ns)
        # a drift fitted over a short span is mostly stamp noise: below min_fit_span_ns the clock assumes none,
        # and a fitted drift is clamped to what oscillators do (tens of ppm; max_drift_ppm is generous)
        self.min_fit_span_ns = int(min_fit_span_ns)
        self.max_drift = float(max_drift_ppm) * 1e-6
        self.reset_threshold_ns = int(reset_threshold_ns)
        self._minima: deque[tuple[int, int]] = deque(maxlen=int(blocks))  # (sensor time, min offset) per block
        self.resets = 0
        self.samples = 0
        self._block: int | None = None
        self._ref = 0            # sensor time the fit is centred on
        self._offset = 0.0       # host - sensor at _ref
        self._drift = 0.0        # d(offset)/d(sensor time)

    @property
    def ready(self) -> bool:
        return self.samples > 0

    @property
    def offset_ns(self) -> int:
        """Current estimate of host - sensor at the latest sample."""
        return int(round(self._offset))

    @property
    def drift_ppm(self) -> float:
        return self._drift * 1e6

    def add(self, sensor_ns: int, host_ns: int) -> bool:
        """Add one packet's (first event sensor time, header stamp); True if the clock had to restart."""
        sensor_ns, host_ns = int(sensor_ns), int(host_ns)
        offset = host_ns - sensor_ns
        restarted = False
        if self.samples and abs(offset - self._predict_offset(sensor_ns)) > self.reset_threshold_ns:
            self._minima.clear()
            self._block = None
            self.resets += 1
            restarted = True
        if self._minima and sensor_ns < self._minima[-1][0] - self.block_ns:
            # sensor time went back by more than a block without an offset jump: a restart too
            self._minima.clear()
            self._block = None
            self.resets += 1
            restarted = True
        block = sensor_ns // self.block_ns
        if block != self._block:
            self._minima.append((sensor_ns, offset))
            self._block = block
            self._fit()
        elif offset < self._minima[-1][1]:
            self._minima[-1] = (sensor_ns, offset)
            if len(self._minima) <= 3:  # too few finished blocks for a line: follow the minimum at once
                self._fit()
        self.samples += 1
        return restarted

    def _fit(self) -> None:
        """Offset and drift from the block minima: a line through the finished blocks once there are 3.

        Refitting happens when a block starts (cheap per packet); the open block joins the fit once finished.
        """
        finished = len(self._minima) - 1
        pts = np.array(list(self._minima)[:-1] if finished >= 3 else self._minima, dtype=np.float64)
        self._ref = int(pts[-1, 0])
        if len(pts) < 3 or pts[-1, 0] - pts[0, 0] < self.min_fit_span_ns:
            self._offset, self._drift = float(pts[:, 1].min()), 0.0
            return
        x = pts[:, 0] - self._ref
        slope, _ = np.polyfit(x, pts[:, 1], 1)
        self._drift = float(np.clip(slope, -self.max_drift, self.max_drift))
        # the line with that slope through the lowest block minimum: an envelope, not an average of delays
        self._offset = float(np.min(pts[:, 1] - self._drift * x))

    def _predict_offset(self, sensor_ns: int) -> float:
        return self._offset + self._drift * (sensor_ns - self._ref)

    def to_host(self, sensor_ns: int) -> int:
        """Host time of a sensor time; ValueError before the first sample."""
        if not self.ready:
            raise ValueError("StampClock has no samples yet: no event packet decoded")
        return int(round(sensor_ns + self._predict_offset(sensor_ns)))

    def to_sensor(self, host_ns: int) -> int:
        """Sensor time of a host time (inverse of to_host)."""
        if not self.ready:
            raise ValueError("StampClock has no samples yet: no event packet decoded")
        # host = s + o + d (s - ref)  →  s = (host - o + d ref) / (1 + d)
        return int(round((host_ns - self._offset + self._drift * self._ref) / (1.0 + self._drift)))


class TriggerMatcher:
    """Exposure sensor times from EXT_TRIGGER edges, matched to frames by approximate sensor time.

    Keeps the last `capacity` edges of `channel` with the chosen `edge` (1 = rising); `counts` tracks matched
    and unmatched frames and edges dropped from the full buffer.
    """

    def __init__(self, channel: int = 0, edge: int = 1, tolerance_ns: int = 10_000_000, capacity: int = 1024) -> None:
        if tolerance_ns <= 0 or capacity < 1:
            raise ValueError(f"TriggerMatcher needs tolerance_ns > 0 and capacity >= 1, got {tolerance_ns}, {capacity}")
        self.channel, self.edge = int(channel), int(edge)
        self.tolerance_ns = int(tolerance_ns)
        self._times: deque[int] = deque(maxlen=int(capacity))
        self._used: set[int] = set()
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, triggers: np.ndarray) -> None:
        """Add decoded triggers (TRIGGER_DTYPE); only this channel's edges of the chosen polarity are kept."""
        mine = triggers[(triggers["id"] == self.channel) & (triggers["edge"] == self.edge)]
        overflow = len(self._times) + mine.size - self._times.maxlen
        if overflow > 0:
            self.counts["edges_overflowed"] += overflow
        self._times.extend(int(t) for t in mine["t"])
        self.counts["edges"] += int(mine.size)

    @property
    def latest_edge(self) -> int | None:
        return self._times[-1] if self._times else None

    def match(self, approx_sensor_ns: int) -> int | None:
        """The unused edge nearest to `approx_sensor_ns` within the tolerance, or None (counted)."""
        if not self._times:
            self.counts["unmatched"] += 1
            return None
        times = np.fromiter(self._times, dtype=np.int64, count=len(self._times))
        k = int(np.argmin(np.abs(times - int(approx_sensor_ns))))
        best = int(times[k])
        if abs(best - int(approx_sensor_ns)) > self.tolerance_ns or best in self._used:
            self.counts["unmatched"] += 1
            return None
        self._used.add(best)
        if len(self._used) > 4 * self._times.maxlen:
            oldest = self._times[0]
            self._used = {t for t in self._used if t >= oldest}
        self.counts["matched"] += 1
        return best
