"""The model and HRI nodes as real processes fed real messages: online outputs equal the offline calls.

Each node runs as `python -m microexp_ros.nodes.<name>` with a params file; this test process talks to it
through its own rclpy node (a private context on the session's domain and DDS transport). Inputs are built from
real recordings (a DVXplorer recording of a person, a DAVIS346 recording with APS frames, a face photo),
encoded as time_sync encodes them; outputs are compared with `AUPredictor.predict`, `Reconstructor.reconstruct`
/ `quality`, the face detector + homography, and `hri.facs` called here on the same data. Malformed inputs must
show up in /diagnostics while the node keeps answering.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from hri_msgs.msg import FacialActionUnits, IdsList, NormalizedRegionOfInterest2D
from rclpy.executors import SingleThreadedExecutor
from rclpy.publisher import Publisher
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from microexp_ros.events.aedat4 import Aedat4File
from microexp_ros.events.array import empty_events
from microexp_ros.events.evt3 import Evt3Encoder
from microexp_ros.events.packetizer import Packetizer
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.window import crop, window_slice
from microexp_ros.face.detector import FaceDetector
from microexp_ros.face.homography import expand_box, homography_from_params, map_box
from microexp_ros.facs import MODEL_AUS, au_name
from microexp_ros.hri.facs import AUState, facs_arrays
from microexp_ros.models.au_inference import (BAF_DT_NS, ActivationFilter, AUPredictor, FrameHistory, WindowAverage,
                                              build_au_model, fuse)
from microexp_ros.models.cvae import CVAEConfig, ReconCVAE
from microexp_ros.models.recon_inference import Reconstructor, cvae_config_record
from microexp_ros.models.weights import save_model
from microexp_ros.msg import ActionUnit, AUPredictions, FaceRegion, ReconstructionQuality, SyncedSample
from microexp_ros.nodes.au_classifier import RGB_HISTORY_FRAMES
from microexp_ros.nodes.reconstruction import to_mono8
from microexp_ros.ros import qos
from microexp_ros.ros.image import numpy_to_image
from microexp_ros.ros.stamps import to_time_msg

MS = 1_000_000
MODELS_YAML = Path(__file__).resolve().parent.parent / "config" / "models.yaml"


class Graph:
    """This test's rclpy node plus the node processes under test; `close()` stops them with SIGINT."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("test_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.status: dict[str, dict[str, str]] = {}
        self.listen("/diagnostics", DiagnosticArray, qos.predictions_qos(),
                    lambda msg: self.status.update({s.name: {kv.key: kv.value for kv in s.values}
                                                    for s in msg.status}))

    def start(self, module: str, params: dict, remaps: dict[str, str] | None = None) -> subprocess.Popen:
        """Run node `module` (its node name is the module name) with config/models.yaml, then `params` over it."""
        params_file = self.tmp_path / f"{module}.yaml"
        params_file.write_text(yaml.safe_dump({module: {"ros__parameters": params}}))
        args = [sys.executable, "-m", f"microexp_ros.nodes.{module}", "--ros-args", "--params-file", str(MODELS_YAML),
                "--params-file", str(params_file)]
        for old, new in (remaps or {}).items():
            args += ["-r", f"{old}:={new}"]
        log = open(self.tmp_path / f"{module}.log", "w")
        process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((module, process))
        return process

    def listen(self, topic: str, msg_type: type, profile, callback: Callable | None = None) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, callback or received.append, profile)
        return received

    def spin_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            for module, process in self.processes:
                assert process.poll() is None, f"{module} exited with {process.returncode}: {self.log(module)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.executor.spin_once(timeout_sec=0.05)

    def publisher(self, topic: str, msg_type: type, profile, node_name: str, timeout: float = 30.0):
        """A publisher on `topic`, returned once the node under test subscribes to it."""
        pub = self.node.create_publisher(msg_type, topic, profile)
        self.spin_until(lambda: pub.get_subscription_count() > 0, timeout, f"{node_name} to subscribe to {topic}")
        return pub

    def matched(self, received_topic_subscriptions: list, timeout: float = 30.0) -> None:
        """Wait until each of our subscriptions on these topics has a publisher (the node under test)."""
        subs = [s for s in self.node.subscriptions if s.topic_name in received_topic_subscriptions]
        self.spin_until(lambda: all(s.get_publisher_count() > 0 for s in subs), timeout,
                        f"publishers on {received_topic_subscriptions}")
        self.spin_for(0.3)  # let the other side's discovery finish too

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def counter(self, node_name: str, key: str) -> int:
        return int(self.status.get(f"/{node_name}", {}).get(key, 0))

    def log(self, module: str) -> str:
        return (self.tmp_path / f"{module}.log").read_text()

    def close(self) -> None:
        for module, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for module, process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def graph(ros_env, tmp_path):
    g = Graph(ros_env, tmp_path)
    yield g
    g.close()
    for module, process in g.processes:
        assert process.returncode == 0, f"{module} did not exit cleanly on SIGINT: {g.log(module)}"


def sample(events: np.ndarray, t0: int, t1: int, width: int, height: int, seq: int, rgb: Image | None = None,
           encoding: str = "evt3") -> SyncedSample:
    """A SyncedSample as time_sync builds it: the window's events in one self-contained EVT3 packet."""
    packet = EventPacket(header=Header(stamp=to_time_msg(t0), frame_id="event_camera"), height=height, width=width,
                         seq=seq, time_base=0, encoding=encoding, is_bigendian=False)
    packet.events = Evt3Encoder(self_contained=True).encode(events)
    msg = SyncedSample(header=Header(stamp=to_time_msg(t1), frame_id="camera"), has_rgb=rgb is not None,
                       events=packet, window_start=to_time_msg(t0), window_end=to_time_msg(t1),
                       sensor_time_start_ns=t0, sensor_time_end_ns=t1, event_count=int(events.size),
                       on_count=int(np.count_nonzero(events["p"])), sequence=seq)
    if rgb is not None:
        msg.rgb = rgb
    return msg


def recording(path: Path, start_s: float = 5.0) -> np.ndarray:
    """All events of an AEDAT4 file, moved so the first is at `start_s` (a camera's clock starts near 0)."""
    events = read_all(Aedat4File(path))["events"].events.copy()
    events["t"] -= int(events["t"][0]) - int(start_s * 1e9)
    return events


# --- au_classifier -------------------------------------------------------------------------------------------

AU_WINDOW_NS = 100 * MS
AU_CONFIG = {"arch": "snn", "modality": "events", "in_channels": 2, "bins": 4, "size": 32,
             "channels": [8, 16, 16], "hidden": 32, "window_ns": AU_WINDOW_NS}


def responsive_snn(seed: int, gain: float = 6.0, config: dict = AU_CONFIG) -> torch.nn.Module:
    """A small SNN whose output depends on its input: at initialisation it barely spikes, so its weights are
    scaled up (then windows give different probabilities, and matching the offline call means something)."""
    torch.manual_seed(seed)
    model = build_au_model(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(gain)
    return model


# Twins of the ensembles: the net-polarity encoding, and the filtered-events one (the shipped ensemble's kind)
# with a support time other than the default, so a node that ignored the weights' `baf_dt_ns` would differ.
TWINS = {"ensemble": {"in_channels": 3, "encoding": "polarity_net"},
         "ensemble_baf": {"in_channels": 4, "encoding": "polarity_baf", "baf_dt_ns": 1_000_000}}


def au_weights(tmp_path: Path, kind: str) -> Path:
    """snn_test.safetensors: one responsive SNN, or an ensemble of one and a twin fed another encoding."""
    out = tmp_path / "snn_test.safetensors"
    if kind == "single":
        return save_model(out, responsive_snn(0), AU_CONFIG, {"seed": 0, "gain": 6})
    from microexp_ros.train.au import combine_ensemble

    twin_config = {**AU_CONFIG, **TWINS[kind]}
    members = [save_model(tmp_path / "members" / "pol.safetensors", responsive_snn(0), AU_CONFIG, {"seed": 0}),
               save_model(tmp_path / "members" / "twin.safetensors", responsive_snn(1, config=twin_config),
                          twin_config, {"seed": 1})]
    combine_ensemble(members, out, "test ensemble")
    return out


@pytest.mark.parametrize("kind", ["single", *TWINS])
def test_au_classifier_publishes_what_the_offline_predictor_computes(graph, real_data, tmp_path, kind):
    weights = au_weights(tmp_path, kind)
    events = recording(real_data / "tonic" / "sample.aedat4")  # a person's head and shoulders, 320x240
    roi, size = (80, 40, 160, 160), (320, 240)
    graph.start("au_classifier", {"model_path": str(weights), "roi": list(roi), "on_threshold": 0.5,
                                  "off_threshold": 0.45, "min_windows": 2, "face_id": "f00003"},
                {"samples": "/test/samples"})
    predictions = graph.listen("/au_predictions", AUPredictions, qos.predictions_qos())
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "au_classifier")
    graph.matched(["/au_predictions"])

    t_first = int(events["t"][0])
    bounds = [(t_first + k * AU_WINDOW_NS, t_first + (k + 1) * AU_WINDOW_NS) for k in range(5)]
    bounds.append((t_first + 10 * AU_WINDOW_NS, t_first + 11 * AU_WINDOW_NS))  # after the recording: empty
    good = [sample(window_slice(events, t0, t1), t0, t1, *size, seq=k) for k, (t0, t1) in enumerate(bounds)]
    malformed = sample(window_slice(events, *bounds[0]), *bounds[0], *size, seq=100, encoding="bogus")
    too_short = sample(window_slice(events, bounds[1][0], bounds[1][0] + 50 * MS), bounds[1][0],
                       bounds[1][0] + 50 * MS, *size, seq=101)
    backwards = sample(empty_events(0), bounds[2][1], bounds[2][0], *size, seq=102)
    for sequence, msg in enumerate(good[:3] + [malformed, too_short, backwards] + good[3:]):
        msg.sequence = sequence  # as time_sync numbers them: no gap
        pub.publish(msg)
    graph.spin_until(lambda: len(predictions) == len(good), 60, "AU predictions of every good window")
    graph.spin_until(lambda: graph.counter("au_classifier", "error/bad_events") == 1
                     and graph.counter("au_classifier", "drop/window_length") == 1
                     and graph.counter("au_classifier", "error/bad_window") == 1
                     and graph.counter("au_classifier", "count/empty_windows") == 1, 10, "diagnostics")
    assert graph.counter("au_classifier", "drop/upstream_sequence_gap") == 0

    torch.set_num_threads(1)
    predictor = AUPredictor.from_file(weights)
    hysteresis = ActivationFilter(0.5, 0.45, 2)
    for (t0, t1), msg in zip(bounds, predictions):
        offline = predictor.predict(window_slice(events, t0, t1), t0, t1, roi, size)
        active = hysteresis.update(offline.probabilities)
        assert [u.number for u in msg.action_units] == list(MODEL_AUS)
        assert [u.name for u in msg.action_units] == [au_name(n) for n in MODEL_AUS]
        np.testing.assert_allclose([u.probability for u in msg.action_units], offline.probabilities, rtol=0,
                                   atol=1e-6)
        assert [u.active for u in msg.action_units] == active.tolist()
        assert msg.header.stamp == to_time_msg(t1) and msg.window_end == to_time_msg(t1)
        assert msg.window_start == to_time_msg(t0) and msg.face_id == "f00003"
        assert msg.model_name == "snn_test" and msg.inference_latency_ms > 0
        assert msg.modality == AUPredictions.MODALITY_EVENTS
    assert good[-1].event_count == 0 and len(window_slice(events, *bounds[-1])) == 0
    # The model ran (traced) on a synthetic window of twice its input size before the node subscribed.
    assert f"warm-up (traced model) on a synthetic {2 * AU_CONFIG['size']}x{2 * AU_CONFIG['size']} window" \
        in graph.log("au_classifier")
    published = np.array([[u.probability for u in msg.action_units] for msg in predictions])
    assert np.ptp(published, axis=0).max() > 0.1  # the windows really gave different outputs
    if kind == "ensemble_baf":   # the weights' support time mattered: the default one gives other outputs
        predictor.baf_dt_ns = BAF_DT_NS
        default_dt = [predictor.predict(window_slice(events, t0, t1), t0, t1, roi, size).probabilities
                      for t0, t1 in bounds[:3]]
        assert np.abs(np.array(default_dt) - published[:3]).max() > 1e-3
    assert any(u.active for u in predictions[-2].action_units)  # and the hysteresis switched some AUs on


def test_au_classifier_windows_a_raw_event_stream_itself(graph, real_data, tmp_path):
    """Events-only mode, and the probabilities averaged over the last 3 windows (`average_windows`) of each
    window fused with its mirror image (`flip_average`)."""
    weights = save_model(tmp_path / "snn_test.safetensors", responsive_snn(2), AU_CONFIG, {})
    events = recording(real_data / "tonic" / "sample.aedat4")
    roi, size, offset = (80, 40, 160, 160), (320, 240), 10**9  # host clock = sensor clock + 1 s
    graph.start("au_classifier", {"model_path": str(weights), "roi": list(roi), "events_only_topic": "/test/events",
                                  "window_rate_hz": 10.0, "average_windows": 3, "flip_average": True})
    predictions = graph.listen("/au_predictions", AUPredictions, qos.predictions_qos())
    pub = graph.publisher("/test/events", EventPacket, qos.predictions_qos(), "au_classifier")
    graph.matched(["/au_predictions"])

    packetizer = Packetizer(time_threshold_ns=10 * MS)
    packets = packetizer.add(events) + packetizer.flush()
    for seq, packet in enumerate(packets):
        msg = EventPacket(header=Header(stamp=to_time_msg(packet.first_t + offset), frame_id="event_camera"),
                          height=size[1], width=size[0], seq=seq, time_base=0, encoding="evt3", is_bigendian=False)
        msg.events = packet.data
        if seq == 20:
            bogus = EventPacket(header=msg.header, height=240, width=320, seq=seq, encoding="bogus")
            bogus.events = packet.data
            pub.publish(bogus)
        pub.publish(msg)
        graph.spin_for(0.005)
    first, last = int(events["t"][0]), int(events["t"][-1])
    bounds = [(first + k * AU_WINDOW_NS, first + (k + 1) * AU_WINDOW_NS)
              for k in range((last - first) // AU_WINDOW_NS)]
    graph.spin_until(lambda: len(predictions) == len(bounds), 60, f"{len(bounds)} predictions")
    graph.spin_until(lambda: graph.counter("au_classifier", "error/bad_events") == 1  # and none lost on the way:
                     and graph.counter("au_classifier", "count/in:packets") == len(packets) + 1, 10, "diagnostics")
    predictor, average = AUPredictor.from_file(weights, flip_average=True), WindowAverage(3)
    unflipped = AUPredictor.from_file(weights)
    single, flip_moved = [], 0.0
    for (t0, t1), msg in zip(bounds, predictions):
        offline = predictor.predict(window_slice(events, t0, t1), t0, t1, roi, size)
        plain = unflipped.predict(window_slice(events, t0, t1), t0, t1, roi, size)
        flip_moved = max(flip_moved, float(np.abs(offline.probabilities - plain.probabilities).max()))
        single.append(offline.probabilities)
        np.testing.assert_allclose([u.probability for u in msg.action_units], average.update(offline.probabilities),
                                   rtol=0, atol=1e-6)
        assert msg.window_start == to_time_msg(t0 + offset) and msg.header.stamp == to_time_msg(t1 + offset)
    np.testing.assert_allclose([u.probability for u in predictions[3].action_units], np.mean(single[1:4], axis=0),
                               rtol=0, atol=1e-6)
    assert np.abs(np.array(single[3]) - np.mean(single[1:4], axis=0)).max() > 1e-3  # averaging changed something
    assert flip_moved > 1e-3   # the mirror image changed something


def test_au_classifier_crops_to_the_latest_face_region(graph, real_data, tmp_path):
    weights = save_model(tmp_path / "snn_test.safetensors", responsive_snn(1), AU_CONFIG, {})
    events = recording(real_data / "tonic" / "sample.aedat4")
    graph.start("au_classifier", {"model_path": str(weights), "use_face_region": True,
                                  "face_region_max_age_s": 0.5, "min_windows": 1},
                {"samples": "/test/samples", "face_region": "/test/face_region"})
    predictions = graph.listen("/au_predictions", AUPredictions, qos.predictions_qos())
    regions = graph.publisher("/test/face_region", FaceRegion, qos.predictions_qos(), "au_classifier")
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "au_classifier")
    graph.matched(["/au_predictions"])

    t0 = int(events["t"][0]) + 100 * MS
    t1 = t0 + AU_WINDOW_NS
    window = sample(window_slice(events, t0, t1), t0, t1, 320, 240, seq=0)
    pub.publish(window)  # no face region yet
    graph.spin_until(lambda: graph.counter("au_classifier", "drop/no_face_region") == 1, 20, "no_face_region")
    box = (96, 30, 128, 150)
    region = FaceRegion(header=Header(stamp=to_time_msg(t1 - 30 * MS)), face_id="f00042", detected=True,
                        confidence=0.9)
    region.event_roi.x_offset, region.event_roi.y_offset, region.event_roi.width, region.event_roi.height = box
    regions.publish(region)
    graph.spin_until(lambda: graph.counter("au_classifier", "count/in:face_region") == 1, 20, "the face region")
    late = sample(window_slice(events, t0 + AU_WINDOW_NS, t1 + AU_WINDOW_NS), t0 + AU_WINDOW_NS,
                  t1 + 6 * AU_WINDOW_NS, 320, 240, seq=1)
    late.window_end = to_time_msg(t1 + 6 * AU_WINDOW_NS)  # 0.6 s after the region: stale
    late.sensor_time_end_ns = t1 + AU_WINDOW_NS
    pub.publish(late)
    window.sequence = 2
    pub.publish(window)
    graph.spin_until(lambda: len(predictions) == 1, 30, "a prediction")
    graph.spin_until(lambda: graph.counter("au_classifier", "drop/stale_face_region") == 1, 10, "stale region")
    offline = AUPredictor.from_file(weights).predict(window_slice(events, t0, t1), t0, t1, box, (320, 240))
    got = predictions[0]
    assert got.face_id == "f00042"
    np.testing.assert_allclose([u.probability for u in got.action_units], offline.probabilities, rtol=0, atol=1e-6)
    whole = AUPredictor.from_file(weights).predict(window_slice(events, t0, t1), t0, t1, (0, 0, 320, 240),
                                                   (320, 240))
    assert np.abs(whole.probabilities - offline.probabilities).max() > 1e-3  # the crop mattered


def event_frame(events: np.ndarray, t0: int, t1: int, size: tuple[int, int]) -> np.ndarray:
    """A BGR frame of the events in [t0, t1) (counts, scaled): a webcam stand-in that changes with the scene."""
    inside = window_slice(events, t0, t1)
    counts = np.zeros((size[1], size[0]), np.float32)
    np.add.at(counts, (inside["y"].astype(np.intp), inside["x"].astype(np.intp)), 1.0)
    gray = np.clip(counts * 60.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def test_au_classifier_fuses_events_with_an_rgb_model(graph, real_data, tmp_path):
    """fuse_rgb: the published probabilities are `fuse` of the events model and the RGB model over the frames
    the samples carried (kept across samples), computed here offline; a sample without a usable frame is
    classified from events alone."""
    events_weights = save_model(tmp_path / "snn_test.safetensors", responsive_snn(0), AU_CONFIG, {})
    rgb_config = {**AU_CONFIG, "arch": "cnn", "modality": "rgb", "in_channels": 1}
    torch.manual_seed(3)
    rgb_model = build_au_model(rgb_config)
    with torch.no_grad():
        for param in rgb_model.parameters():
            if param.dim() > 1:
                param.mul_(4.0)
    rgb_weights = save_model(tmp_path / "cnn_test.safetensors", rgb_model, rgb_config, {})
    events = recording(real_data / "tonic" / "sample.aedat4")
    roi, rgb_roi, size = (80, 40, 160, 160), (60, 30, 200, 180), (320, 240)
    graph.start("au_classifier", {"model_path": str(events_weights), "rgb_model_path": str(rgb_weights),
                                  "fuse_rgb": True, "roi": list(roi), "rgb_roi": list(rgb_roi), "min_windows": 1},
                {"samples": "/test/samples"})
    predictions = graph.listen("/au_predictions", AUPredictions, qos.predictions_qos())
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "au_classifier")
    graph.matched(["/au_predictions"])

    frame_ns = 33_333_333
    ends = [int(events["t"][0]) + 150 * MS + k * frame_ns for k in range(9)]
    frames = [event_frame(events, t1 - frame_ns, t1, size) for t1 in ends]
    msgs = []
    for k, t1 in enumerate(ends):
        rgb = numpy_to_image(frames[k], "bgr8", Header(stamp=to_time_msg(t1)))
        if k == 6:
            rgb.encoding = "yuv9"   # unusable: counted, the window is classified from events alone
        msgs.append(sample(window_slice(events, t1 - AU_WINDOW_NS, t1), t1 - AU_WINDOW_NS, t1, *size, seq=k,
                           rgb=None if k == 7 else rgb))
    for msg in msgs:
        pub.publish(msg)
    graph.spin_until(lambda: len(predictions) == len(msgs), 60, "AU predictions of every window")
    graph.spin_until(lambda: graph.counter("au_classifier", "count/events_only_windows") == 2
                     and graph.counter("au_classifier", "error/bad_rgb") == 1, 10, "diagnostics")

    torch.set_num_threads(1)
    ev, rgb_predictor = AUPredictor.from_file(events_weights), AUPredictor.from_file(rgb_weights)
    history, short = FrameHistory(RGB_HISTORY_FRAMES), 0
    for k, (t1, msg) in enumerate(zip(ends, predictions)):
        t0 = t1 - AU_WINDOW_NS
        alone = ev.predict(window_slice(events, t0, t1), t0, t1, roi, size)
        if k in (6, 7):
            assert msg.modality == AUPredictions.MODALITY_EVENTS and msg.model_name == "snn_test"
            want = alone.probabilities
        else:
            history.add(t1, frames[k])
            kept, times = history.arrays()
            short += int(times[0] > t0)
            want = fuse([alone, rgb_predictor.predict_frames(kept, times, t0, t1, rgb_roi)]).probabilities
            assert msg.modality == AUPredictions.MODALITY_EVENTS_RGB and msg.model_name == "snn_test+cnn_test"
            assert np.abs(want - alone.probabilities).max() > 1e-3   # the RGB model moved the output
        np.testing.assert_allclose([u.probability for u in msg.action_units], want, rtol=0, atol=1e-6)
    assert 0 < short < len(msgs) - 2   # the first windows reach back before the first frame, later ones do not
    graph.spin_until(lambda: graph.counter("au_classifier", "count/rgb_history_short") == short, 10, "short count")


def test_au_classifier_refuses_missing_or_wrong_weights(ros_env, tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    rgb_config = {**AU_CONFIG, "arch": "cnn", "modality": "rgb", "in_channels": 1}
    rgb_model = save_model(tmp_path / "cnn_rgb.safetensors", build_au_model(rgb_config), rgb_config, {})
    events_model = save_model(tmp_path / "snn_events.safetensors", build_au_model(AU_CONFIG), AU_CONFIG, {})
    cases = [("-p", f"model_path:={missing}"), ("-p", f"model_path:={rgb_model}"),
             ("-p", f"model_path:={events_model}", "-p", "fuse_rgb:=true", "-p", f"rgb_model_path:={events_model}")]
    runs = [subprocess.Popen([sys.executable, "-m", "microexp_ros.nodes.au_classifier", "--ros-args", *args],
                             env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args in cases]  # all at once: each imports torch
    (_, missing_err), (_, rgb_err), (_, fuse_err) = (run.communicate(timeout=90) for run in runs)
    assert [run.returncode for run in runs] == [1, 1, 1]
    assert "weights file not found" in missing_err and str(missing) in missing_err
    assert "take rgb input; au_classifier needs an events model" in rgb_err
    assert "rgb_model_path 'snn_events' takes events input, not rgb" in fuse_err


# --- reconstruction ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyframe", [False, True], ids=["events_only", "keyframe"])
def test_reconstruction_publishes_the_offline_frame_and_its_quality(graph, real_data, tmp_path, keyframe):
    torch.manual_seed(1)
    cfg = CVAEConfig(bins=5, width=8, latent=4, keyframe=keyframe)
    weights = save_model(tmp_path / "cvae_test.safetensors", ReconCVAE(cfg), cvae_config_record(cfg), {})
    path = real_data / "event_vision_library" / "sample.aedat4"  # DAVIS346: events + APS frames, one pixel grid
    raw = read_all(Aedat4File(path))["events"].events
    shift = int(raw["t"][0]) - 5_000_000_000
    events = raw.copy()
    events["t"] -= shift
    frames = [f.pixels.reshape(260, 346) for f in Aedat4File(path).frames()][1:]
    frame_t = [f.t - shift for f in Aedat4File(path).frames()][1:]
    roi = (5, 2, 336, 256)
    graph.start("reconstruction", {"model_path": str(weights), "roi": list(roi), "rgb_roi": list(roi)},
                {"samples": "/test/samples"})
    images = graph.listen("/reconstruction/image", Image, qos.image_qos())
    scores = graph.listen("/reconstruction/quality", ReconstructionQuality, qos.predictions_qos())
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "reconstruction")
    graph.matched(["/reconstruction/image", "/reconstruction/quality"])

    window, (x, y, w, h) = 40 * MS, roi
    sent = []  # (message, t0, t1, reference frame or None when the RGB is unusable)
    for k, (gray, t1) in enumerate(zip(frames, frame_t)):
        rgb = numpy_to_image(gray, "mono8", Header(stamp=to_time_msg(t1)))
        sent.append((sample(window_slice(events, t1 - window, t1), t1 - window, t1, 346, 260, seq=k, rgb=rgb),
                     t1 - window, t1, gray))
    t1 = frame_t[0] + 5 * MS
    broken = sample(window_slice(events, t1 - window, t1), t1 - window, t1, 346, 260, seq=9,
                    rgb=numpy_to_image(frames[0], "mono8"))
    broken.rgb.height = 300  # wrong image size: its data no longer covers it
    sent.insert(1, (broken, t1 - window, t1, None))
    # What the node must do: keyframe models use the previous usable RGB crop, and skip windows before one.
    torch.set_num_threads(1)
    offline = Reconstructor.from_file(weights)
    expected_images, expected_scores, previous = [], [], None
    for msg, t0, t1, gray in sent:
        if keyframe and previous is None:
            previous = gray[y:y + h, x:x + w]
            continue
        key = previous if keyframe else None
        pred = offline.reconstruct(crop(window_slice(events, t0, t1), x, y, w, h), t0, t1, w, h, keyframe=key)
        expected_images.append((t1, to_mono8(pred)))
        if gray is not None:
            expected_scores.append((t1, Reconstructor.quality(pred, gray[y:y + h, x:x + w])))
            previous = gray[y:y + h, x:x + w]
    for msg, *_ in sent:
        pub.publish(msg)
    graph.spin_until(lambda: len(images) == len(expected_images) and len(scores) == len(expected_scores), 60,
                     "images and scores")
    graph.spin_until(lambda: graph.counter("reconstruction", "error/bad_rgb") == 1
                     and graph.counter("reconstruction", "drop/no_keyframe") == int(keyframe), 10, "diagnostics")

    for (t1, want), image in zip(expected_images, images):
        assert (image.width, image.height, image.encoding) == (w, h, "mono8")
        assert image.header.stamp == to_time_msg(t1)
        assert np.array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(h, w), want)
    for (t1, want), score in zip(expected_scores, scores):
        assert score.header.stamp == to_time_msg(t1) and score.has_reference
        assert np.allclose([score.ssim, score.psnr, score.mse], [want["ssim"], want["psnr"], want["mse"]],
                           rtol=1e-5, atol=1e-6)
    assert len({img.tobytes() for _, img in expected_images}) == len(expected_images)  # windows differ
    assert f"warm-up on a synthetic {w}x{h} window" in graph.log("reconstruction")  # the roi's size, at start-up


def test_reconstruction_reads_a_model_window_longer_than_its_samples(graph, real_data, tmp_path):
    """A model trained on 100 ms windows fed 40 ms samples: the node joins the samples' events and publishes
    what the model makes of the 100 ms before each sample's end (the first two reach back before the
    recording's first event: partial, as offline)."""
    torch.manual_seed(2)
    cfg = CVAEConfig(bins=5, width=8, latent=4)
    weights = save_model(tmp_path / "cvae_100ms.safetensors", ReconCVAE(cfg), cvae_config_record(cfg),
                         {"train": {"window_ns": 100 * MS}})
    raw = read_all(Aedat4File(real_data / "event_vision_library" / "sample.aedat4"))["events"].events
    events = raw.copy()
    events["t"] -= int(raw["t"][0]) - 5_000_000_000
    roi = (5, 2, 336, 256)
    graph.start("reconstruction", {"model_path": str(weights), "roi": list(roi)}, {"samples": "/test/samples"})
    images = graph.listen("/reconstruction/image", Image, qos.image_qos())
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "reconstruction")
    graph.matched(["/reconstruction/image"])

    start, (x, y, w, h) = int(events["t"][0]), roi
    ends = [start + k * 40 * MS for k in range(1, 5)]   # the recording spans 170 ms
    for k, t1 in enumerate(ends):
        pub.publish(sample(window_slice(events, t1 - 40 * MS, t1), t1 - 40 * MS, t1, 346, 260, seq=k))
    offline = Reconstructor.from_file(weights)
    torch.set_num_threads(1)
    expected = [(t1, to_mono8(offline.reconstruct(crop(window_slice(events, t1 - 100 * MS, t1), x, y, w, h),
                                                  t1 - 100 * MS, t1, w, h))) for t1 in ends]
    graph.spin_until(lambda: len(images) == len(expected), 60, "images")
    graph.spin_until(lambda: graph.counter("reconstruction", "count/partial_history") == 2, 10, "diagnostics")
    for (t1, want), image in zip(expected, images):
        assert image.header.stamp == to_time_msg(t1)
        assert np.array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(h, w), want)
    only_last_sample = to_mono8(offline.reconstruct(crop(window_slice(events, ends[-1] - 40 * MS, ends[-1]), x, y, w,
                                                         h), ends[-1] - 100 * MS, ends[-1], w, h))
    assert not np.array_equal(expected[-1][1], only_last_sample)   # the earlier samples' events count


# --- visualizer ----------------------------------------------------------------------------------------------


def test_visualizer_draws_a_prediction_that_overtook_its_window(graph, real_data):
    """The visualizer renders every sample and falls behind under load, so a prediction can arrive before its
    window: it waits for it (up to `history` predictions); one that waits too long, or whose window is older
    than every held one, is counted as a drop."""
    events = recording(real_data / "tonic" / "sample.aedat4")
    graph.start("visualizer", {"history": 3}, {"samples": "/test/samples"})
    overlays = graph.listen("/visualizer/au_overlay", Image, qos.image_qos())
    predictions = graph.publisher("/au_predictions", AUPredictions, qos.predictions_qos(), "visualizer")
    samples = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "visualizer")
    graph.matched(["/visualizer/au_overlay"])

    def prediction(end: int) -> AUPredictions:
        return AUPredictions(header=Header(stamp=to_time_msg(end), frame_id="camera"), face_id="f00001",
                             window_end=to_time_msg(end),
                             action_units=[ActionUnit(number=n, name=au_name(n), probability=0.7, active=True,
                                                      intensity=float("nan")) for n in MODEL_AUS])

    window = 100 * MS
    ends = [int(events["t"][0]) + (k + 1) * window for k in range(6)]
    predictions.publish(prediction(ends[0]))
    graph.spin_until(lambda: graph.counter("visualizer", "count/in:au_predictions") == 1, 10, "the prediction")
    samples.publish(sample(window_slice(events, ends[0] - window, ends[0]), ends[0] - window, ends[0], 320, 240, seq=0))
    graph.spin_until(lambda: len(overlays) == 1, 20, "the overlay of the waiting prediction")
    assert overlays[0].header.stamp == to_time_msg(ends[0]) and graph.counter("visualizer", "drop/window_not_held") == 0
    for end in ends[2:]:   # four predictions wait for windows that never come: the first is pushed out
        predictions.publish(prediction(end))
    predictions.publish(prediction(ends[0] - window))   # older than the held window
    graph.spin_until(lambda: graph.counter("visualizer", "drop/window_not_held") == 2, 10, "two drops")
    assert len(overlays) == 1


# --- face_region ---------------------------------------------------------------------------------------------

def start_face_region(graph: Graph, params: dict, face_id: str) -> tuple[list, list, Publisher]:
    """Start face_region on /test/samples; (its regions, its ROIs of `face_id`, the samples publisher), matched."""
    roi_topic = f"/humans/faces/{face_id}/roi"
    graph.start("face_region", params, {"samples": "/test/samples"})
    regions = graph.listen("/face_region/region", FaceRegion, qos.predictions_qos())
    rois = graph.listen(roi_topic, NormalizedRegionOfInterest2D, qos.predictions_qos())
    pub = graph.publisher("/test/samples", SyncedSample, qos.samples_qos(), "face_region")
    graph.matched(["/face_region/region", roi_topic])
    return regions, rois, pub


def test_face_region_maps_a_detected_face_into_event_pixels(graph, real_data):
    photo = cv2.imread(str(real_data / "pyfeat" / "single_face.jpg"))
    homography = [0.5, 0.0, 10.0, 0.0, 0.5, 20.0, 0.0, 0.0, 1.0]
    regions, rois, pub = start_face_region(graph, {"homography": homography, "margin": 0.1, "face_id": "f00001"},
                                           "f00001")

    stamp = 7 * 10**9
    rgb = numpy_to_image(photo, "bgr8", Header(stamp=to_time_msg(stamp), frame_id="rgb_camera"))
    good = sample(empty_events(0), stamp - 100 * MS, stamp, 640, 480, seq=0, rgb=rgb)
    no_rgb = sample(empty_events(0), stamp - 100 * MS, stamp, 640, 480, seq=1)
    odd = sample(empty_events(0), stamp - 100 * MS, stamp, 640, 480, seq=2, rgb=numpy_to_image(photo, "bgr8"))
    odd.rgb.encoding = "yuv422"
    for msg in (no_rgb, odd, good):
        pub.publish(msg)
    graph.spin_until(lambda: regions and rois, 60, "a face region")
    graph.spin_until(lambda: graph.counter("face_region", "drop/no_rgb") == 1
                     and graph.counter("face_region", "error/bad_image") == 1, 10, "diagnostics")

    face = FaceDetector().detect(photo)[0]
    rgb_box = expand_box(face.box, 0.1, (572, 562))
    event_box = map_box(homography_from_params(homography), rgb_box, (640, 480))
    region = regions[0]
    assert region.detected and region.face_id == "f00001"
    assert region.header.stamp == to_time_msg(stamp)
    got_rgb = (region.rgb_roi.x_offset, region.rgb_roi.y_offset, region.rgb_roi.width, region.rgb_roi.height)
    got_event = (region.event_roi.x_offset, region.event_roi.y_offset, region.event_roi.width,
                 region.event_roi.height)
    assert got_rgb == rgb_box and got_event == event_box
    # By hand: the event box is the RGB box halved and shifted by (10, 20).
    assert abs(got_event[0] - (rgb_box[0] / 2 + 10)) <= 1 and abs(got_event[1] - (rgb_box[1] / 2 + 20)) <= 1
    assert abs(got_event[2] - rgb_box[2] / 2) <= 1 and abs(got_event[3] - rgb_box[3] / 2) <= 1
    assert region.confidence == pytest.approx(face.confidence, abs=1e-6)
    roi = rois[0]
    assert roi.xmin == pytest.approx(rgb_box[0] / 572) and roi.ymax == pytest.approx((rgb_box[1] + rgb_box[3]) / 562)


def test_face_region_without_rgb_publishes_the_static_region(graph):
    regions, rois, pub = start_face_region(graph, {"source": "static", "static_region": [100, 60, 120, 140]},
                                           "f00000")
    stamp = 3 * 10**9
    pub.publish(sample(empty_events(0), stamp - 100 * MS, stamp, 200, 150, seq=0))  # region exceeds this sensor
    pub.publish(sample(empty_events(0), stamp - 100 * MS, stamp, 320, 240, seq=1))
    graph.spin_until(lambda: regions and rois, 30, "the static region")
    graph.spin_until(lambda: graph.counter("face_region", "error/static_region_outside_sensor") == 1, 10,
                     "diagnostics")
    region = regions[0]
    assert not region.detected and region.header.stamp == to_time_msg(stamp)
    r = region.event_roi
    assert (r.x_offset, r.y_offset, r.width, r.height) == (100, 60, 120, 140)
    assert (rois[0].xmin, rois[0].ymin) == (pytest.approx(100 / 320), pytest.approx(60 / 240))
    assert (rois[0].xmax, rois[0].ymax) == (pytest.approx(220 / 320), pytest.approx(200 / 240))


# --- hri_bridge ----------------------------------------------------------------------------------------------

def test_hri_bridge_fills_facs_slots_and_tracks_faces(graph):
    graph.start("hri_bridge", {"default_face_id": "f00000", "face_timeout_s": 1.0})
    facs = {face: graph.listen(f"/humans/faces/{face}/facs", FacialActionUnits, qos.predictions_qos())
            for face in ("f00000", "f00007")}
    tracked = graph.listen("/humans/faces/tracked", IdsList, qos.predictions_qos())
    pub = graph.publisher("/au_predictions", AUPredictions, qos.predictions_qos(), "hri_bridge")

    rng = np.random.default_rng(3)
    probs = {face: rng.uniform(0, 1, len(MODEL_AUS)).astype(np.float32) for face in facs}

    def prediction(face_id: str, probabilities, numbers=MODEL_AUS) -> AUPredictions:
        return AUPredictions(header=Header(stamp=to_time_msg(10**9), frame_id="camera"), face_id=face_id,
                             action_units=[ActionUnit(number=n, name="", probability=float(p), active=bool(p > 0.5),
                                                      intensity=float("nan"))
                                           for n, p in zip(numbers, probabilities)])

    bad = prediction("", [0.5], numbers=[120])
    bad_id = prediction("not a valid id", [0.5], numbers=[12])
    pub.publish(bad)
    pub.publish(bad_id)
    # Per-face publishers appear with the first prediction: repeat until our subscriptions matched them.
    deadline = time.monotonic() + 30
    while not (facs["f00000"] and facs["f00007"]):
        assert time.monotonic() < deadline, "no FacialActionUnits arrived"
        pub.publish(prediction("", probs["f00000"]))
        pub.publish(prediction("f00007", probs["f00007"]))
        graph.spin_for(0.1)
    for face, received in facs.items():
        msg = received[-1]
        intensity, confidence = np.asarray(msg.intensity), np.asarray(msg.confidence)
        assert len(intensity) == len(confidence) == 99
        for k, au in enumerate(MODEL_AUS):  # slot = FACS number
            assert confidence[au] == probs[face][k]
            assert intensity[au] == (1.0 if probs[face][k] > 0.5 else 0.0)
        others = np.setdiff1d(np.arange(99), MODEL_AUS)
        assert not confidence[others].any() and not intensity[others].any()
        want_i, want_c = facs_arrays(AUState(n, p, p > 0.5) for n, p in zip(MODEL_AUS, probs[face]))
        assert np.array_equal(intensity, want_i) and np.array_equal(confidence, want_c)
    assert sorted(tracked[-1].ids) == ["f00000", "f00007"]
    graph.spin_until(lambda: graph.counter("hri_bridge", "error/bad_prediction") == 1
                     and graph.counter("hri_bridge", "error/bad_face_id") == 1, 10, "diagnostics")
    # Nothing more: both faces are forgotten after face_timeout_s.
    graph.spin_until(lambda: tracked[-1].ids == [], 10, "faces to time out")
    graph.spin_until(lambda: graph.counter("hri_bridge", "count/forgotten_faces") == 2, 5, "forgotten faces count")
