"""SplicingPacketizer: an evt3 recording forwarded as its own words gives the packets Packetizer gives.

Real bags played by FileEventSource (the driver's path) and a real stream stretched over several EVT3 time wraps:
the same packets (bounds and events), decoded as one stream and each on its own, with most of them spliced and
the rest (ties at a size cut, batches without words) encoded without phantom wraps.
"""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import WRAP_NS, Packetizer, SplicingPacketizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.sources import FileEventSource

BAGS = {"prophesee_640x480": ("event_camera_py", "test_events_1.bag"),                 # ROS 1, 343,474 events
        "with_triggers_1280x720": ("event_camera_codecs", "test_data_evt3_trigger")}  # rosbag2, 2 triggers


def _assert_same_packets(got, want, width: int, height: int) -> None:
    """Same count, same events per packet; decoded as one stream and each packet alone (self-contained)."""
    assert len(got) == len(want)
    stream = make_decoder("evt3", width, height)
    for g, w in zip(got, want):
        assert np.array_equal(g.events, w.events) and np.array_equal(g.triggers, w.triggers)
        for decoded in (stream.decode(g.data), make_decoder("evt3", width, height).decode(g.data)):
            assert np.array_equal(decoded.events, w.events)
            assert np.array_equal(decoded.triggers, w.triggers)
    assert not stream.drops


@pytest.mark.parametrize("bag", sorted(BAGS))
@pytest.mark.parametrize("time_ns, size_bytes", [(1_000_000, 1 << 20), (250_000, 1 << 20), (10**9, 4096)])
def test_bag_forwarded_as_its_words_gives_the_packetizer_packets(real_data, bag, time_ns, size_bytes):
    source = FileEventSource(real_data.joinpath(*BAGS[bag]))
    assert source.forwards_words
    reference, splicing = Packetizer(time_ns, size_bytes), SplicingPacketizer(source.width, source.height,
                                                                              time_ns, size_bytes)
    want, got = [], []
    for batch in source.batches():
        assert batch.words is not None and batch.state is not None
        want += reference.add(batch.events, batch.triggers)
        got += splicing.add_words(batch.words, batch.state, batch.events, batch.triggers)
    want += reference.flush()
    got += splicing.flush()
    _assert_same_packets(got, want, source.width, source.height)
    assert splicing.spliced + splicing.encoded == len(got)
    if size_bytes == 4096:   # size cuts between events of one µs cannot be spliced: encoded, still equal
        assert splicing.encoded > 0 and splicing.spliced > len(got) // 2
    else:
        assert splicing.spliced > 0.9 * len(got)
    assert not source.drops and not splicing.drops


@pytest.mark.parametrize("size_bytes", [1 << 20, 2048])
def test_stream_over_time_wraps_and_batches_without_words(real_data, size_bytes):
    """Spliced and encoded packets interleave across 3 EVT3 wraps (16.78 s each) without a phantom wrap: the
    batch given without its words shortly after each wrap is encoded after spliced packets only."""
    chunk = next(iter(read_all(open_events(real_data.joinpath(*BAGS["with_triggers_1280x720"]))).values()))
    events = chunk.events.copy()
    events["t"] = (events["t"] - events["t"][0]) * 50 // 1000 * 1000 + 1000   # ~62 s, µs kept
    assert events["t"][-1] > 3 * WRAP_NS
    recorded = Packetizer(3_000_000, time_origin_ns=0)
    recording = recorded.add(events) + recorded.flush()
    decoder = make_decoder("evt3", 1280, 720)
    reference = Packetizer(2_000_000, size_bytes, time_origin_ns=0)
    splicing = SplicingPacketizer(1280, 720, 2_000_000, size_bytes)
    want, got, wraps = [], [], []
    for packet in recording:
        state = decoder.stream_state()
        result = decoder.decode(packet.data)
        want += reference.add(result.events, result.triggers)
        wraps.append(packet.first_t // WRAP_NS)
        if len(wraps) > 10 and wraps[-11] < wraps[-10] == wraps[-1]:   # 10 packets after a wrap: no words
            got += splicing.add(result.events, result.triggers)
        else:
            got += splicing.add_words(packet.data, state, result.events, result.triggers)
    want += reference.flush()
    got += splicing.flush()
    _assert_same_packets_stream_only(got, want)
    assert splicing.spliced > len(got) // 2 and splicing.encoded >= 3


def _assert_same_packets_stream_only(got, want) -> None:
    """Past the first wrap a fresh decoder gives times modulo the wrap (as for any self-contained packet):
    the stream decode must equal the events, the fresh one must equal them modulo WRAP_NS."""
    assert len(got) == len(want)
    stream = make_decoder("evt3", 1280, 720)
    for g, w in zip(got, want):
        assert np.array_equal(g.events, w.events)
        assert np.array_equal(stream.decode(g.data).events, w.events)
        alone = make_decoder("evt3", 1280, 720).decode(g.data).events
        assert np.array_equal(alone[["x", "y", "p"]], w.events[["x", "y", "p"]])
        assert np.array_equal(alone["t"] % WRAP_NS, w.events["t"] % WRAP_NS)
    assert not stream.drops


def test_batches_without_words_only_are_encoded(real_data):
    source = FileEventSource(real_data.joinpath(*BAGS["prophesee_640x480"]))
    splicing, reference = SplicingPacketizer(source.width, source.height), Packetizer()
    got, want = [], []
    for batch in source.batches():
        got += splicing.add(batch.events, batch.triggers)
        want += reference.add(batch.events, batch.triggers)
    got += splicing.flush()
    want += reference.flush()
    assert splicing.spliced == 0 and splicing.encoded == len(got)
    assert [g.data for g in got] == [w.data for w in want]   # the encoder's bytes, as before
