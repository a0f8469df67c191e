"""`microexp events info` and `microexp bench representations` on real recordings, through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microexp_ros.cli import main

INFO_KEYS = {"events", "on", "off", "triggers", "width", "height", "duration_s", "encoding", "drops", "format",
             "streams"}


def info_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["events", "info", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object
    return json.loads(out)


def test_info_raw_evt3(real_data: Path, capsys) -> None:
    info = info_json(capsys, str(real_data / "expelliarmus" / "evt3_sample.raw"), "--width", "1280", "--height", "720")
    assert INFO_KEYS <= info.keys()
    assert (info["format"], info["encoding"], info["width"], info["height"]) == ("raw", "evt3", 1280, 720)
    assert (info["events"], info["on"], info["off"], info["triggers"]) == (219_596, 115_532, 104_064, 0)
    assert info["duration_s"] == pytest.approx(0.008801, abs=1e-9)
    assert info["drops"] == {}


def test_info_aedat4_counts_frames(real_data: Path, capsys) -> None:
    info = info_json(capsys, str(real_data / "event_vision_library" / "sample.aedat4"))
    assert (info["encoding"], info["width"], info["height"]) == ("aedat4", 346, 260)
    assert (info["events"], info["on"], info["off"], info["triggers"], info["frames"]) == (6_676, 3_563, 3_113, 17, 4)
    assert info["duration_s"] == pytest.approx(0.169941, abs=1e-6)


def test_info_nmnist_bin_and_dat(real_data: Path, capsys) -> None:
    info = info_json(capsys, str(real_data / "tonic" / "sample_nmnist.bin"), "--width", "34", "--height", "34")
    assert (info["encoding"], info["events"], info["width"]) == ("nmnist_bin", 4_325, 34)
    info = info_json(capsys, str(real_data / "tonic" / "sample_ncars.dat"))
    assert (info["format"], info["events"], info["width"], info["height"]) == ("dat", 2_009, 78, 42)


def test_info_bags_per_topic(real_data: Path, capsys) -> None:
    info = info_json(capsys, str(real_data / "event_camera_py" / "test_events_1.bag"))
    assert info["format"] == "rosbag1" and info["messages"] == {"/event_camera/events": 517}
    topic = info["streams"]["/event_camera/events"]
    assert (topic["encoding"], topic["width"], topic["height"]) == ("evt3", 640, 480)
    assert (info["events"], info["on"], info["off"], info["triggers"]) == (343_474, 125_183, 218_291, 4_157)
    assert 2.0 < info["duration_s"] < 2.1
    info = info_json(capsys, str(real_data / "event_camera_codecs" / "test_data_evt3_trigger"))
    assert (info["events"], info["on"], info["triggers"], info["width"]) == (82_469, 41_439, 2, 1280)


def test_info_text_table(real_data: Path, capsys) -> None:
    assert main(["events", "info", str(real_data / "tonic" / "sample.aedat4")]) == 0
    out = capsys.readouterr().out
    assert "111954" in out and "320x240" in out


@pytest.mark.parametrize(
    "name, content, message",
    [("missing.raw", None, "no such file"),
     ("junk.xyz", b"not events", "unknown event file format"),
     ("cut.bag", b"#ROSBAG V2.0\n" + b"\0" * 64, "cannot open bag"),
     ("nosize.raw", b"% evt 3.0\n\x01\x80", "pass width and height")],
)
def test_info_errors_exit_nonzero_with_one_line(tmp_path: Path, capsys, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["events", "info", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0]


def test_bench_representations_json(real_data: Path, capsys) -> None:
    argv = ["bench", "representations", str(real_data / "tonic" / "sample.aedat4"), "--repeats", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["events"] == 111_954 and result["voxel_mevps"] > 0
    names = [r["representation"] for r in result["results"]]
    assert names[0] == "voxel_numpy_baseline" and "voxel_grid" in names
    assert result["results"][0]["ratio_to_baseline"] == 1.0


def test_info_two_topic_mcap_bag(real_data: Path, tmp_path: Path, capsys) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from microexp_ros.data.typestore import EVENT_PACKET, typestore
    from microexp_ros.events.bag_reader import BagFile

    bag = tmp_path / "two_topics"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, source in (("/vga/events", real_data / "event_camera_py" / "test_events_1.bag"),
                              ("/hd/events", real_data / "event_camera_codecs" / "test_data_evt3_trigger")):
            conn = writer.add_connection(topic, EVENT_PACKET, typestore=typestore())
            for packet in BagFile(source).packets():
                writer.write(conn, packet.bag_time_ns, packet.cdr)
    info = info_json(capsys, str(bag))
    assert info["messages"] == {"/vga/events": 517, "/hd/events": 105}
    assert info["streams"]["/vga/events"]["events"] == 343_474 and info["streams"]["/hd/events"]["events"] == 82_469
    assert info["events"] == 343_474 + 82_469
    assert info["encoding"] == "evt3" and info["width"] is None  # the topics' sensor sizes differ


def test_info_reports_drops(tmp_path: Path, capsys) -> None:
    # EVT3: TIME_HIGH 1, TIME_LOW 0x388, ADDR_Y 200, ADDR_X 100 ON, an unknown word 0x9999, then ADDR_X 5 ON.
    words = bytes.fromhex("01808863c80064289999" + "0528")
    path = tmp_path / "small.raw"
    path.write_bytes(b"% format EVT3;height=100;width=100\n% end\n" + words)
    info = info_json(capsys, str(path))
    assert info["events"] == 0  # both events are at y=200, outside the 100x100 sensor
    assert info["drops"] == {"out_of_bounds": 2, "unknown_word": 1}


def test_info_topic_selection(real_data: Path, capsys) -> None:
    bag = str(real_data / "event_camera_codecs" / "test_data_evt3_trigger")
    info = info_json(capsys, bag, "--topic", "/event_camera/events")
    assert info["events"] == 82_469
    assert main(["events", "info", bag, "--topic", "/other"]) == 2
    assert "no EventPacket topic /other" in capsys.readouterr().err
