"""EventStreamWindows: packets in, exact windows out, as time_sync and the AU classifier's events-only mode cut
them; its EVT3 (spliced or re-encoded) decodes to exactly the window, and every loss is counted by reason."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import synthetic_events
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import Packetizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.window import window_slice
from microexp_ros.sync.stream_windows import EventStreamWindows, PacketError
from microexp_ros.sync.windows import FixedRateWindows, WindowCutter, window_bounds

MS = 1_000_000
HOST_OFFSET_NS = 5 * 10**9   # host clock = sensor clock + 5 s


@pytest.fixture(scope="module")
def recording(real_data):
    """The ROS 1 bag of event_camera_py: 343,474 events + 4,156 triggers over 2.08 s, 640x480."""
    chunk = next(iter(read_all(open_events(real_data / "event_camera_py" / "test_events_1.bag")).values()))
    return chunk.events, chunk.triggers


def packets_of(events, triggers=None, threshold_ns=4 * MS):
    """The stream as a driver sends it: self-contained EVT3 packets (metavision_driver's 4 ms)."""
    packetizer = Packetizer(threshold_ns)
    return packetizer.add(events, triggers) + packetizer.flush()


def feed(stream, packets, first_seq=0, width=640, height=480, offset_ns=HOST_OFFSET_NS):
    """Every packet, stamped at its first element's host time; the windows they completed."""
    windows = []
    for seq, packet in enumerate(packets, first_seq):
        stream.add(packet.data, offset_ns + packet.first_t, seq, "evt3", width, height)
        windows += [(w, *stream.encoded(w)) for w in stream.ready()]
    return windows


def decoded(data: bytes, width=640, height=480):
    """A window's bytes as a subscriber decodes them: a fresh decoder, nothing before."""
    result = make_decoder("evt3", width, height).decode(data)
    return result.events, result.triggers


@pytest.mark.parametrize("splice", [True, False])
def test_fixed_rate_windows_of_a_real_bag_are_the_offline_decode(recording, splice):
    events, triggers = recording
    first = int(min(events["t"][0], triggers["t"][0]))
    last = int(max(events["t"][-1], triggers["t"][-1]))
    period = 50 * MS
    stream = EventStreamWindows(WindowCutter(300 * MS), FixedRateWindows(period, period), splice=splice)
    windows = feed(stream, packets_of(events, triggers))
    assert len(windows) == (last - first) // period
    for k, (window, data, spliced) in enumerate(windows):
        assert (window.start, window.end) == (first + k * period, first + (k + 1) * period)
        want_events = window_slice(events, window.start, window.end)
        want_triggers = window_slice(triggers, window.start, window.end)
        assert np.array_equal(window.events, want_events) and np.array_equal(window.triggers, want_triggers)
        got_events, got_triggers = decoded(data)
        assert np.array_equal(got_events, want_events) and np.array_equal(got_triggers, want_triggers), k
        assert spliced == splice   # the driver's words re-cut, or re-encoded when not kept
    assert stream.clock.to_host(windows[0][0].end) == HOST_OFFSET_NS + windows[0][0].end
    assert (stream.width, stream.height) == (640, 480)
    assert stream.drop_totals("decode:", "skipped") == {}


def test_requested_windows_of_a_stream_joined_mid_way(recording):
    """Frames' windows as time_sync asks for them, on a stream a restarted node joins at packet 100: a window
    reaching before its first packet is discarded and counted, the others are exact."""
    events, triggers = recording
    packets = packets_of(events, triggers)[100:]
    first = packets[0].first_t
    stream = EventStreamWindows(WindowCutter(300 * MS))
    frames = range(first + 30 * MS, first + 1000 * MS, 33 * MS)
    stream.add(packets[0].data, HOST_OFFSET_NS + first, 100, "evt3", 640, 480)
    stream.cutter.request(first - MS, first + 29 * MS, tag="before the join")
    for frame in frames:
        stream.cutter.request(*window_bounds(frame, 30 * MS), tag=frame)
    windows = feed(stream, packets[1:], first_seq=101)
    assert [w.tag for w, _, _ in windows] == list(frames)
    for window, data, spliced in windows:
        assert np.array_equal(decoded(data)[0], window_slice(events, window.start, window.end))
        assert not spliced   # no splice: the bytes are re-encoded
    assert stream.drop_totals("decode:", "skipped") == {"window_start_discarded": 1}


@pytest.mark.parametrize("splice", [True, False])
def test_a_replay_loop_gives_the_same_windows_again(recording, splice):
    """A bag replayed in a loop: sequence and sensor time start over while host time goes on. The stream
    restarts once, at the loop's first packet, and the second pass cuts exactly the windows of the first."""
    events, triggers = recording
    packets = packets_of(events, triggers)
    period = 50 * MS
    stream = EventStreamWindows(WindowCutter(300 * MS), FixedRateWindows(period, period), splice=splice)
    first_pass = feed(stream, packets)
    loop_offset = HOST_OFFSET_NS + 3 * 10**9   # the player's second pass, 3 s later on the host clock
    second_pass = feed(stream, packets, offset_ns=loop_offset)
    assert len(second_pass) == len(first_pass) > 30
    for (a, data_a, _), (b, data_b, _) in zip(first_pass, second_pass):
        assert (a.start, a.end) == (b.start, b.end) and np.array_equal(a.events, b.events)
        assert np.array_equal(decoded(data_a)[0], decoded(data_b)[0])
    drops = stream.drop_totals("decode:", "skipped")
    assert drops["clock_restart"] == 1 and drops["seq_backwards"] == 1
    assert set(drops) <= {"clock_restart", "seq_backwards", "window_abandoned_on_restart"}, drops


def test_a_clock_jump_restarts_the_stream_and_counts_what_it_abandoned():
    """The sensor→host offset jumps by 1 s (a sensor time reset): the open window is abandoned, the fixed-rate
    windows restart from the new stream's first event, and both are counted."""
    events = synthetic_events(64, 64, 0, 400 * MS, count=8000)
    events["t"] = events["t"] // 1000 * 1000 + MS   # µs times, as EVT3 carries them
    later = events.copy()
    later["t"] += 500 * MS
    stream = EventStreamWindows(WindowCutter(200 * MS), FixedRateWindows(100 * MS, 100 * MS), splice=True)
    packets = packets_of(events, threshold_ns=10 * MS)
    stream.cutter.request(450 * MS, 460 * MS)   # a frame after the stream's end: still open at the jump
    first_run = feed(stream, packets, width=64, height=64)
    again = feed(stream, packets_of(later, threshold_ns=10 * MS), first_seq=len(packets), width=64, height=64,
                 offset_ns=HOST_OFFSET_NS + 10**9)
    assert len(first_run) == 3
    assert [w.start for w, _, _ in again] == [w.start + 500 * MS for w, _, _ in first_run]
    for window, data, _ in again:
        assert np.array_equal(decoded(data, 64, 64)[0], window_slice(later, window.start, window.end))
    # the packet that showed the jump was decoded before the decoder restarted: its words are not kept, so the
    # window starting in it is re-encoded; the next ones are spliced again
    assert [spliced for _, _, spliced in again] == [False, True, True]
    assert stream.clock.to_host(again[0][0].start) == HOST_OFFSET_NS + 10**9 + again[0][0].start
    assert stream.drop_totals("decode:", "skipped") == {"clock_restart": 1, "window_abandoned_on_restart": 1}


def synthetic_packets(duration_ms: int) -> list:
    """10 ms packets of a 64x64 stream from 1 ms on (µs times, as EVT3 carries them)."""
    events = synthetic_events(64, 64, 0, duration_ms * MS, count=40 * duration_ms)
    events["t"] = events["t"] // 1000 * 1000 + MS
    return packets_of(events, threshold_ns=10 * MS)


def test_bad_packets_raise_naming_why_and_the_stream_goes_on():
    packets = synthetic_packets(100)
    stream = EventStreamWindows(WindowCutter(), FixedRateWindows(10 * MS, 10 * MS))
    for seq, (encoding, width, why) in enumerate([("evt9", 64, "unknown event encoding 'evt9'"),
                                                  ("evt3", 0, "geometry must be")]):
        with pytest.raises(PacketError, match=f"packet seq {seq} not decodable: .*{why}") as error:
            stream.add(packets[0].data, HOST_OFFSET_NS + packets[0].first_t, seq, encoding, width, 64)
        assert error.value.stream_rejected   # no decoder for it (time_sync also counts it as a dropped packet)
    stream.add(packets[0].data, HOST_OFFSET_NS + packets[0].first_t, 2, "evt3", 64, 64)
    with pytest.raises(PacketError, match="packet seq 3 not decodable: time_base") as error:
        stream.add(packets[1].data, HOST_OFFSET_NS + packets[1].first_t, 3, "evt3", 64, 64, time_base=-1)
    assert not error.value.stream_rejected
    windows = feed(stream, packets[2:], first_seq=4, width=64, height=64)
    # windows still tile the stream from its first event on
    tiles = (int(packets[-1].events["t"][-1]) - packets[0].first_t) // (10 * MS)
    assert [w.start for w, _, _ in windows] == [packets[0].first_t + k * 10 * MS for k in range(tiles)]
    assert stream.drop_totals("decode:", "skipped") == {}   # the bad packets are the caller's errors to count


def test_sequence_gaps_and_time_jumps_are_counted():
    packets = synthetic_packets(200)
    period, max_due = 10 * MS, 2
    stream = EventStreamWindows(WindowCutter(), FixedRateWindows(period, period, max_due=max_due))
    windows = []
    for seq, k in ((0, 0), (10, 10), (3, None)):   # packets 1-9 lost, then one from the past (empty)
        data, first_t = (packets[k].data, packets[k].first_t) if k is not None else (b"", 0)
        stream.add(data, HOST_OFFSET_NS + first_t, seq, "evt3", 64, 64)
        windows += stream.ready()
    # the stream jumped over windows 0..last: only the last max_due of them are cut
    last = (int(packets[10].events["t"][-1]) - packets[0].first_t) // period - 1
    assert [w.end for w in windows] == [packets[0].first_t + (k + 1) * period for k in (last - 1, last)]
    assert stream.drop_totals("decode:", "events_only_windows_skipped") == {
        "packet_gap": 9, "seq_backwards": 1, "events_only_windows_skipped": last + 1 - max_due}


def test_a_new_geometry_restarts_the_stream_and_decoder_drops_stay_counted():
    packets = synthetic_packets(100)
    stream = EventStreamWindows(WindowCutter(), FixedRateWindows(10 * MS, 10 * MS))
    stream.cutter.request(500 * MS, 510 * MS)
    outside = 0
    for seq, packet in enumerate(packets):
        side = 48 if seq < 3 else 32   # the sensor "shrinks" after packet 2: what lies outside is dropped
        stream.add(packet.data, HOST_OFFSET_NS + packet.first_t, seq, "evt3", side, side)
        outside += int(np.count_nonzero((packet.events["x"] >= side) | (packet.events["y"] >= side)))
        stream.ready()
    assert (stream.width, stream.height) == (32, 32)
    assert stream.drop_totals("decode_", "windows_skipped") == {
        "stream_reconfigured": 1, "window_abandoned_on_restart": 1, "decode_out_of_bounds": outside}
