"""`microexp bench au` and what it relies on: the latency figures come from what was measured, the AU path
graph is the one it says, and the speed-ups it measures (traced model, warm-up) do not change any output.

No timing is asserted here (the machine is shared); the benchmark prints the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from microexp_ros.bench.au import e2e_summary
from microexp_ros.bringup.graphs import resolve
from microexp_ros.events.aedat4 import Aedat4File
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.window import window_slice
from microexp_ros.events.array import synthetic_events
from microexp_ros.models.au_inference import AUPredictor
from microexp_ros.resources import share_path

MS = 1_000_000


def test_e2e_summary_pools_runs_and_counts_unmeasured_windows():
    nan = float("nan")
    runs = [[500.0, 40.0, 12.0, 10.0, 11.0, nan], [300.0, 9.0, 8.0, 14.0, 16.0]]
    got = e2e_summary(runs, target_ms=15.0, cold_windows=2)
    measured = np.array([500.0, 40.0, 12.0, 10.0, 11.0, 300.0, 9.0, 8.0, 14.0, 16.0])
    assert got["e2e_windows"] == 10 and got["e2e_unmeasured_windows"] == 1
    assert got["e2e_p50_ms"] == pytest.approx(np.median(measured))
    assert got["e2e_p99_ms"] == pytest.approx(np.percentile(measured, 99))
    assert got["e2e_max_ms"] == 500.0
    assert got["e2e_within_target"] == pytest.approx(6 / 10)
    assert got["e2e_cold"]["windows"] == 4 and got["e2e_cold"]["p50_ms"] == pytest.approx(np.median([500, 40, 300, 9]))
    assert got["e2e_warm"]["windows"] == 6 and got["e2e_warm"]["max_ms"] == 16.0
    assert got["e2e_runs_p50_ms"] == [pytest.approx(12.0), pytest.approx(14.0)]
    with pytest.raises(ValueError, match="at least one run"):
        e2e_summary([])


def test_synthetic_events_fill_the_window_and_sensor_in_time_order():
    events = synthetic_events(96, 64, 5 * MS, 205 * MS, count=3000, seed=3)
    assert events.size == 3000 and np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() >= 5 * MS and events["t"].max() < 205 * MS
    assert events["x"].max() < 96 and events["y"].max() < 64 and set(np.unique(events["p"])) == {0, 1}
    assert np.array_equal(events, synthetic_events(96, 64, 5 * MS, 205 * MS, count=3000, seed=3))
    with pytest.raises(ValueError, match="count >= 2"):
        synthetic_events(96, 64, 0, 10, count=1)
    with pytest.raises(ValueError, match="t1_ns > t0_ns"):
        synthetic_events(96, 64, 10, 10)


def test_traced_predictor_gives_exactly_the_eager_outputs_on_real_windows(real_data):
    events = read_all(Aedat4File(real_data / "tonic" / "sample.aedat4"))["events"].events
    roi, sensor = (80, 40, 160, 160), (320, 240)
    torch.set_num_threads(1)
    predictor = AUPredictor.from_file()
    eager = AUPredictor.from_file().model
    times = predictor.warm_up(synthetic_events(128, 128, 0, predictor.window_ns), 0, predictor.window_ns,
                              (128, 128), calls=2)
    assert len(times) == 2 and predictor.runner == "traced"
    start = int(events["t"][0])
    counts = []
    for k in range(8):
        t0, t1 = start + k * 100 * MS, start + k * 100 * MS + predictor.window_ns
        window = window_slice(events, t0, t1)
        counts.append(len(window))
        result = predictor.predict(window, t0, t1, roi, sensor)
        x = torch.from_numpy(predictor.encode(window, t0, t1, roi, sensor))[None]
        with torch.inference_mode():
            au_logits, class_logits = eager(x)
        assert np.array_equal(result.probabilities, torch.sigmoid(au_logits[0]).numpy())
        assert np.array_equal(result.class_probabilities, torch.softmax(class_logits[0], dim=0).numpy())
    assert sum(c > 10_000 for c in counts) >= 5  # real, busy windows (the last ones may be past the recording)
    batch = torch.zeros(2, predictor.bins, 2, predictor.size, predictor.size)
    assert predictor.model_for(batch) is predictor.model  # any other shape runs the eager model


def test_au_path_is_player_sync_and_classifier_waiting_only_for_them():
    from microexp_ros.bringup.demo import AU_PATH, override_parameters, select_nodes

    _, specs = resolve("hri", {"source": "bag"})
    path = select_nodes(specs, AU_PATH)
    assert [spec.name for spec in path] == list(AU_PATH)
    player = path[0]
    assert player.parameters["wait_for_ready"] == ["/time_sync/ready", "/au_classifier/ready"]
    assert (path[1].parameters["wait_for_subscribers"], path[2].parameters["wait_for_subscribers"]) == (1, 0)
    assert player.parameters["exit_when_done"] is True
    tuned = override_parameters(path, {"au_classifier": {"threads": 2}})
    assert tuned[2].parameters["threads"] == 2 and "threads" not in path[2].parameters
    with pytest.raises(ValueError, match="not in the graph"):
        select_nodes(specs, ("bag_player", "nonexistent"))
    with pytest.raises(ValueError, match="reconstruction, not in the graph"):
        override_parameters(path, {"reconstruction": {"threads": 1}})


def test_bench_au_measures_every_window_through_real_processes(ros_env):
    microexp = Path(sys.prefix) / "bin" / "microexp"
    proc = subprocess.run([str(microexp), "bench", "au", "--json", "--runs", "1", "--repeats", "5"], env=ros_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]  # exactly one JSON object, the launcher's lines on stderr
    result = json.loads(lines[0])
    for key in ("infer_p50_ms", "infer_p99_ms", "e2e_p50_ms", "e2e_p99_ms"):
        assert result[key] > 0, key
    assert result["e2e_graph"] == "bag_player -> time_sync -> au_classifier" and result["e2e_runs"] == 1
    # time_sync makes one window per RGB frame of the embedded bag (best-effort images may miss a few on a
    # loaded machine); every window it published is measured, counted as unmeasurable, or counted as lost.
    topics = json.loads(share_path("bags", "default.json").read_text())["topics"]
    frames, packets = topics["/rgb/image_raw"]["count"], topics["/event_camera/events"]["count"]
    counts = result["counts_by_run"][0]
    published = counts["/time_sync"]["out:samples"]
    assert 0.95 * frames <= published <= frames
    assert result["e2e_windows"] + result["e2e_unmeasured_windows"] + result["windows_lost"] == published
    assert counts["/collector"]["in:au_predictions"] == published - result["windows_lost"]
    assert counts["/collector"]["in:packets"] >= 0.95 * packets  # the windows' closing packets were seen
    assert result["errors"] == {} and result["graph_exit_codes"] == [0]
    assert result["e2e_cold"]["windows"] == 3 and result["e2e_p99_ms"] <= result["e2e_max_ms"]
    assert result["runner"] == "traced" and len(result["rows"]) == 5
    # The stages, split at the DDS source timestamps of time_sync's samples and of the predictions, are
    # measured for every window whose end-to-end time is; each lies inside the end-to-end time.
    stages, predictions = result["e2e_stages"], result["e2e_windows"] + result["e2e_unmeasured_windows"]
    assert set(stages) == {"sync", "classify", "deliver"} and stages["sync"]["windows"] == result["e2e_windows"]
    for stage in stages.values():
        assert stage["windows"] + stage["unmeasured"] == predictions
        assert 0 < stage["p50_ms"] <= stage["max_ms"] <= result["e2e_max_ms"]


def test_packet_stamp_read_from_the_serialized_message_equals_the_deserialized_one():
    from event_camera_msgs.msg import EventPacket
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    from microexp_ros.bringup.demo import serialized_stamp
    from microexp_ros.events.evt3 import Evt3Encoder
    from microexp_ros.ros.stamps import from_time_msg, to_time_msg

    data = Evt3Encoder(self_contained=True).encode(synthetic_events(128, 128, 0, 200 * MS))
    for stamp in (0, 1_767_225_601_016_666_667, 2**31 * 1_000_000_000 - 1):
        packet = EventPacket(header=Header(stamp=to_time_msg(stamp), frame_id="event_camera"), width=128,
                             height=128, encoding="evt3", seq=7)
        packet.events = data
        raw = serialize_message(packet)
        assert serialized_stamp(raw) == stamp == from_time_msg(deserialize_message(raw, EventPacket).header.stamp)
    with pytest.raises(ValueError, match="not a CDR message"):
        serialized_stamp(b"\x00\x01\x00")


def test_replay_is_caught_up_only_when_time_syncs_count_has_stopped_changing():
    """The graph is stopped once every sample came back as a prediction. Two reports from before time_sync's
    last samples can agree on an out-of-date count (the windows `bench au` used to count as lost), so
    time_sync's count must be the same in two consecutive reports."""
    from microexp_ros.bringup.demo import caught_up

    nodes = ("au_classifier",)
    sync_178, sync_180 = {"out:samples": 178}, {"out:samples": 180}
    seen_178, seen_180 = {"in:samples": 178}, {"in:samples": 180}
    # One report of 178 from each: time_sync may have published more since its report.
    assert not caught_up({"/time_sync": sync_178, "/au_classifier": seen_178}, {}, nodes, 178)
    assert not caught_up({"/time_sync": sync_180, "/au_classifier": seen_178}, {"/time_sync": sync_178}, nodes, 178)
    # time_sync is done (180 twice), but the classifier has not reported its last two samples yet ...
    assert not caught_up({"/time_sync": sync_180, "/au_classifier": seen_178}, {"/time_sync": sync_180}, nodes, 178)
    # ... nor have their predictions arrived.
    assert not caught_up({"/time_sync": sync_180, "/au_classifier": seen_180}, {"/time_sync": sync_180}, nodes, 178)
    assert caught_up({"/time_sync": sync_180, "/au_classifier": seen_180}, {"/time_sync": sync_180}, nodes, 180)
    # With reconstruction in the graph, it must have received every sample too.
    both = ("au_classifier", "reconstruction")
    assert not caught_up({"/time_sync": sync_180, "/au_classifier": seen_180, "/reconstruction": seen_178},
                         {"/time_sync": sync_180}, both, 180)
