"""`microexp bench dataplane` parts that need no ROS: the per-stage rates on a real recording, the rate
rescaling, and the command's argument checks. The end-to-end sweep is a benchmark (docs/benchmarks.md)."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.bench.dataplane import _expected, at_rate, load_recording, stage_rates
from microexp_ros.bench.decode import tiled_stream
from microexp_ros.cli import main

BAG = ("event_camera_py", "test_events_1.bag")


def test_stage_rates_cover_every_stage_of_both_nodes(real_data):
    stream = at_rate(tiled_stream(load_recording(real_data.joinpath(*BAG)), 300_000), 30.0)
    assert stream.size == 300_000
    # 300k events at 30 Mev/s last 10 ms (µs timestamps)
    assert abs(int(stream["t"][-1]) - int(stream["t"][0]) - 10_000_000) <= 1_000
    rates = stage_rates(stream, repeats=1)
    assert set(rates) == {"driver file source (bag read + decode)",
                          "driver, evt3 bag forwarded (read + decode + splice)",
                          "driver (packetize + encode), other sources", "time_sync (decode + cut + splice)", "time_sync, windows re-encoded",
                          "baseline: decode only"}
    for name, rate in rates.items():
        assert np.isfinite(rate["wall_mevps"]) and rate["wall_mevps"] > 0, name
        assert np.isfinite(rate["cpu_mevps"]) and rate["cpu_mevps"] > 0, name


def test_expected_windows_tile_the_stream_from_its_first_event(real_data):
    stream = at_rate(load_recording(real_data.joinpath(*BAG)), 1.0)   # 343,474 events over ~0.34 s
    windows, inside = _expected(stream)
    assert windows == (int(stream["t"][-1]) - int(stream["t"][0])) // 33_333_333 == 10
    assert inside == np.count_nonzero(stream["t"] < int(stream["t"][0]) + windows * 33_333_333)


def test_dataplane_command_rejects_bad_arguments(real_data, tmp_path, capsys):
    missing = tmp_path / "missing.bag"
    assert main(["bench", "dataplane", "--recording", str(missing)]) == 2
    assert capsys.readouterr().err == (f"microexp bench dataplane: error: recording not found: {missing} "
                                       "(pass --recording)\n")
    assert main(["bench", "dataplane", "--recording", str(real_data.joinpath(*BAG)), "--rates", "0"]) == 2
    assert "microexp bench dataplane: error: --events must be >= 1000" in capsys.readouterr().err
