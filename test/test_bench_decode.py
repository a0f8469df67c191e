"""`microexp bench decode` on a small large-stream: one JSON object with positive rates that agree on counts.

The >= 20 M-event run itself is a benchmark, not a unit test: `microexp bench decode` (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microexp_ros.bench.decode import load_evt3_payload, tiled_stream
from microexp_ros.cli import main


def test_bench_decode_json_on_a_small_stream(real_data: Path, capsys):
    sample = real_data / "expelliarmus" / "evt3_sample.raw"
    code = main(["bench", "decode", "--file", str(sample), "--events", "300000", "--repeats", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("ours_mevps", "evt3_mevps", "expelliarmus_mevps", "ratio_vs_evt3", "voxel_mevps"):
        assert result[key] > 0, key
    assert result["ratio_vs_evt3"] == pytest.approx(result["ours_mevps"] / result["evt3_mevps"])
    voxel = result["voxel"]
    assert voxel["ours"]["mevps"] == result["voxel_mevps"] and voxel["numpy"]["cpu_mevps"] > 0
    ratio = voxel["ours"]["cpu_mevps"] / voxel["numpy"]["cpu_mevps"]
    assert voxel["ratio_vs_numpy"]["cpu_mevps"] == pytest.approx(ratio)
    file_stream, large = result["streams"]["file"], result["streams"]["large"]
    assert file_stream["events"] == file_stream["events_evt3"] == file_stream["events_expelliarmus"] == 219_596
    assert large["events"] == large["events_evt3"] == large["events_expelliarmus"] == 300_000


def test_tiled_stream_repeats_in_time_order(real_data: Path):
    from microexp_ros.events.codecs import make_decoder

    events = make_decoder("evt3", 1280, 720).decode(load_evt3_payload(real_data / "expelliarmus" / "evt3_sample.raw")).events
    big = tiled_stream(events, 2 * events.size + 5)
    assert big.size == 2 * events.size + 5
    np.testing.assert_array_equal(big[events.size : 2 * events.size][["x", "y", "p"]], events[["x", "y", "p"]])
    assert (np.diff(big["t"]) >= 0).all()


def test_bench_decode_refuses_non_evt3_input(real_data: Path):
    with pytest.raises(ValueError, match="evt2"):
        load_evt3_payload(real_data / "faery" / "evt2.raw")


def test_bench_decode_cli_reports_bad_input(real_data: Path, tmp_path: Path, capsys):
    assert main(["bench", "decode", "--file", str(real_data / "faery" / "evt2.raw"), "--events", "10"]) == 2
    assert "evt2" in capsys.readouterr().err
    assert main(["bench", "decode", "--file", str(tmp_path / "missing.raw")]) == 2
    assert "not found" in capsys.readouterr().err
