"""Packetizer: real recordings → EVT3 packets closed by time or size → decoder gives back every event exactly."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import WRAP_NS, Packetizer, wrap_origin
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all


def _decode_all(packets, width, height, fresh_each=False):
    decoder = make_decoder("evt3", width, height)
    events, triggers = [], []
    for packet in packets:
        if fresh_each:
            decoder = make_decoder("evt3", width, height)
        result = decoder.decode(packet.data)
        events.append(result.events)
        triggers.append(result.triggers)
    return np.concatenate(events), np.concatenate(triggers)


@pytest.fixture(scope="module")
def trigger_bag(real_data):
    """82,469 events + 2 triggers, 1280x720 (event_camera_codecs test bag)."""
    chunk = read_all(open_events(real_data / "event_camera_codecs" / "test_data_evt3_trigger"))
    return next(iter(chunk.values()))


def test_time_threshold_round_trip_on_real_recording(trigger_bag):
    ev, tr = trigger_bag.events, trigger_bag.triggers
    packetizer = Packetizer(time_threshold_ns=1_000_000)
    packets = []
    for start in range(0, ev.size, 7_000):  # arbitrary batch boundaries, as a source would deliver them
        sl = ev[start:start + 7_000]
        lo, hi = (sl["t"][0], sl["t"][-1]) if start + 7_000 < ev.size else (sl["t"][0], np.iinfo(np.int64).max)
        packets += packetizer.add(sl, tr[(tr["t"] >= lo) & (tr["t"] < hi)] if start else tr[tr["t"] < hi])
    packets += packetizer.flush()
    assert packetizer.drops == {}
    got_ev, got_tr = _decode_all(packets, 1280, 720)
    origin = wrap_origin(int(min(ev["t"][0], tr["t"][0])))
    want = ev.copy()
    want["t"] -= origin
    # EVT3 carries µs: the recording is µs-quantised, so the round trip is exact
    assert np.array_equal(got_ev, want)
    assert np.array_equal(got_tr["t"] + origin, tr["t"]) and np.array_equal(got_tr["edge"], tr["edge"])
    for packet in packets:  # each packet spans less than the threshold and each one is self-contained
        assert packet.last_t - packet.first_t < 1_000_000
    firsts = np.array([p.first_t for p in packets])
    assert np.all(np.diff(firsts) >= 1_000_000)  # the next packet opens at/after the previous threshold
    # self-contained: every packet decodes alone with a fresh decoder to the same events
    alone, _ = _decode_all(packets, 1280, 720, fresh_each=True)
    assert np.array_equal(alone, want)


def test_size_threshold_caps_packet_bytes(real_data):
    src = open_events(real_data / "expelliarmus" / "evt3_sample.raw", width=1280, height=720)
    ev = read_all(src)["events"].events
    packetizer = Packetizer(time_threshold_ns=1_000_000_000, size_threshold_bytes=4096)
    packets = packetizer.add(ev) + packetizer.flush()
    assert len(packets) >= ev.size // (4096 // 8)
    assert max(len(p.data) for p in packets) <= 4096 + 16  # the per-packet state words on top
    got, _ = _decode_all(packets, 1280, 720)
    assert np.array_equal(got, ev)  # t < 16.7 s: origin 0


def test_backwards_time_is_counted_and_dropped():
    ev = np.zeros(6, EVENT_DTYPE)
    ev["t"] = [1000, 2000, 1500, 3000, 2500, 4000]
    ev["x"] = np.arange(6)
    packetizer = Packetizer()
    packets = packetizer.add(ev) + packetizer.flush()
    assert packetizer.drops["time_backwards"] == 2
    got, _ = _decode_all(packets, 16, 16)
    assert got["x"].tolist() == [0, 1, 3, 5]
    # a later batch starting before the end of the previous one is dropped too
    late = np.zeros(1, EVENT_DTYPE)
    late["t"] = 3999
    assert packetizer.add(late) == []
    assert packetizer.drops["time_backwards"] == 3


def test_large_sensor_times_use_a_wrap_origin():
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [1_605_537_493_718_345_000, 1_605_537_493_718_346_000, 1_605_537_493_719_900_000]
    packetizer = Packetizer()
    packets = packetizer.add(ev) + packetizer.flush()
    assert packetizer.time_origin_ns % WRAP_NS == 0
    got, _ = _decode_all(packets, 16, 16)
    assert (got["t"] + packetizer.time_origin_ns).tolist() == ev["t"].tolist()
    assert len(packets) == 2


def test_open_packet_waits_for_the_stream_and_bad_input_is_rejected():
    ev = np.zeros(2, EVENT_DTYPE)
    ev["t"] = [0, 500_000]
    packetizer = Packetizer(time_threshold_ns=1_000_000)
    assert packetizer.add(ev) == []          # nothing has reached 1 ms yet
    assert packetizer.pending_events == 2
    more = np.zeros(1, EVENT_DTYPE)
    more["t"] = 1_000_000
    packets = packetizer.add(more)
    assert len(packets) == 1 and packets[0].events.size == 2
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        packetizer.add(np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="TRIGGER_DTYPE"):
        packetizer.add(more, np.zeros(1, EVENT_DTYPE))
    with pytest.raises(ValueError, match="time_threshold_ns"):
        Packetizer(time_threshold_ns=0)


def test_file_source_loops_in_time_order_and_pacer_maps_time(real_data):
    from microexp_ros.events.sources import FileEventSource, Pacer, make_source

    source = make_source("file", {"file": str(real_data / "event_camera_py" / "test_events_1.bag"), "loop": True})
    assert (source.width, source.height, source.live) == (640, 480, False)
    total, last, batches = 0, -1, source.batches()
    while source.passes < 2:  # the second pass ends when the generator asks for the third
        batch = next(batches)
        if batch.events.size:
            assert int(batch.events["t"][0]) >= last
            last = int(batch.events["t"][-1])
        total += batch.events.size
    # passes counts finished passes; the batch that triggered the check belongs to the third
    assert total - batch.events.size == 2 * 343_474
    pacer = Pacer(rate=2.0, clock=lambda: 1_000)
    assert pacer.host_time(10_000_000_000) == 1_000          # anchored at the first sensor time
    assert pacer.host_time(12_000_000_000) == 1_000 + 2_000_000_000  # stamps follow sensor time 1:1
    assert pacer.due_time(12_000_000_000) == 1_000 + 1_000_000_000   # released after 1 s at 2x
    with pytest.raises(ValueError, match="unknown event source"):
        make_source("camera9", {})
    with pytest.raises(ValueError, match="'file' parameter"):
        make_source("file", {})
    with pytest.raises(FileNotFoundError):
        FileEventSource(real_data / "nothing.raw")


def test_simulated_source_turns_a_real_face_video_into_packets(real_data):
    from microexp_ros.events.sources import make_source

    source = make_source("sim", {"file": str(real_data / "pyfeat" / "single_face.mp4"), "width": 48, "height": 48,
                                 "frame_triggers": True})
    packetizer = Packetizer(1_000_000)
    packets, batches = [], source.batches()
    for _ in range(120):  # the first 120 ms of the clip
        batch = next(batches)
        packets += packetizer.add(batch.events, batch.triggers)
    packets += packetizer.flush()
    events = np.concatenate([p.events for p in packets])
    assert events.size > 100 and int(events["x"].max()) < 48 and int(events["y"].max()) < 48
    assert np.all(np.diff(events["t"]) >= 0) and packetizer.drops == {}
    got, triggers = _decode_all(packets, 48, 48)
    assert np.array_equal(got["t"] // 1000, events["t"] // 1000) and np.array_equal(got["x"], events["x"])
    assert triggers.size >= 3   # one strobe edge per 30 fps video frame
