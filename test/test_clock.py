"""Sensor→host clock from packet stamps (offset, drift, restarts) and trigger-based frame matching."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import TRIGGER_DTYPE
from microexp_ros.sync.clock import StampClock, TriggerMatcher


def _packets(offset_ns: int, drift_ppm: float, seconds: float, rng: np.random.Generator, t0: int = 3_000_000_000):
    """(sensor time, host stamp) of 1 ms packets: host = sensor·(1+drift) + offset + transport delay ≥ 20 µs."""
    sensor = t0 + np.arange(0, int(seconds * 1e9), 1_000_000, dtype=np.int64)
    delay = 20_000 + rng.exponential(400_000, sensor.size).astype(np.int64)
    host = offset_ns + sensor + ((sensor - t0) * drift_ppm * 1e-6).astype(np.int64) + delay
    return sensor, host


def test_offset_and_drift_are_recovered_within_100_us():
    rng = np.random.default_rng(3)
    offset, drift = 1_700_000_000_000_000_000, 80.0
    sensor, host = _packets(offset, drift, 8.0, rng)
    clock = StampClock()
    for s, h in zip(sensor, host):
        assert not clock.add(int(s), int(h))
    assert clock.drift_ppm == pytest.approx(drift, abs=5.0)
    for s in (sensor[-1], sensor[-1] - 500_000_000, sensor[-1] + 100_000_000):
        true_host = offset + int(s) + int((int(s) - int(sensor[0])) * drift * 1e-6)
        assert abs(clock.to_host(int(s)) - true_host) < 100_000
        assert abs(clock.to_sensor(true_host) - int(s)) < 100_000


def test_a_jump_restarts_the_clock():
    rng = np.random.default_rng(4)
    clock = StampClock()
    for s, h in zip(*_packets(5_000_000_000, 0.0, 1.0, rng)):
        clock.add(int(s), int(h))
    # a replay loop: sensor time continues, host stamps jump back 2 s
    sensor, host = _packets(3_000_000_000, 0.0, 1.0, rng, t0=4_100_000_000)
    assert clock.add(int(sensor[0]), int(host[0]))
    assert clock.resets == 1
    for s, h in zip(sensor[1:], host[1:]):
        assert not clock.add(int(s), int(h))
    assert abs(clock.offset_ns - 3_000_000_000) < 100_000


def test_clock_without_samples_and_bad_settings_raise():
    with pytest.raises(ValueError, match="no samples"):
        StampClock().to_host(0)
    with pytest.raises(ValueError, match="block_ns"):
        StampClock(block_ns=0)


def test_frames_match_their_trigger_edges():
    edges = np.zeros(8, TRIGGER_DTYPE)
    edges["t"] = np.repeat(np.arange(4) * 33_333_000 + 1_000_000, 2)
    edges["t"][1::2] += 5_000_000       # falling edges 5 ms after the rising ones
    edges["edge"][0::2] = 1
    edges["id"] = 0
    other = np.zeros(1, TRIGGER_DTYPE)
    other["t"], other["edge"], other["id"] = 1_000_000, 1, 3   # another channel: ignored
    matcher = TriggerMatcher(channel=0, tolerance_ns=5_000_000)
    matcher.add(np.concatenate([edges, other]))
    assert matcher.counts["edges"] == 4
    # frame stamps mapped through a clock that is off by up to 3 ms
    assert matcher.match(34_333_000 + 2_900_000) == 34_333_000
    assert matcher.match(34_333_000) is None            # an edge is used once
    assert matcher.match(1_000_000 - 1_200_000) == 1_000_000
    assert matcher.match(50_000_000) is None            # 16 ms from any edge: beyond tolerance
    assert matcher.counts["matched"] == 2 and matcher.counts["unmatched"] == 2


def test_short_spans_assume_no_drift_and_fits_are_clamped():
    rng = np.random.default_rng(9)
    sensor, host = _packets(0, 0.0, 2.0, rng)
    clock = StampClock()               # 2 s < the 3 s needed before a drift is fitted
    for s, h in zip(sensor, host):
        clock.add(int(s), int(h))
    assert clock.drift_ppm == 0.0 and 0 <= clock.offset_ns < 100_000
    sensor, host = _packets(0, 5000.0, 8.0, rng)   # an impossible 5000 ppm: clamped
    clock = StampClock(max_drift_ppm=300.0)
    for s, h in zip(sensor, host):
        clock.add(int(s), int(h))
    assert clock.drift_ppm == pytest.approx(300.0)
