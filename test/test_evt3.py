"""EVT3: decoding real recordings and bags to their published checksums, the spec's test vectors, the
decoder's stream rules (valid time, wraps, noise, unknown words, bounds), and the encoder's exact round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microexp_ros.events.array import EVENT_DTYPE, TRIGGER_DTYPE
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.bag_reader import BagFile
from microexp_ros.events.evt3 import TIME_WRAP_US, Evt3Encoder, Evt3Splicer, encode_evt3
from microexp_ros.events.raw_header import read_raw

WRAP_NS = TIME_WRAP_US * 1000


def words(*values: int) -> bytes:
    return np.array(values, dtype="<u2").tobytes()


def decode_all(data: bytes, width: int = 2048, height: int = 2048):
    decoder = make_decoder("evt3", width, height)
    return decoder.decode(data), decoder


# ---------------------------------------------------------------- spec test vectors


def test_single_event_vector_from_the_spec():
    result, decoder = decode_all(bytes.fromhex("01808863c8006428"))
    assert result.events.tolist() == [(5_000_000, 100, 200, 1)]
    assert not decoder.drops


def test_vector_run_from_the_spec_advances_the_base():
    # time + y first, then VECT_BASE_X x=300 pol 0, VECT_12 mask 0b101, VECT_8 mask 0x81
    result, decoder = decode_all(words(0x8001, 0x6388, 0x00C8, 0x312C, 0x4005, 0x5081))
    assert result.events["x"].tolist() == [300, 302, 312, 319]
    assert set(result.events["p"].tolist()) == {0}
    assert set(result.events["t"].tolist()) == {5_000_000}


def test_trigger_word_gives_edge_and_channel():
    result, _ = decode_all(words(0x8001, 0x6388, 0xA301, 0xA300))
    assert result.triggers.tolist() == [(5_000_000, 1, 3), (5_000_000, 0, 3)]


# ---------------------------------------------------------------- stream rules


def test_events_before_a_time_high_then_time_low_are_dropped_and_counted():
    # ADDR_X before any time; TIME_LOW before TIME_HIGH does not make time valid; then a valid pair.
    data = words(0x0005, 0x2001, 0x6010, 0x2002, 0x8002, 0x2003, 0x6020, 0x2004)
    result, decoder = decode_all(data)
    assert result.events.tolist() == [((2 << 12 | 0x20) * 1000, 4, 5, 0)]
    assert decoder.drops["before_valid_time"] == 3


def test_time_high_wrap_and_bit_noise():
    data = words(
        0x8FFF, 0x6000, 0x2001,  # t = 0xFFF000 µs
        0x8000, 0x2002,  # 0xFFF -> 0: a wrap, t = 2^24 µs
        0x800A, 0x2003,  # forward
        0x8005, 0x2004,  # back by 5 units: noise, no wrap
    )
    t = decode_all(data)[0].events["t"].tolist()
    assert t == [0xFFF000 * 1000, WRAP_NS, WRAP_NS + (0xA << 12) * 1000, WRAP_NS + (5 << 12) * 1000]


def test_time_going_backwards_is_decoded_as_sent_and_cut_by_decode_until():
    # TIME_LOW steps back within one TIME_HIGH: events keep the times the sensor sent, nothing is dropped
    data = words(0x8005, 0x6100, 0x2001, 0x6050, 0x2002, 0x6200, 0x2003)
    result, decoder = decode_all(data)
    base = 5 << 12
    assert result.events["t"].tolist() == [(base + 0x100) * 1000, (base + 0x50) * 1000, (base + 0x200) * 1000]
    assert not decoder.drops
    # decode_until stops at the first event at or past the limit, even if a later one is earlier
    cut = make_decoder("evt3", 2048, 2048)
    first, used = cut.decode_until(data, (base + 0x80) * 1000)
    assert first.events.size == 0 and used == 4
    rest = cut.decode(data[used:])
    assert rest.events["x"].tolist() == [1, 2, 3]


def test_unknown_words_are_skipped_and_counted_and_others_ignored():
    data = words(0x8001, 0x6000, 0x9999, 0x1234, 0xE018, 0xF123, 0x7001, 0x2010)
    result, decoder = decode_all(data)
    assert result.events["x"].tolist() == [0x10]
    assert decoder.drops == {"unknown_word": 2}


def test_out_of_bounds_events_are_dropped_and_counted():
    data = words(0x8001, 0x6000, 0x0009, 0x2005, 0x2006, 0x000A, 0x2001, 0x3004, 0x40FF)
    result, decoder = decode_all(data, width=6, height=10)
    # y=9: x 5 kept, x 6 out; y=10 out of a 10-row sensor: the ADDR_X and all 8 vector events dropped
    assert result.events[["x", "y"]].tolist() == [(5, 9)]
    assert decoder.drops["out_of_bounds"] == 1 + 1 + 8


# ---------------------------------------------------------------- real recordings


@pytest.fixture(scope="module")
def sample(real_data: Path) -> tuple[bytes, np.ndarray]:
    header, payload = read_raw(real_data / "expelliarmus" / "evt3_sample.raw")
    assert "evt 3.0" in header
    return payload, np.load(real_data / "expelliarmus" / "evt3_sample.npy")


def test_sample_raw_matches_reference_decode(sample):
    payload, reference = sample
    result, decoder = decode_all(payload, 1280, 720)
    events = result.events
    assert events.size == 219_596
    assert int(events["p"].sum()) == 115_532
    for name in ("x", "y", "p"):
        np.testing.assert_array_equal(events[name], reference[name].astype(events[name].dtype))
    assert not decoder.drops
    assert int(events["t"][0]) == 11_718_656_000


def test_sample_split_at_every_odd_offset_equals_whole(sample):
    payload, _ = sample
    whole = decode_all(payload, 1280, 720)[0].events
    decoder = make_decoder("evt3", 1280, 720)
    cuts = list(range(0, len(payload), 40_001)) + [len(payload)]
    parts = [decoder.decode(memoryview(payload)[a:b]).events for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def _bag_packets(path: Path):
    from rosbags.highlevel import AnyReader

    from microexp_ros.data.typestore import typestore

    # ROS 1 bags carry their definitions; the sqlite ROS 2 test bags do not, so fall back to ours.
    with AnyReader([path], default_typestore=typestore()) as reader:
        for connection, _, raw in reader.messages():
            yield reader.deserialize(raw, connection.msgtype)


def _decode_bag(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(events, triggers) of every packet in a bag, through one decoder as a subscriber would."""
    decoder = None
    events, triggers = [], []
    for msg in _bag_packets(path):
        decoder = decoder or make_decoder(msg.encoding, msg.width, msg.height)
        result = decoder.decode(msg.events, msg.time_base)
        events.append(result.events)
        triggers.append(result.triggers)
    return np.concatenate(events), np.concatenate(triggers)


def test_trigger_bag_reproduces_upstream_checksums(real_data: Path):
    ev, tr = _decode_bag(real_data / "event_camera_codecs" / "test_data_evt3_trigger")
    assert ev.size == 82_469
    assert int(ev["t"].sum()) == 1_222_326_831_810_000
    assert int(ev["x"].astype(np.int64).sum()) == 42_078_718
    assert int(ev["y"].astype(np.int64).sum()) == 31_656_267
    assert int(ev["p"].sum()) == 41_439
    assert (int(tr["t"].sum()), int(tr["edge"].sum()), int(tr["id"].sum())) == (29_096_982_000, 1, 0)


def test_ros1_bag_counts(real_data: Path):
    ev, tr = _decode_bag(real_data / "event_camera_py" / "test_events_1.bag")
    assert ev.size == 343_474
    assert int(ev["p"].sum()) == 125_183
    # Upstream asserts 2,078 triggers with edge 0 and the sum of CD + trigger times in µs; its falling-edge
    # check is a copy of the rising one, and all 4,157 trigger words are needed to reach its time sum.
    assert int(np.count_nonzero(tr["edge"] == 0)) == 2_078
    assert int(np.count_nonzero(tr["edge"] == 1)) == 2_079
    assert int((ev["t"] // 1000).sum() + (tr["t"] // 1000).sum()) == 2_885_601_049_874
    assert int(ev["t"][0]) // 1000 == 7_139_845


def test_decode_until_cuts_windows_exactly(real_data: Path):
    """Upstream's decode_until test: 100 µs frames from t0 = 7,139,845 µs end at frame 9,239,845 µs."""
    whole, cut = [], []
    decoder_whole = make_decoder("evt3", 640, 480)
    decoder = make_decoder("evt3", 640, 480)
    interval = 100_000_000  # ns
    frame = 7_139_845_000 + interval
    for msg in _bag_packets(real_data / "event_camera_py" / "test_events_1.bag"):
        whole.append(decoder_whole.decode(msg.events).events)
        data = memoryview(msg.events)
        while True:
            result, used = decoder.decode_until(data, frame)
            if result.events.size:
                assert int(result.events["t"].max()) < frame
                assert int(result.events["t"].min()) >= frame - interval
            cut.append(result.events)
            data = data[used:]
            if not len(data):
                break
            frame += interval
    np.testing.assert_array_equal(np.concatenate(cut), np.concatenate(whole))
    assert frame == 9_239_845_000


# ---------------------------------------------------------------- encoder


def test_encoder_round_trips_the_real_sample_more_compactly(sample):
    payload, _ = sample
    events = decode_all(payload, 1280, 720)[0].events
    encoded = encode_evt3(events)
    assert len(encoded) < len(payload)
    words_used = np.frombuffer(encoded, "<u2") >> 12
    assert np.count_nonzero(words_used == 0x4) > 0 and np.count_nonzero(words_used == 0x5) > 0
    np.testing.assert_array_equal(decode_all(encoded, 1280, 720)[0].events, events)


def _random_stream(draw_seed: int, n: int, n_triggers: int, wraps: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw_seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    # steps of 0 (same time: vector runs), small, and (with wraps) huge gaps crossing several 2^24 µs wraps
    steps = rng.choice([0, 0, 0, 1, 7, 4096, 70_000], size=n)
    if wraps and n:
        steps[rng.integers(0, n, size=3)] = rng.choice([TIME_WRAP_US - 3, 3 * TIME_WRAP_US + 5, TIME_WRAP_US // 2], 3)
    events["t"] = np.cumsum(steps) * 1000
    events["y"] = rng.integers(0, 16, size=n)
    events["p"] = rng.integers(0, 2, size=n)
    # runs of rising x on a row at one time become vectors; the rest are scattered
    base = rng.integers(0, 2030, size=n)
    events["x"] = np.where(rng.random(n) < 0.5, base, np.minimum(np.arange(n) % 13 + 2000, 2047))
    triggers = np.zeros(n_triggers, dtype=TRIGGER_DTYPE)
    if n_triggers:
        span = int(events["t"][-1]) if n else 10_000_000
        triggers["t"] = np.sort(rng.integers(0, span + 1, size=n_triggers)) // 1000 * 1000
        triggers["edge"] = rng.integers(0, 2, size=n_triggers)
        triggers["id"] = rng.integers(0, 16, size=n_triggers)
    return events, triggers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    n_triggers=st.integers(0, 20),
    wraps=st.booleans(),
    n_packets=st.integers(1, 5),
    self_contained=st.booleans(),
    data=st.data(),
)
def test_encode_decode_round_trip_across_packets_and_byte_splits(
    seed, n, n_triggers, wraps, n_packets, self_contained, data
):
    events, triggers = _random_stream(seed, n, n_triggers, wraps)
    # split events and triggers into packets at common time bounds
    bounds = sorted(data.draw(st.lists(st.integers(0, max(n, 1)), min_size=n_packets - 1, max_size=n_packets - 1)))
    ev_cuts = [0, *bounds, n]
    encoder = Evt3Encoder(self_contained=self_contained)
    stream = b""
    tr_done = 0
    for k, (a, b) in enumerate(zip(ev_cuts, ev_cuts[1:])):
        last = k == len(ev_cuts) - 2
        t_end = None if last or b >= n else int(events["t"][b])
        tr_end = n_triggers if t_end is None else int(np.searchsorted(triggers["t"], t_end, side="left"))
        stream += encoder.encode(events[a:b], triggers[tr_done:tr_end])
        tr_done = tr_end
    byte_cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = make_decoder("evt3", 2048, 2048)
    pieces = [decoder.decode(stream[a:b]) for a, b in zip([0, *byte_cuts], [*byte_cuts, len(stream)])]
    decoder.finish()
    np.testing.assert_array_equal(np.concatenate([p.events for p in pieces]), events)
    np.testing.assert_array_equal(np.concatenate([p.triggers for p in pieces]), triggers)
    assert not decoder.drops


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), data=st.data())
def test_decode_until_windows_concatenate_to_the_whole(seed, n, data):
    events, triggers = _random_stream(seed, n, 5, wraps=False)
    stream = encode_evt3(events, triggers)
    limits = sorted(data.draw(st.lists(st.integers(0, int(events["t"][-1]) + 2000), max_size=8)))
    decoder = make_decoder("evt3", 2048, 2048)
    rest = memoryview(stream)
    parts, trig_parts, lower = [], [], 0
    for limit in limits:
        result, used = decoder.decode_until(rest, limit)
        assert ((result.events["t"] >= lower) & (result.events["t"] < limit)).all()
        assert ((result.triggers["t"] >= lower) & (result.triggers["t"] < limit)).all()
        parts.append(result.events)
        trig_parts.append(result.triggers)
        rest = rest[used:]
        lower = limit
    final = decoder.decode(rest)
    np.testing.assert_array_equal(np.concatenate([*parts, final.events]), events)
    np.testing.assert_array_equal(np.concatenate([*trig_parts, final.triggers]), triggers)


def test_self_contained_packets_let_a_late_subscriber_decode():
    events, triggers = _random_stream(7, 600, 10, wraps=False)
    encoder = Evt3Encoder(self_contained=True)
    packets = [encoder.encode(events[i : i + 100]) for i in range(0, 600, 100)]
    late = make_decoder("evt3", 2048, 2048)
    decoded = np.concatenate([late.decode(p).events for p in packets[3:]])
    np.testing.assert_array_equal(decoded, events[300:])
    assert not late.drops


def test_encoder_refuses_what_evt3_cannot_carry():
    ev = np.zeros(2, dtype=EVENT_DTYPE)
    ev["t"] = [2000, 1000]
    with pytest.raises(ValueError, match="time-ordered"):
        encode_evt3(ev)
    ev["t"] = [1000, 2000]
    ev["x"] = [0, 2048]
    with pytest.raises(ValueError, match="2047"):
        encode_evt3(ev)
    ev["x"] = 0
    with pytest.raises(ValueError, match="before the time origin"):
        Evt3Encoder(time_origin_ns=5000).encode(ev)
    ev["t"] = [0, 1_600_000_000 * 10**9]  # an epoch time without a time origin
    with pytest.raises(ValueError, match="time_origin_ns"):
        encode_evt3(ev)
    ev["t"] = [1000, 2000]
    encoder = Evt3Encoder()
    encoder.encode(ev[1:])
    with pytest.raises(ValueError, match="backwards"):
        encoder.encode(ev[:1])
    with pytest.raises(ValueError, match="TRIGGER_DTYPE"):
        encode_evt3(ev[:0], ev)


# ---------------------------------------------------------------- splicing windows out of the input words


def _spliced_stream(packets, width, height):
    """Feed packets (bytes) through a decoder into a splicer as time_sync does; all decoded events/triggers."""
    decoder = make_decoder("evt3", width, height)
    splicer = Evt3Splicer(width, height)
    events, triggers = [], []
    for data in packets:
        state = decoder.stream_state()
        result = decoder.decode(data)
        splicer.add(data, state, result.events, result.triggers, clean=True)
        events.append(result.events)
        triggers.append(result.triggers)
    return splicer, np.concatenate(events), np.concatenate(triggers)


def _check_windows(splicer, events, triggers, bounds, width, height):
    for start, end in bounds:
        want = events[(events["t"] >= start) & (events["t"] < end)]
        want_tr = triggers[(triggers["t"] >= start) & (triggers["t"] < end)]
        data = splicer.cut(start, end, want.size, want_tr.size)
        assert data is not None, (start, end)
        got, decoder = decode_all(data, width, height)
        np.testing.assert_array_equal(got.events, want)
        np.testing.assert_array_equal(got.triggers, want_tr)
        assert not decoder.drops
        assert splicer.cut(start, end, want.size + 1, want_tr.size) is None  # counts that disagree: re-encode


def test_splicer_cuts_the_real_driver_packets_of_a_bag_exactly(real_data: Path):
    """The metavision_driver packets of a real bag (sensor bytes, state carried across packets, triggers)."""
    bag = BagFile(real_data / "event_camera_py" / "test_events_1.bag")
    packets = [bytes(p.msg.events) for p in bag.packets()]
    splicer, events, triggers = _spliced_stream(packets, 640, 480)
    assert events.size == 343_474 and triggers.size == 4_157
    rng = np.random.default_rng(3)
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    starts = rng.integers(t0, t1, size=25)
    lengths = rng.choice([1_000, 250_000, 4_000_000, 33_333_333, 200_000_000], size=25)
    _check_windows(splicer, events, triggers, [(int(s), int(s + n)) for s, n in zip(starts, lengths)], 640, 480)
    splicer.trim_before(t1 - 100_000_000)
    assert splicer.cut(t0, t0 + 1_000_000, 1, 0) is None   # its packets are gone


def test_splicer_cuts_vector_words_of_a_real_raw_file(sample):
    """The Gen4.1 sample (VECT words, 1280x720) cut into packets at arbitrary word boundaries."""
    payload, _ = sample
    words_total = len(payload) // 2
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.choice(np.arange(1, words_total), size=40, replace=False)) * 2
    packets = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, words_total * 2])]
    splicer, events, triggers = _spliced_stream(packets, 1280, 720)
    t = np.unique(events["t"])
    bounds = [(int(t[i]), int(t[min(i + n, t.size - 1)])) for i, n in
              zip(rng.integers(0, t.size - 1, size=30), rng.integers(1, 2000, size=30))]
    _check_windows(splicer, events, triggers, bounds, 1280, 720)


def test_splicer_refuses_what_it_cannot_show_equal():
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"] = [1000, 2000, 3000], [1, 2, 3], [4, 5, 6]
    data = encode_evt3(events)
    decoder = make_decoder("evt3", 64, 64)
    splicer = Evt3Splicer(64, 64)
    state = decoder.stream_state()
    result = decoder.decode(data)
    splicer.add(data, state, result.events, result.triggers, clean=False)   # the cutter dropped some of it
    assert splicer.cut(1000, 3000, 2, 0) is None
    splicer.add(data[:3], decoder.stream_state(), result.events[:0], result.triggers[:0], clean=True)
    assert splicer.cut(1000, 3000, 2, 0) is None   # an odd byte count: nothing before it can be spliced
    # after a VECT_12 at x=2040 the vector base is 2052, which no VECT_BASE_X word can restore
    data = words(0x8000, 0x6001, 0x0004, 0x37F8, 0x4001, 0x6002, 0x2005)
    decoded = decode_all(data)[0]
    splicer.add(data, make_decoder("evt3", 2048, 2048).stream_state(), decoded.events, decoded.triggers, clean=True)
    assert splicer.cut(2000, 3000, 1, 0) is None
    assert decode_all(splicer.cut(1000, 3000, 2, 0))[0].events["x"].tolist() == [2040, 5]
