"""The proof that the system works: the embedded bag through the full HRI graph, in separate processes.

`microexp demo` (the README's main job) replays the bag through bag_player → time_sync → face_region,
au_classifier, reconstruction, hri_bridge and reports what a robot behaviour would have received. The same
windows are computed offline here from the bag with the same model code; the online run must detect every
ground-truth micro-expression the offline evaluation detects, reconstruct as well, report no errors, restart
no node, and stop cleanly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from microexp_ros.data.typestore import typestore
from microexp_ros.eval.hri_report import GroundTruthEvent, WindowPrediction, score
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.window import window_slice
from microexp_ros.facs import MODEL_AUS
from microexp_ros.models.au_inference import ActivationFilter, AUPredictor
from microexp_ros.models.recon_inference import Reconstructor
from microexp_ros.resources import share_path
from microexp_ros.ros.runtime import TEARDOWN_SIGNAL, TEARDOWN_TIMEOUT_S

BAG = share_path("bags", "default")
SIDECAR = json.loads(share_path("bags", "default.json").read_text())


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@pytest.fixture(scope="module")
def recording():
    """Events (sensor time), RGB frames (host time) and ground truth of the embedded bag, read offline."""
    store = typestore()
    width, height = SIDECAR["resolutions"]["high"]["width"], SIDECAR["resolutions"]["high"]["height"]
    decoder = make_decoder(SIDECAR["encoding"], width, height)
    chunks, frames, truth = [], [], {}
    with Reader(BAG) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic not in ("/event_camera/events", "/rgb/image_raw", "/ground_truth/au"):
                continue
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/event_camera/events":
                chunks.append(decoder.decode(msg.events, msg.time_base).events)
            elif conn.topic == "/rgb/image_raw":
                frames.append((stamp_ns(msg.header.stamp), msg.data.reshape(msg.height, msg.width, 3)))
            else:
                for au in msg.active_aus:
                    truth.setdefault((msg.clip_id, int(au)), GroundTruthEvent(
                        msg.clip_id, int(au), stamp_ns(msg.onset), stamp_ns(msg.apex), stamp_ns(msg.offset)))
    return np.concatenate(chunks), frames, list(truth.values()), (width, height)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, ros_env):
    """`microexp demo --json` on the embedded bag: (exit code, metrics, report folder, the launcher's stderr)."""
    report = tmp_path_factory.mktemp("report")
    microexp = Path(sys.prefix) / "bin" / "microexp"
    proc = subprocess.run([str(microexp), "demo", "--json", "--report", str(report)], env=ros_env,
                          capture_output=True, text=True, timeout=300)
    try:  # --json: stdout is the one JSON object, the launcher's lines go to stderr
        metrics = json.loads(proc.stdout)
    except json.JSONDecodeError as error:
        raise AssertionError(f"microexp demo --json stdout is not one JSON object ({error}), exit "
                             f"{proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}") from error
    return proc.returncode, metrics, report, proc.stderr


def offline_au(recording) -> tuple[list[WindowPrediction], dict]:
    """What au_classifier computes for each RGB frame's trailing window, computed here with the same code."""
    events, frames, truth, (width, height) = recording
    config = yaml.safe_load(share_path("config", "models.yaml").read_text())["au_classifier"]["ros__parameters"]
    predictor = AUPredictor.from_file()
    activation = ActivationFilter(config["on_threshold"], config["off_threshold"], config["min_windows"])
    offset = SIDECAR["host_minus_sensor_ns"]
    predictions = []
    for host_ns, _ in frames:
        t1 = host_ns - offset
        t0 = t1 - predictor.window_ns
        if t0 < 0:
            continue
        result = predictor.predict(window_slice(events, t0, t1), t0, t1, roi=(0, 0, width, height),
                                   sensor_size=(width, height))
        active = activation.update(result.probabilities)
        predictions.append(WindowPrediction(host_ns, dict(zip(MODEL_AUS, result.probabilities.tolist())),
                                            frozenset(au for au, on in zip(MODEL_AUS, active) if on)))
    return predictions, score(truth, predictions)


def test_replay_detects_what_offline_evaluation_detects(demo_run, recording):
    metrics = demo_run[1]
    offline_predictions, offline = offline_au(recording)
    assert metrics["ground_truth_events"] == len(recording[2])
    assert metrics["windows"] >= len(offline_predictions), "windows were lost between time_sync and the robot"
    for au, expected in offline.items():
        online = metrics["per_au"].get(f"AU{au}", {"detected": 0})
        assert online["detected"] >= expected.detected, f"AU{au}: online {online} vs offline {expected}"


def test_replay_reconstructs_as_well_as_offline(demo_run, recording):
    _, metrics, report, _ = demo_run
    events, frames, _, (width, height) = recording
    reconstructor = Reconstructor.from_file()
    # The node reads the span the model was trained on, ending at each sample's end, joining samples if needed.
    offset, length = SIDECAR["host_minus_sensor_ns"], reconstructor.window_ns
    ssim = []
    for host_ns, rgb in frames:
        t1 = host_ns - offset
        t0 = t1 - length
        frame = reconstructor.reconstruct(window_slice(events, t0, t1), t0, t1, width, height)
        ssim.append(Reconstructor.quality(frame, rgb)["ssim"])
    assert metrics["quality_frames"] >= 0.95 * len(frames)
    assert metrics["ssim"] >= float(np.mean(ssim)) - 0.02
    assert (report / "recon_montage.png").is_file() and (report / "au_timeline.png").is_file()


def _top_frames(stderr: str) -> str:
    """The first frames of every thread in the native stacks the launcher logged (gdb), for failure messages."""
    return "\n".join(line for line in stderr.splitlines() if re.match(r"(Thread \d+ |#\d )", line))[-8000:]


def test_replay_is_clean(demo_run):
    code, metrics, report, stderr = demo_run
    launcher = "\n".join(line for line in stderr.splitlines() if line.startswith("[launch]"))
    assert code == 0, (f"demo exited {code}: errors {metrics['errors_by_kind']}, node exits "
                       f"{metrics['node_exit_codes']}, stop {metrics['stop_s']} s; the launcher's lines:\n"
                       f"{launcher}\nthe first frames of each thread of nodes slow to stop:\n{_top_frames(stderr)}")
    assert metrics["errors"] == 0, metrics["errors_by_kind"]
    # A node whose DDS teardown hung after its work (FastDDS, docs/robustness.md) ends by its limit: said here.
    cut = metrics["teardown_cut"]
    if cut:
        print(f"DDS teardown hung and was cut short in {cut}:\n{_top_frames(stderr)}")
    assert all(codes == [0] or (name in cut and codes == [-TEARDOWN_SIGNAL])
               for name, codes in metrics["node_exit_codes"].items()), metrics["node_exit_codes"]
    assert metrics["stop_s"] is not None and metrics["stop_s"] < (TEARDOWN_TIMEOUT_S + 2.0 if cut else 5.0)
    assert json.loads((report / "metrics.json").read_text())["windows"] == metrics["windows"]
