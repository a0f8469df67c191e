"""Event file readers on the real recordings in ../shared/data/real (counts and checksums from SOURCES.md and
the upstream tests quoted there), plus hand-made headers, corrupt files and format detection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from microexp_ros.data.typestore import EVENT_PACKET, typestore
from microexp_ros.events.aedat4 import Aedat4File
from microexp_ros.events.bag_reader import BagFile
from microexp_ros.events.nmnist_bin import NmnistFile
from microexp_ros.events.raw_file import RawFile, parse_raw_header
from microexp_ros.events.reader import detect_format, open_events
from microexp_ros.events.reader_protocol import Chunk, EventFileError, read_all

US = 1000  # ns per µs
TOPIC = "/event_camera/events"
# The EVT3 test vector of ros-and-event-camera.md §1.2: one ON event at x=100, y=200, t=5000 µs.
EVT3_ONE_EVENT = bytes.fromhex("01808863c8006428")


def only(source) -> Chunk:
    chunks = read_all(source)
    assert len(chunks) == 1
    return next(iter(chunks.values()))


# --- .raw headers ------------------------------------------------------------------------------------------

def test_raw_header_forms() -> None:
    new = parse_raw_header(b"% date 2024\n% format EVT3;height=720;width=1280\n% end\n\x01\x80")
    assert (new.encoding, new.width, new.height, new.data_offset) == ("evt3", 1280, 720, 54)
    old = parse_raw_header(b"% evt 2.0\n% geometry 640x480\n\x00\x00\x00\x40")
    assert (old.encoding, old.width, old.height) == ("evt2", 640, 480)
    bare = parse_raw_header(b"% evt 3.0\n\x01\x80")
    assert (bare.encoding, bare.width, bare.height, bare.fields["evt"]) == ("evt3", None, None, "3.0")


@pytest.mark.parametrize(
    "header, match",
    [(b"% format EVT21;height=10;width=10\n% end\n", "'EVT21' is not supported"),
     (b"% evt 3.0\n% geometry 640 by 480\n", "WIDTHxHEIGHT"),
     (b"% format EVT3;height=ten;width=10\n% end\n", "height='ten'")],
)
def test_raw_header_errors_name_the_problem(header: bytes, match: str) -> None:
    with pytest.raises(EventFileError, match=match):
        parse_raw_header(header)


def test_raw_file_from_hand_made_evt3(tmp_path: Path) -> None:
    path = tmp_path / "one.raw"
    path.write_bytes(b"% format EVT3;height=480;width=640\n% end\n" + EVT3_ONE_EVENT)
    source = RawFile(path)
    assert source.streams["events"].width == 640
    ev = only(source).events
    assert ev.tolist() == [(5000 * US, 100, 200, 1)]
    with pytest.raises(EventFileError, match="width=640 but width=320 was passed"):
        RawFile(path, width=320, height=480)


def test_raw_file_without_geometry_needs_it(real_data: Path) -> None:
    with pytest.raises(EventFileError, match="pass width and height"):
        open_events(real_data / "faery" / "evt2.raw")


# --- .raw on real recordings -------------------------------------------------------------------------------

def test_faery_evt2(real_data: Path) -> None:
    source = open_events(real_data / "faery" / "evt2.raw", width=640, height=480)
    ev = only(source).events
    assert ev.size == 521_252
    assert round(ev["p"].mean(), 3) == 0.357
    assert (ev["t"][0], ev["t"][-1]) == (913_716_224 * US, 913_812_095 * US)
    assert ev["x"].max() <= 639 and ev["y"].max() <= 479
    assert source.drops["events"].total() == 0


def test_expelliarmus_evt2(real_data: Path) -> None:
    ev = only(open_events(real_data / "expelliarmus" / "evt2_sample.raw", width=640, height=480)).events
    assert ev.size == 539_481
    assert (ev["t"][0], ev["t"][-1]) == (1_317_888 * US, 1_367_888 * US)
    assert ev["x"].max() == 599 and ev["y"].max() == 475


def test_expelliarmus_evt3_matches_reference_xyp(real_data: Path) -> None:
    ev = only(open_events(real_data / "expelliarmus" / "evt3_sample.raw", width=1280, height=720)).events
    assert ev.size == 219_596 and int(ev["p"].sum()) == 115_532
    ref = np.load(real_data / "expelliarmus" / "evt3_sample.npy")
    np.testing.assert_array_equal(ev["x"], ref["x"])
    np.testing.assert_array_equal(ev["y"], ref["y"])
    np.testing.assert_array_equal(ev["p"], ref["p"])
    # SOURCES.md gives the span as 11,718,656 -> 11,727,467 µs (8.8 ms); the last CD event sits between the
    # stream's final TIME_LOW words 0x6261 and 0x6262, i.e. at TIME_HIGH 2863 | 609 = 11,727,457 µs.
    assert (ev["t"][0], ev["t"][-1]) == (11_718_656 * US, 11_727_457 * US)


def test_raw_chunking_does_not_change_the_result(real_data: Path) -> None:
    path = real_data / "expelliarmus" / "evt3_sample.raw"
    whole = only(RawFile(path, 1280, 720)).events
    odd = only(RawFile(path, 1280, 720, chunk_bytes=4099)).events  # splits words across chunks
    np.testing.assert_array_equal(odd, whole)


# --- AEDAT4 ------------------------------------------------------------------------------------------------

def test_tonic_aedat4(real_data: Path) -> None:
    source = open_events(real_data / "tonic" / "sample.aedat4")
    info = source.streams["events"]
    assert (info.width, info.height) == (320, 240)
    chunk = only(source)
    assert chunk.events.size == 111_954 and chunk.triggers.size == 0
    assert (chunk.events["t"][0], chunk.events["t"][-1]) == (1605537493718345 * US, 1605537494308262 * US)
    assert list(source.frames()) == []


def test_davis_aedat4_events_frames_triggers(real_data: Path) -> None:
    source = Aedat4File(real_data / "event_vision_library" / "sample.aedat4")
    chunk = only(source)
    assert chunk.events.size == 6_676 and int(chunk.events["p"].sum()) == 3_563
    assert (chunk.events["t"][0], chunk.events["t"][-1]) == (1589163147368868 * US, 1589163147538809 * US)
    # 17 APS triggers: frame start (6) x4, frame end (7) x5, exposure start (8) x4, exposure end (9) x4.
    ids, counts = np.unique(chunk.triggers["id"], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == {6: 4, 7: 5, 8: 4, 9: 4}
    assert int(chunk.triggers["edge"].sum()) == 8  # the starts are rising edges
    frames = list(source.frames())
    assert [f.t for f in frames] == [(1589163147365215 + k * 40_000) * US for k in range(4)]
    for f in frames:
        assert f.exposure_begin_t == f.t - 250 * US and f.exposure_end_t == f.t + 250 * US
        assert f.pixels.shape == (260, 346) and f.pixels.dtype == np.uint8 and f.format == "L"
        assert f.pixels.std() > 10  # a real image, not a blank buffer


def test_truncated_aedat4_is_reported(real_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.aedat4"
    path.write_bytes((real_data / "tonic" / "sample.aedat4").read_bytes()[:300_000])
    with pytest.raises(EventFileError, match="corrupt AEDAT4"):
        read_all(open_events(path))


# --- N-MNIST / N-Caltech .bin ------------------------------------------------------------------------------

def test_nmnist_and_ncaltech_bin(real_data: Path) -> None:
    source = open_events(real_data / "tonic" / "sample_nmnist.bin", width=34, height=34)
    ev = only(source).events
    assert ev.size == 4_325 and 0.30 < (ev["t"][-1] - ev["t"][0]) / 1e9 < 0.32
    face = NmnistFile(real_data / "event_vision_library" / "faces_easy_0001.bin")
    assert (face.streams["events"].width, face.streams["events"].height) == (151, 173)
    ev = only(face).events
    assert ev.size == 67_445 and round(ev["p"].mean(), 3) == 0.501


def test_nmnist_truncated_and_out_of_bounds_are_counted(real_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes((real_data / "tonic" / "sample_nmnist.bin").read_bytes()[:-2])
    source = NmnistFile(path, 34, 34)
    assert only(source).events.size == 4_324 and source.drops["events"] == {"truncated": 1}
    small = NmnistFile(real_data / "tonic" / "sample_nmnist.bin", 20, 20)
    kept = only(small).events.size
    assert kept + small.drops["events"]["out_of_bounds"] == 4_325 and kept < 4_325


# --- Prophesee DAT ---------------------------------------------------------------------------------------

def test_ncars_dat(real_data: Path) -> None:
    source = open_events(real_data / "tonic" / "sample_ncars.dat")
    assert source.format == "dat"
    info = source.streams["events"]
    assert (info.width, info.height) == (78, 42)  # the extent of this ATIS crop
    ev = only(source).events
    assert ev.size == 2_009 and 0.099 < (ev["t"][-1] - ev["t"][0]) / 1e9 <= 0.1
    assert source.drops["events"].total() == 0


def test_dat_header_errors(tmp_path: Path) -> None:
    path = tmp_path / "wide.dat"
    path.write_bytes(b"% Version 2\n\x00\x10" + bytes(16))
    with pytest.raises(EventFileError, match="16-byte events"):
        open_events(path)


# --- Event Stream -----------------------------------------------------------------------------------------

ES_HEADER = b"Event Stream" + bytes([2, 0, 0])


def test_faery_dvs_es(real_data: Path) -> None:
    source = open_events(real_data / "faery" / "dvs.es")
    info = source.streams["events"]
    assert (source.format, info.encoding, info.width, info.height) == ("es", "dvs", 320, 240)
    ev = only(source).events
    assert ev.size == 473_225 and round(ev["p"].mean(), 3) == 0.571
    assert (ev["t"][0], ev["t"][-1]) == (0, 999_000 * US)


def test_es_dvs_and_atis_by_hand(tmp_path: Path) -> None:
    size = (300).to_bytes(2, "little") + (200).to_bytes(2, "little")
    dvs = tmp_path / "dvs.es"
    # overflow (+127 µs), reset, then an ON event 5 µs later at x=258, y=199; then 2 bytes of a cut event.
    dvs.write_bytes(ES_HEADER + b"\x01" + size + bytes([0xFF, 0xFE, (5 << 1) | 1, 2, 1, 199, 0, 0x04, 7]))
    source = open_events(dvs)
    assert only(source).events.tolist() == [(132 * US, 258, 199, 1)]
    assert source.drops["events"] == {"truncated": 1}
    atis = tmp_path / "atis.es"
    # 2 x 63 µs overflow, an ON DVS event (+3 µs) at (1, 2), then a threshold crossing (+1 µs), then OFF (+0).
    body = [0xFE, (3 << 2) | 2, 1, 0, 2, 0, (1 << 2) | 1, 5, 0, 5, 0, 0 << 2, 9, 0, 8, 0]
    atis.write_bytes(ES_HEADER + b"\x02" + size + bytes(body))
    source = open_events(atis)
    assert only(source).events.tolist() == [(129 * US, 1, 2, 1), (130 * US, 9, 8, 0)]
    assert source.drops["events"] == {"threshold_crossing": 1}


def test_es_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "generic.es"
    path.write_bytes(ES_HEADER + b"\x00" + bytes(8))
    with pytest.raises(EventFileError, match="type generic has no CD events"):
        open_events(path)


# --- bags --------------------------------------------------------------------------------------------------

def test_ros1_bag_matches_upstream_test(real_data: Path) -> None:
    source = open_events(real_data / "event_camera_py" / "test_events_1.bag")
    assert source.format == "rosbag1" and source.message_counts == {TOPIC: 517}
    chunk = only(source)
    ev, tr = chunk.events, chunk.triggers
    assert ev.size == 343_474 and int(ev["p"].sum()) == 125_183
    # Upstream event_camera_py test_1.py: Σt in µs over CD and trigger events; 2078 triggers with p == 0.
    assert int((ev["t"] // US).sum() + (tr["t"] // US).sum()) == 2_885_601_049_874
    assert int(np.count_nonzero(tr["edge"] == 0)) == 2_078


def test_rosbag2_evt3_trigger_checksums(real_data: Path) -> None:
    source = open_events(real_data / "event_camera_codecs" / "test_data_evt3_trigger")
    assert source.format == "rosbag2" and source.message_counts == {TOPIC: 105}
    info = source.streams[TOPIC]
    assert (info.encoding, info.width, info.height) == ("evt3", 1280, 720)
    chunk = only(source)
    ev, tr = chunk.events, chunk.triggers
    assert ev.size == 82_469
    assert int(ev["t"].sum()) == 1_222_326_831_810_000
    assert int(ev["x"].astype(np.int64).sum()) == 42_078_718
    assert int(ev["y"].astype(np.int64).sum()) == 31_656_267
    assert int(ev["p"].sum()) == 41_439
    assert (int(tr["t"].sum()), int(tr["edge"].sum()), int(tr["id"].sum())) == (29_096_982_000, 1, 0)


def test_rosbag2_libcaer_rollover_checksums(real_data: Path) -> None:
    db3 = real_data / "event_camera_codecs" / "test_data_libcaer_rollover" / "libcaer_rollover_0.db3"
    source = open_events(db3)  # a bare storage file works as well as the bag directory
    assert source.streams[TOPIC].encoding == "libcaer"
    ev = only(source).events
    assert ev.size == 334_331
    assert int(ev["x"].astype(np.int64).sum()) == 111_651_612
    assert int(ev["y"].astype(np.int64).sum()) == 82_801_007
    assert int(ev["p"].sum()) == 181_908


def test_bag_packets_carry_cdr_and_mcap_round_trip(real_data: Path, tmp_path: Path) -> None:
    ros1 = BagFile(real_data / "event_camera_py" / "test_events_1.bag")
    packets = list(ros1.packets())
    store = typestore()
    first = store.deserialize_cdr(packets[0].cdr, EVENT_PACKET)
    assert first.encoding == "evt3" and bytes(first.events) == bytes(packets[0].msg.events)
    mcap = tmp_path / "mcap_bag"
    with Writer(mcap, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, EVENT_PACKET, typestore=store)
        for packet in packets:
            writer.write(conn, packet.bag_time_ns, packet.cdr)
    copy = open_events(mcap)
    assert copy.format == "rosbag2" and copy.message_counts == {TOPIC: 517}
    np.testing.assert_array_equal(only(copy).events, only(ros1).events)


def test_corrupt_and_foreign_bags_raise_clear_errors(real_data: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.bag"
    cut.write_bytes((real_data / "event_camera_py" / "test_events_1.bag").read_bytes()[:1_000_000])
    with pytest.raises(EventFileError, match=r"cannot open bag .*cut\.bag"):
        open_events(cut)
    bag2 = tmp_path / "bag2"
    src = real_data / "event_camera_codecs" / "test_data_evt3_trigger"
    bag2.mkdir()
    shutil.copy(src / "metadata.yaml", bag2)
    (bag2 / "test_data_evt3_trigger_0.db3").write_bytes((src / "test_data_evt3_trigger_0.db3").read_bytes()[:400_000])
    with pytest.raises(EventFileError, match="malformed"):
        open_events(bag2)
    with pytest.raises(EventFileError, match="no EventPacket topic /nope"):
        open_events(src, topics=["/nope"])
    bad_message = tmp_path / "bad_message"
    with Writer(bad_message, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, EVENT_PACKET, typestore=typestore())
        writer.write(conn, 1, b"\x00\x01\x00\x00" + b"\xff" * 64)  # CDR header, then a bogus string length
    with pytest.raises(EventFileError, match=r"bad_message: .*Invalid string length"):
        open_events(bad_message)


# --- format detection --------------------------------------------------------------------------------------

def test_open_events_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.raw"):
        open_events(tmp_path / "missing.raw")
    junk = tmp_path / "junk.xyz"
    junk.write_bytes(b"not events")
    with pytest.raises(EventFileError, match=r"junk\.xyz: unknown event file format"):
        open_events(junk)
    with pytest.raises(EventFileError, match="not a rosbag2 bag"):
        open_events(tmp_path)
    raw_named_oddly = tmp_path / "recording.dat0"
    raw_named_oddly.write_bytes(b"% evt 3.0\n" + EVT3_ONE_EVENT)
    assert detect_format(raw_named_oddly) == "raw"



def test_open_events_rejects_parameters_a_format_stores(real_data: Path) -> None:
    with pytest.raises(EventFileError, match="width/height apply to .raw, .bin and .dat files only"):
        open_events(real_data / "tonic" / "sample.aedat4", width=3, height=3)
    with pytest.raises(EventFileError, match="encoding= applies to .raw files only"):
        open_events(real_data / "event_camera_py" / "test_events_1.bag", encoding="evt3")
