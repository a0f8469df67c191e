"""An event history fed overlapping, contiguous, gapped and rewound windows holds the stream's last span."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import synthetic_events
from microexp_ros.events.history import EventHistory
from microexp_ros.events.window import window_slice

MS = 1_000_000
SENSOR = (64, 48)
STREAM = synthetic_events(*SENSOR, 0, 2000 * MS, count=40_000, seed=3)


def feed(history: EventHistory, t0: int, t1: int, sensor: tuple[int, int] = SENSOR) -> str | None:
    return history.add(window_slice(STREAM, t0, t1), t0, t1, sensor)


@pytest.mark.parametrize("hop_ms", [200, 50], ids=["contiguous", "overlapping"])
def test_history_holds_the_last_span_of_the_stream(hop_ms):
    history = EventHistory(600 * MS)
    joined = []
    for end in range(200 * MS, 1600 * MS, hop_ms * MS):
        joined.append(feed(history, end - 200 * MS, end))
        events, t0, t1 = history.latest()
        assert (t0, t1) == (max(0, end - 600 * MS), end)
        assert np.array_equal(events, window_slice(STREAM, t0, t1))   # each event once, in order
    assert history.covered_ns == 600 * MS and set(joined) == {None}   # no gap, no reset


def test_windows_longer_than_the_span_each_give_their_last_span():
    history = EventHistory(100 * MS)
    for end in (200, 250, 900):   # overlapping, then after a stretch without samples that is outside the span
        assert feed(history, (end - 200) * MS, end * MS) is None
        events, t0, t1 = history.latest()
        assert (t0, t1) == ((end - 100) * MS, end * MS)
        assert np.array_equal(events, window_slice(STREAM, t0, t1))


def test_a_gap_stays_empty_and_a_rewind_restarts_the_history():
    history = EventHistory(600 * MS)
    assert [feed(history, (end - 200) * MS, end * MS) for end in (200, 400)] == [None, None]
    joined = feed(history, 700 * MS, 900 * MS)    # no samples for 400-700 ms
    events, t0, t1 = history.latest()
    assert (t0, t1, joined) == (300 * MS, 900 * MS, "gap")
    held = window_slice(STREAM, t0, t1)
    assert np.array_equal(events, held[(held["t"] < 400 * MS) | (held["t"] >= 700 * MS)])
    joined = feed(history, 100 * MS, 300 * MS)    # a replay started again
    assert history.latest()[1:] == (100 * MS, 300 * MS) and joined == "reset"
    assert np.array_equal(history.latest()[0], window_slice(STREAM, 100 * MS, 300 * MS))
    assert history.covered_ns == 200 * MS


def test_a_sensor_of_another_size_restarts_the_history():
    """Events of a camera replaced mid-stream (another bag, another sensor) are not mixed with the old ones."""
    history = EventHistory(600 * MS)
    assert [feed(history, (end - 200) * MS, end * MS) for end in (200, 400)] == [None, None]
    assert feed(history, 400 * MS, 600 * MS, sensor=(128, 128)) == "reset"
    assert history.latest()[1:] == (400 * MS, 600 * MS)
    assert np.array_equal(history.latest()[0], window_slice(STREAM, 400 * MS, 600 * MS))
    assert feed(history, 600 * MS, 800 * MS, sensor=(128, 128)) is None   # the new sensor's stream goes on
    assert history.covered_ns == 400 * MS


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="span must be positive"):
        EventHistory(0)
    history = EventHistory(MS)
    with pytest.raises(ValueError, match="empty"):
        history.latest()
    with pytest.raises(ValueError, match="t1 > t0"):
        history.add(STREAM[:0], 5, 5, SENSOR)
