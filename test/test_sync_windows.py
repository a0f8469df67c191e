"""Windows cut from a packet stream hold exactly the events with start <= t < end of an offline decode."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import Packetizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.window import in_order_mask, join
from microexp_ros.sync.windows import FixedRateWindows, WindowCutter, window_bounds


@pytest.fixture(scope="module")
def recording(real_data):
    """The ROS 1 bag of event_camera_py: 343,474 events + 4,156 triggers over 2.08 s, 640x480."""
    source = open_events(real_data / "event_camera_py" / "test_events_1.bag")
    chunk = next(iter(read_all(source).values()))
    return chunk.events, chunk.triggers


def _stream(events, triggers, threshold_ns=1_000_000):
    """Decoded packets as time_sync receives them: packetizer → EVT3 bytes → a stateful decoder."""
    packetizer = Packetizer(threshold_ns)
    decoder = make_decoder("evt3", 640, 480)
    for packet in packetizer.add(events, triggers) + packetizer.flush():
        result = decoder.decode(packet.data)
        yield result.events, result.triggers


def _offline(events, start, end):
    return events[(events["t"] >= start) & (events["t"] < end)]


@pytest.mark.parametrize("mode", ["trailing", "centred"])
def test_windows_match_offline_decode(recording, mode):
    events, triggers = recording
    frames = np.arange(events["t"][0] + 40_000_000, events["t"][-1] - 40_000_000, 33_333_333)
    cutter = WindowCutter(history_ns=300_000_000)
    windows, next_frame = [], 0
    for ev, tr in _stream(events, triggers):
        cutter.add(ev, tr)
        # frames arrive ~60 ms after their exposure, as a lagging RGB camera would deliver them
        while next_frame < frames.size and frames[next_frame] + 60_000_000 <= cutter.complete_until:
            cutter.request(*window_bounds(int(frames[next_frame]), 30_000_000, mode), tag=next_frame)
            next_frame += 1
        windows += cutter.ready()
    assert [w.tag for w in windows] == list(range(frames.size))
    assert cutter.drops == {}
    total = 0
    for w in windows:
        want = _offline(events, w.start, w.end)
        assert np.array_equal(w.events, want)
        assert (w.event_count, w.on_count) == (want.size, int(np.count_nonzero(want["p"])))
        assert np.array_equal(w.triggers, _offline(triggers, w.start, w.end))
        total += want.size
    assert total > 100_000
    start, end = window_bounds(int(frames[0]), 30_000_000, mode)
    assert (end - start, end) == (30_000_000, int(frames[0]) + (0 if mode == "trailing" else 15_000_000))


def test_bounded_history_counts_what_it_loses(recording):
    events, triggers = recording
    cutter = WindowCutter(history_ns=50_000_000, max_events=5_000, max_pending=3)
    for ev, tr in _stream(events, triggers):
        cutter.add(ev, tr)
        assert cutter.buffered_events <= 5_000
    assert cutter.drops["history_overflow"] > 0
    end = int(events["t"][-1])
    cutter.request(end - 1_000_000_000, end - 970_000_000)  # a frame 1 s late: its events are gone
    assert cutter.ready() == [] and cutter.drops["window_start_discarded"] == 1
    for k in range(4):  # one more than max_pending, all in the future
        cutter.request(end + k, end + k + 10)
    assert cutter.drops["pending_overflow"] == 1 and cutter.pending == 3
    cutter.advance(end + 100)
    assert [w.start for w in cutter.ready()] == [end + 1, end + 2, end + 3]


def test_out_of_order_events_are_counted():
    cutter = WindowCutter()
    ev = np.zeros(4, EVENT_DTYPE)
    ev["t"] = [10, 30, 20, 40]
    assert cutter.add(ev) == 1   # add() returns what it dropped (time_sync splices only clean packets)
    older = np.zeros(1, EVENT_DTYPE)
    older["t"] = 35
    assert cutter.add(older) == 1
    assert cutter.drops["events_out_of_order"] == 2
    cutter.request(0, 41)
    cutter.advance(41)
    (window,) = cutter.ready()
    assert window.events["t"].tolist() == [10, 30, 40]
    with pytest.raises(ValueError, match="end > start"):
        cutter.request(5, 5)


def test_fixed_rate_windows_tile_the_stream(recording):
    events, triggers = recording
    fixed = FixedRateWindows(period_ns=50_000_000, window_ns=50_000_000)
    cutter = WindowCutter(history_ns=200_000_000)
    windows = []
    for ev, tr in _stream(events, triggers):
        cutter.add(ev, tr)
        for start, end in fixed.due(int(events["t"][0]), cutter.complete_until):
            cutter.request(start, end)
        windows += cutter.ready()
    assert len(windows) == (int(events["t"][-1]) - int(events["t"][0])) // 50_000_000
    assert all(b.start == a.end for a, b in zip(windows, windows[1:]))
    assert sum(w.events.size for w in windows) == _offline(events, windows[0].start, windows[-1].end).size
    with pytest.raises(ValueError):
        window_bounds(0, 10, "leading")


def test_fixed_rate_windows_skip_a_jump_and_count_it():
    fixed = FixedRateWindows(period_ns=10, window_ns=10, max_due=3)
    assert fixed.due(0, 25) == [(0, 10), (10, 20)]
    assert fixed.due(0, 1_000) == [(970, 980), (980, 990), (990, 1000)]
    assert fixed.skipped == 95
    assert fixed.due(0, 1_010) == [(1000, 1010)]


def test_join_copies_records_and_in_order_mask_finds_backward_steps(recording):
    events, _ = recording
    parts = [events[:1000], events[1000:1000], events[1000:5000:2], events[5000:7000]]
    joined = join(parts, EVENT_DTYPE)
    np.testing.assert_array_equal(joined, np.concatenate(parts))
    joined["x"] = 0   # a copy: the recording is untouched
    assert events["x"][:1000].any()
    assert join([], EVENT_DTYPE).size == 0
    with pytest.raises(ValueError, match="1-D arrays"):
        join([events[:3], np.zeros(2, TRIGGER_DTYPE)], EVENT_DTYPE)
    t = events["t"][:100]
    assert in_order_mask(t, int(t[0])) is None
    assert in_order_mask(t, int(t[0]) + 1).tolist() == (t >= int(t[0]) + 1).tolist()
    assert in_order_mask(np.array([5, 7, 6, 7, 9]), 0).tolist() == [True, True, False, True, True]



def test_a_stream_joined_mid_way_gives_no_window_reaching_before_its_first_event(recording):
    """A restarted time_sync sees a running stream from some packet on: windows reaching back before it
    would miss events, so they are discarded (counted); the first window after it is complete."""
    events, triggers = recording
    packets = list(_stream(events, triggers))[500:]
    first = int(packets[0][0]["t"][0])
    cutter = WindowCutter(history_ns=300_000_000)
    cutter.missed_before(first)
    cutter.request(first - 1, first + 30_000_000)
    cutter.request(first, first + 30_000_000)
    windows = []
    for ev, tr in packets:
        cutter.add(ev, tr)
        windows += cutter.ready()
    (window,) = windows
    assert cutter.drops["window_start_discarded"] == 1
    assert window.start == first and np.array_equal(window.events, _offline(events, first, first + 30_000_000))
