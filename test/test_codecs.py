"""The decoder factory and the non-EVT3 codecs (evt2, mono, libcaer, libcaer_cmp) on real recordings and
hand-built words, plus malformed input for every encoding: no crash, no hang, drops counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microexp_ros.events.codecs import ENCODINGS, make_decoder
from microexp_ros.events.raw_header import raw_encoding, read_raw

# ---------------------------------------------------------------- factory


def test_factory_knows_every_encoding():
    assert set(ENCODINGS) == {"evt3", "evt2", "mono", "libcaer", "libcaer_cmp"}
    for encoding in ENCODINGS:
        decoder = make_decoder(encoding, 640, 480)
        assert (decoder.encoding, decoder.width, decoder.height) == (encoding, 640, 480)


@pytest.mark.parametrize(
    ("encoding", "width", "height", "message"),
    [
        ("evt4", 640, 480, "unknown event encoding 'evt4'"),
        ("EVT3", 640, 480, "unknown event encoding"),
        ("evt3", 0, 480, "0x480"),
        ("evt3", 640, 0, "640x0"),
        ("evt3", 4096, 480, "1..2048"),
        ("libcaer", 10**9, 10**9, "geometry"),
        ("mono", -1, 5, "geometry"),
    ],
)
def test_factory_rejects_bad_encoding_or_geometry(encoding, width, height, message):
    with pytest.raises(ValueError, match=message):
        make_decoder(encoding, width, height)


def test_bad_arguments_raise_clear_errors():
    decoder = make_decoder("mono", 10, 10)
    with pytest.raises(TypeError, match="str"):
        decoder.decode("not bytes")
    with pytest.raises(ValueError, match="time_base"):
        decoder.decode(b"", time_base=-1)


# ---------------------------------------------------------------- mono


def test_mono_vector_from_the_notes_and_time_base():
    decoder = make_decoder("mono", 640, 480)
    time_base = 1_702_306_974_272_224_019  # epoch-scale ns: must stay exact integer arithmetic
    result = decoder.decode(bytes.fromhex("d204000064 00c880".replace(" ", "")), time_base=time_base)
    assert result.events.tolist() == [(time_base + 1234, 100, 200, 1)]


def test_mono_out_of_bounds_and_truncated_are_counted():
    words = np.array([(1 << 63) | (200 << 48) | (100 << 32) | 5, (3 << 48) | (700 << 32) | 6], dtype="<u8")
    decoder = make_decoder("mono", 640, 480)
    result = decoder.decode(words.tobytes() + b"\x01\x02\x03")
    assert result.events["x"].tolist() == [100]
    assert decoder.drops == {"out_of_bounds": 1, "truncated": 1}


# ---------------------------------------------------------------- libcaer


def libcaer_words(x, y, p, ts, valid=1) -> bytes:
    data = np.asarray(valid) | (np.asarray(p) << 1) | (np.asarray(y) << 2) | (np.asarray(x) << 17)
    rec = np.zeros(np.size(data), dtype=[("data", "<u4"), ("ts", "<i4")])
    rec["data"], rec["ts"] = data, ts
    return rec.tobytes()


def test_libcaer_rollover_bag_reproduces_upstream_checksums(real_data: Path):
    from rosbags.rosbag2 import Reader

    from microexp_ros.data.typestore import typestore

    store = typestore()
    decoder, events, first = None, [], None
    with Reader(real_data / "event_camera_codecs" / "test_data_libcaer_rollover") as reader:
        for connection, _, raw in reader.messages():
            msg = store.deserialize_cdr(raw, connection.msgtype)
            decoder = decoder or make_decoder(msg.encoding, msg.width, msg.height)
            events.append(decoder.decode(msg.events, msg.time_base).events)
            first = first or msg
    ev = np.concatenate(events)
    # exact integer ns on an epoch-scale time_base (1.7e18 ns): time_base + timestamp µs x 1000
    stamps = np.frombuffer(first.events, dtype=[("data", "<u4"), ("ts", "<i4")])["ts"].astype(np.int64)
    np.testing.assert_array_equal(events[0]["t"], int(first.time_base) + stamps * 1000)
    assert ev.size == 334_331
    assert int(ev["x"].astype(np.int64).sum()) == 111_651_612
    assert int(ev["y"].astype(np.int64).sum()) == 82_801_007
    assert int(ev["p"].sum()) == 181_908
    assert not decoder.drops
    # across the 31-bit rollover (event 165,932) sensor time keeps rising
    assert (np.diff(ev["t"]) >= 0).all()
    assert int(ev["t"][165_932] - ev["t"][165_931]) < 10**9


def test_libcaer_in_message_rollover_invalid_and_negative():
    data = libcaer_words([1, 2, 3, 4], [5, 6, 7, 8], [1, 0, 1, 0], [2**31 - 10, 5, -3, 6], valid=[1, 1, 1, 0])
    decoder = make_decoder("libcaer", 640, 480)
    result = decoder.decode(data, time_base=1000)
    assert result.events.tolist() == [
        (1000 + (2**31 - 10) * 1000, 1, 5, 1),
        (1000 + 2**31 * 1000 + 5000, 2, 6, 0),
    ]
    assert decoder.drops == {"invalid": 2}
    # the rollover state restarts with the next message (its time_base carries the overflow bits)
    assert decoder.decode(libcaer_words([9], [9], [1], [4]), time_base=0).events["t"].tolist() == [4000]


def test_libcaer_decode_until_resumes_mid_message():
    data = libcaer_words(np.arange(6), np.zeros(6, int), np.ones(6, int), [2**31 - 2, 2**31 - 1, 0, 1, 2, 3])
    decoder = make_decoder("libcaer", 640, 480)
    limit = 2**31 * 1000 + 1500  # cuts after the rolled-over timestamp 1 µs
    first, used = decoder.decode_until(data, limit)
    assert first.events["x"].tolist() == [0, 1, 2, 3]
    assert used == 4 * 8
    rest = decoder.decode(data[used:])  # decode() after a stopped decode_until continues the message
    assert rest.events["x"].tolist() == [4, 5]
    assert rest.events["t"].tolist() == [2**31 * 1000 + 2000, 2**31 * 1000 + 3000]
    # and the next message starts afresh
    assert decoder.decode(data[:8]).events["t"].tolist() == [(2**31 - 2) * 1000]


# ---------------------------------------------------------------- libcaer_cmp


def test_libcaer_cmp_words_per_the_driver_layout():
    w = lambda *v: np.array(v, dtype="<u2").tobytes()  # noqa: E731
    message_1 = w(
        0x2005,  # ADDR_X 5
        0x3807,  # ADDR_Y 7 pol 1 -> event at t = time_base
        0x1003,  # TIME_LOW 3 µs
        0x4008,  # VECT_BASE_Y 8 pol 0
        0x5005,  # VECT_8 0b101 -> y 8 and 10
        0x0001,  # TIME_HIGH 1 -> 4096 µs
        0x3002,  # ADDR_Y 2 pol 0
        0x7123,  # unknown code 7
    )
    decoder = make_decoder("libcaer_cmp", 640, 480)
    tb = 10**12
    result = decoder.decode(message_1, time_base=tb)
    assert result.events.tolist() == [
        (tb, 5, 7, 1), (tb + 3000, 5, 8, 0), (tb + 3000, 5, 10, 0), (tb + 4099_000, 5, 2, 0),
    ]
    assert decoder.drops == {"unknown_word": 1}
    # a new message restarts its relative time at 0 but keeps x
    assert decoder.decode(w(0x3804), time_base=2 * tb).events.tolist() == [(2 * tb, 5, 4, 1)]
    # decode_until stops before the first event at or after the limit and resumes there
    first, used = decoder.decode_until(message_1, tb + 3000, time_base=tb)
    assert first.events["y"].tolist() == [7]
    second, used2 = decoder.decode_until(message_1[used:], tb + 10**9, time_base=tb)
    assert second.events["y"].tolist() == [8, 10, 2]
    assert used + used2 == len(message_1)


# ---------------------------------------------------------------- evt2


@pytest.mark.parametrize(
    ("name", "count", "on_fraction", "t_first_us", "t_last_us"),
    [
        ("faery/evt2.raw", 521_252, 0.357, 913_716_224, 913_812_095),
        ("expelliarmus/evt2_sample.raw", 539_481, 0.682, 1_317_888, 1_367_888),
    ],
)
def test_evt2_raw_files(real_data: Path, name, count, on_fraction, t_first_us, t_last_us):
    header, payload = read_raw(real_data / name)
    assert raw_encoding(header) == "evt2"
    decoder = make_decoder("evt2", 640, 480)
    events = decoder.decode(payload).events
    assert events.size == count
    assert round(float(events["p"].mean()), 3) == on_fraction
    assert (int(events["t"][0]) // 1000, int(events["t"][-1]) // 1000) == (t_first_us, t_last_us)
    assert not decoder.drops
    # decoding in chunks split inside words gives the same stream
    chunked = make_decoder("evt2", 640, 480)
    cuts = [0, 1, 4097, 100_003, 1_000_001, len(payload)]
    parts = [chunked.decode(payload[a:b]).events for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), events)


def test_evt2_triggers_validity_and_wrap():
    w = lambda *v: np.array(v, dtype="<u4").tobytes()  # noqa: E731
    cd = lambda p, low, x, y: (p << 28) | (low << 22) | (x << 11) | y  # noqa: E731
    data = w(
        cd(1, 0, 3, 4),  # before any TIME_HIGH: dropped
        0x8000_0000 | 0xFFFFFFF,  # TIME_HIGH max
        cd(0, 63, 5, 6),
        0xA000_0000 | (7 << 22) | (3 << 8) | 1,  # trigger id 3 rising
        0x8000_0000 | 2,  # wraps: +2^34 µs
        cd(1, 1, 7, 8),
        0x5000_0000,  # unknown type
    )
    decoder = make_decoder("evt2", 640, 480)
    result = decoder.decode(data)
    top = (0xFFFFFFF << 6) * 1000
    assert result.events.tolist() == [(top + 63_000, 5, 6, 0), ((1 << 34) * 1000 + (2 << 6 | 1) * 1000, 7, 8, 1)]
    assert result.triggers.tolist() == [(top + 7000, 1, 3)]
    assert decoder.drops == {"before_valid_time": 1, "unknown_word": 1}


# ---------------------------------------------------------------- malformed input, every encoding


def _popcount(values: np.ndarray) -> int:
    return int(np.unpackbits(values.astype("<u2").view(np.uint8)).sum())


def cd_words_in(encoding: str, data: bytes) -> int:
    """How many CD and trigger events the words of `data` carry, counted independently of the decoders."""
    if encoding in ("mono", "libcaer"):
        return len(data) // 8
    if encoding == "evt2":
        code = np.frombuffer(data[: len(data) // 4 * 4], "<u4") >> 28
        return int(np.count_nonzero((code <= 1) | (code == 0xA)))
    w = np.frombuffer(data[: len(data) // 2 * 2], "<u2")
    code = w >> 12
    if encoding == "evt3":
        singles = int(np.count_nonzero((code == 2) | (code == 0xA)))
        return singles + _popcount(w[code == 4] & 0xFFF) + _popcount(w[code == 5] & 0xFF)
    return int(np.count_nonzero(code == 3)) + _popcount(w[code == 5] & 0xFF)  # libcaer_cmp


@settings(max_examples=40, deadline=None)
@given(encoding=st.sampled_from(ENCODINGS), blob=st.binary(max_size=3000), cut=st.integers(0, 3000))
def test_random_bytes_every_event_is_decoded_or_counted(encoding, blob, cut):
    decoder = make_decoder(encoding, 320, 240)
    parts = [decoder.decode(blob[:cut], time_base=5), decoder.decode(blob[cut:], time_base=5)]
    decoder.finish()
    decoded = sum(p.events.size + p.triggers.size for p in parts)
    dropped = sum(decoder.drops[k] for k in ("before_valid_time", "out_of_bounds", "invalid"))
    if decoder.carries_partial_words:
        expected = cd_words_in(encoding, blob)
        assert decoder.drops["truncated"] == (len(blob) % decoder.word_bytes > 0)
    else:
        expected = cd_words_in(encoding, blob[:cut]) + cd_words_in(encoding, blob[cut:])
    assert decoded + dropped == expected
    for result in parts:
        assert (result.events["x"] < 320).all() and (result.events["y"] < 240).all()
        assert (result.events["p"] <= 1).all()


@settings(max_examples=30, deadline=None)
@given(encoding=st.sampled_from(ENCODINGS), blob=st.binary(max_size=3000), limit=st.integers(-10, 2**40))
def test_random_bytes_decode_until_stays_below_the_limit(encoding, blob, limit):
    decoder = make_decoder(encoding, 320, 240)
    result, used = decoder.decode_until(blob, limit, time_base=5)
    assert 0 <= used <= len(blob)
    assert (result.events["t"] < limit).all() and (result.triggers["t"] < limit).all()


def test_large_garbage_terminates_and_is_counted():
    blob = np.random.default_rng(3).integers(0, 256, size=8_000_003, dtype=np.uint8).tobytes()
    for encoding in ENCODINGS:
        decoder = make_decoder(encoding, 64, 64)
        decoder.decode(blob)
        decoder.finish()
        assert sum(decoder.drops.values()) > 0, encoding


def test_odd_byte_counts_carry_in_streams_and_count_in_messages():
    evt3 = make_decoder("evt3", 2048, 2048)
    assert evt3.decode(bytes.fromhex("018088")).events.size == 0  # 1.5 words: one byte held
    assert evt3.decode(bytes.fromhex("63c8006428")).events.tolist() == [(5_000_000, 100, 200, 1)]
    evt3.decode(b"\x01")
    evt3.finish()
    assert evt3.drops == {"truncated": 1}
    cmp = make_decoder("libcaer_cmp", 64, 64)
    cmp.decode(b"\x05\x20\x07")
    assert cmp.drops == {"truncated": 1}
