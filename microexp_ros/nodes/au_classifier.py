"""au_classifier node: Action Units of each synchronised window, published on /au_predictions.

Subscribes `samples` (microexp_ros/SyncedSample) or, when `events_only_topic` is set, an EventPacket stream it
cuts into windows of the model's length at `window_rate_hz` itself (`EventStreamWindows`, as time_sync
does), so the AU model can keep its own window length while reconstruction uses the samples'. It
crops the face region (the `roi` parameter in event pixels, or the latest FaceRegion on `face_region` when
`use_face_region` is true), runs `AUPredictor.predict` (the same call as the offline evaluation, so a window
gives the same probabilities online and offline), averages them over the last `average_windows` windows
(`WindowAverage`, as `microexp eval au --windows` scores it), applies the `ActivationFilter` hysteresis and publishes
microexp_ros/AUPredictions stamped with the window end (host time).

With `fuse_rgb`, a robot with both cameras gets the events model fused with a webcam model (`fuse`: a product of
experts, as the `events SNN + RGB CNN` rows of `microexp eval au` score it; 88.0 % against 82.3 % events alone
and 85.7 % webcam alone on the synthetic test split). The node keeps the recent frames the samples carry
(`FrameHistory`) so that the webcam model sees the frames of the whole window; a sample without a frame is
classified from events alone (`count/events_only_windows`), and a window reaching back before the first kept
frame is counted (`count/rgb_history_short`: its earlier bins repeat the first frame, as `encode_frames` does).

Before it subscribes (and before `/au_predictions` exists, which a bag player waits for) the node runs the
model on a synthetic window: the first call of a fresh process costs about a second (numba runtime and
kernels, torch's first allocations and the trace), which would otherwise delay the first real windows and
queue the next. The shipped model is loaded and warmed up before rclpy starts (`DEFAULT_MODEL`, unless the
command line sets `model_path`), so a hot standby process has done it while it waits.

Defined behaviour on odd input (all counted in /diagnostics, the node keeps running):
- empty window (no events): the model runs on the empty input and its output is published like any other;
  counted under `count/empty_windows` (a still face produces no events: that is data, not an error);
- window length differing from the model's by more than `window_tolerance`: skipped, `drop/window_length`
  (the model's input statistics depend on the window length);
- undecodable or inconsistent sample, face region outside the sensor: skipped, counted under `error/<kind>`.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from builtin_interfaces.msg import Time
from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from std_msgs.msg import Header

from microexp_ros.events.array import synthetic_events
from microexp_ros.facs import MODEL_AUS, au_name
from microexp_ros.models.au_inference import ActivationFilter, AUPredictor, AUResult, FrameHistory, WindowAverage, fuse
from microexp_ros.models.shipped import DEFAULT_RGB_MODEL
from microexp_ros.models.weights import WeightsError
from microexp_ros.msg import ActionUnit, AUPredictions, FaceRegion, SyncedSample
from microexp_ros.nodes.sample_input import (RegionSource, RegionUnavailable, SampleWindow, camera_frame,
                                             read_sample, region_param)
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.params import Param, ParameterError, declare_parameters
from microexp_ros.ros.prepared_model import PreparedModel
from microexp_ros.ros.publish_gate import GATE_PARAMS, gated
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import from_time_msg, to_time_msg
from microexp_ros.sync.stream_windows import EventStreamWindows, PacketError
from microexp_ros.sync.windows import FixedRateWindows, WindowCutter

PARAMS = [
    Param("model_path", "", "AU weights (.safetensors with its .json sidecar); empty = the shipped default",
          read_only=True),
    Param("device", "cpu", "torch device for inference", choices=("cpu",), read_only=True),
    Param("threads", 1, "torch intra-op threads", min=1, max=64, read_only=True),
    Param("roi", [0, 0, 0, 0], "face region [x, y, w, h] in event pixels; w = h = 0 means the whole sensor",
          read_only=True),
    Param("use_face_region", False, "crop to the latest FaceRegion on `face_region` instead of `roi`", read_only=True),
    Param("face_region_max_age_s", 1.0, "ignore a FaceRegion older than this before the window end", min=0.0,
          read_only=True),
    Param("face_id", "", "face id published when `use_face_region` is false (\"\" = the single tracked face)",
          read_only=True),
    Param("on_threshold", 0.6, "probability at or above which an AU pushes towards active", min=0.0, max=1.0,
          read_only=True),
    Param("off_threshold", 0.4, "probability below which an active AU pushes towards inactive", min=0.0, max=1.0,
          read_only=True),
    Param("average_windows", 1, "AU probabilities averaged over this many consecutive windows before the "
          "hysteresis (1 = each window alone)", min=1, max=30, read_only=True),
    Param("flip_average", False, "also classify each window mirrored left-right and fuse the two views (one "
          "batch of two; docs/au_results.md)", read_only=True),
    Param("min_windows", 2, "consecutive windows needed to switch an AU on or off", min=1, max=1000, read_only=True),
    Param("window_tolerance", 0.05, "relative window-length mismatch to the model's accepted", min=0.0, max=1.0,
          read_only=True),
    Param("events_only_topic", "", "EventPacket topic to window directly instead of `samples` (\"\" = samples)",
          read_only=True),
    Param("window_rate_hz", 5.0, "window rate on `events_only_topic` (windows are the model's length)",
          min=0.01, max=1000.0, read_only=True),
    Param("fuse_rgb", False, "fuse the events model with an RGB model on samples that carry a frame",
          read_only=True),
    Param("rgb_model_path", "", "RGB AU weights for fuse_rgb; empty = the shipped cnn_rgb_default", read_only=True),
    Param("rgb_roi", [0, 0, 0, 0], "face region [x, y, w, h] in RGB pixels for fuse_rgb when use_face_region is "
          "false; w = h = 0 means the whole frame", read_only=True),
    *GATE_PARAMS,
]

# How far back the events-only stream keeps events (at least two of the model's windows).
STREAM_HISTORY_NS = 1_000_000_000
# Webcam frames kept for fuse_rgb: half a second at 30 fps, more than a 200 ms window and the frame before it.
RGB_HISTORY_FRAMES = 16


def _warm_up(predictor: AUPredictor) -> list[float]:
    """Predict on a synthetic window of a sensor twice the model's input size (so the resampling runs too);
    the wall ms of each call."""
    side, window = 2 * predictor.size, predictor.window_ns
    return predictor.warm_up(synthetic_events(side, side, 0, window), 0, window, (side, side))


DEFAULT_MODEL = PreparedModel("au_classifier", AUPredictor.from_file, _warm_up)


class AUClassifierNode(Node):
    def __init__(self) -> None:
        super().__init__("au_classifier")
        p = declare_parameters(self, PARAMS)
        self.regions = RegionSource(p["use_face_region"], region_param("roi", p["roi"]),
                                    region_param("rgb_roi", p["rgb_roi"]), p["face_id"],
                                    int(p["face_region_max_age_s"] * 1e9))
        if p["off_threshold"] > p["on_threshold"]:
            raise ParameterError(f"off_threshold {p['off_threshold']} is above on_threshold {p['on_threshold']}")
        torch.set_num_threads(p["threads"])
        self.predictor = DEFAULT_MODEL.take(p["model_path"])
        if self.predictor.modality != "events":
            raise WeightsError(f"weights '{self.predictor.name}' take {self.predictor.modality} input; "
                               "au_classifier needs an events model")
        self.predictor.flip_average = p["flip_average"]   # before the warm-up, which makes the trace
        self.rgb_predictor = self._rgb_model(p) if p["fuse_rgb"] else None
        self.frames = FrameHistory(RGB_HISTORY_FRAMES)
        self.average = WindowAverage(p["average_windows"])
        self.filter = ActivationFilter(p["on_threshold"], p["off_threshold"], p["min_windows"])
        self.params = p
        self.warm_up()
        self.health = Health(self)
        self.current_face_id: str | None = None
        self.last_sequence: int | None = None
        # Subscriptions first: the `~/ready` flag a bag player waits for comes after them, so the first
        # samples are not missed.
        if p["events_only_topic"]:
            window_ns = self.predictor.window_ns
            self.stream = EventStreamWindows(WindowCutter(max(STREAM_HISTORY_NS, 2 * window_ns)),
                                             FixedRateWindows(int(round(1e9 / p["window_rate_hz"])), window_ns))
            self.stream_reported: dict[str, int] = {}
            self.health.watch(self.create_subscription(EventPacket, p["events_only_topic"], self.on_events,
                                                       qos.events_qos()), "in:packets")
        else:
            self.health.watch(self.create_subscription(SyncedSample, "samples", self.on_sample, qos.samples_qos()),
                              "in:samples")
        if p["use_face_region"]:
            self.create_subscription(FaceRegion, "face_region", self.on_face_region, qos.predictions_qos())
        self.publisher = self.create_publisher(AUPredictions, "/au_predictions", qos.predictions_qos())
        self.gate = gated(self, self.publisher, p, self.health)
        self.get_logger().info(f"model '{self.predictor.name}' ({self.predictor.window_ns / 1e6:g} ms windows, "
                               f"{self.predictor.bins} bins, {self.predictor.size} px)")

    def warm_up(self) -> None:
        times, side = _warm_up(self.predictor), 2 * self.predictor.size
        self.get_logger().info(f"warm-up ({self.predictor.runner} model) on a synthetic {side}x{side} window: "
                               + ", ".join(f"{ms:.0f}" for ms in times) + " ms")

    def _rgb_model(self, p: dict) -> AUPredictor:
        """The webcam model of fuse_rgb, checked against the events model's window and warmed up."""
        from microexp_ros.resources import share_path

        model = AUPredictor.from_file(p["rgb_model_path"] or share_path("models", DEFAULT_RGB_MODEL),
                                      flip_average=p["flip_average"])
        if model.modality != "rgb":
            raise WeightsError(f"rgb_model_path '{model.name}' takes {model.modality} input, not rgb")
        if model.window_ns != self.predictor.window_ns:
            raise WeightsError(f"rgb_model_path '{model.name}' has {model.window_ns / 1e6:g} ms windows, the events "
                               f"model {self.predictor.window_ns / 1e6:g} ms")
        side = 2 * model.size
        model.predict_frames(np.zeros((2, side, side, 3), np.uint8), np.array([0, model.window_ns // 2]), 0,
                             model.window_ns, (0, 0, side, side))
        self.get_logger().info(f"fusing with RGB model '{model.name}'")
        return model

    def on_face_region(self, msg: FaceRegion) -> None:
        self.health.count("in:face_region")
        self.regions.update_from_msg(msg)

    def on_sample(self, msg: SyncedSample) -> None:
        self.health.count("in:samples")
        if self.last_sequence is not None and msg.sequence > self.last_sequence + 1:
            self.health.drop("upstream_sequence_gap", int(msg.sequence - self.last_sequence - 1))
        self.last_sequence = int(msg.sequence)
        window = read_sample(msg, self.health)
        if window is None:
            return
        if window.count_mismatch:
            self.health.error("event_count_mismatch", f"sample {msg.sequence} says {msg.event_count} events")
        has_frame = False
        if self.rgb_predictor is not None and msg.has_rgb:
            try:
                self.frames.add(from_time_msg(msg.rgb.header.stamp), camera_frame(msg.rgb))
                has_frame = True
            except ValueError as error:
                self.health.error("bad_rgb", str(error))
        self.classify(window, msg.window_start, msg.window_end, msg.header.frame_id, has_frame)

    def on_events(self, msg: EventPacket) -> None:
        self.health.count("in:packets")
        try:
            self.stream.add(msg.events, from_time_msg(msg.header.stamp), msg.seq, msg.encoding, msg.width, msg.height,
                            msg.time_base)
        except PacketError as error:
            self.health.error("bad_events", str(error))
            return
        windows = self.stream.ready()
        self.health.drop_increase(self.stream.drop_totals("decode_", "windows_skipped"), self.stream_reported)
        for cut in windows:
            self.classify(SampleWindow(cut.events, cut.start, cut.end, self.stream.width, self.stream.height),
                          to_time_msg(max(self.stream.clock.to_host(cut.start), 0)),
                          to_time_msg(max(self.stream.clock.to_host(cut.end), 0)), msg.header.frame_id)

    def classify(self, window: SampleWindow, window_start: Time, window_end: Time, frame_id: str,
                 has_frame: bool = False) -> None:
        """Run the model on one window (fused with the RGB model when `has_frame`) and publish its AUPredictions
        (or count why not)."""
        length, expected = window.t1_ns - window.t0_ns, self.predictor.window_ns
        if abs(length - expected) > self.params["window_tolerance"] * expected:
            self.health.drop("window_length")
            return
        try:
            face = self.regions.select(from_time_msg(window_end))
        except RegionUnavailable as reason:
            self.health.drop(str(reason))
            return
        face_id, roi = face.face_id, face.event_roi or (0, 0, window.width, window.height)
        try:
            result = self.predictor.predict(window.events, window.t0_ns, window.t1_ns, roi,
                                            (window.width, window.height))
            if has_frame:
                result = fuse([result, self._predict_rgb(face.rgb_roi, window_start, window_end)])
            elif self.rgb_predictor is not None:
                self.health.count("events_only_windows")
        except ValueError as error:
            self.health.error("bad_region", str(error))
            return
        except RuntimeError as error:  # torch refused this input: count it, keep serving the next windows
            self.health.error("inference", str(error))
            return
        if window.events.size == 0:
            self.health.count("empty_windows")
        if face_id != self.current_face_id:
            self.average.reset()
            self.filter.reset()
            self.current_face_id = face_id
        probabilities = self.average.update(result.probabilities)
        active = self.filter.update(probabilities)
        modality, name = AUPredictions.MODALITY_EVENTS, self.predictor.name
        if has_frame:
            modality, name = AUPredictions.MODALITY_EVENTS_RGB, f"{name}+{self.rgb_predictor.name}"
        out = AUPredictions(header=Header(stamp=window_end, frame_id=frame_id), face_id=face_id,
                            window_start=window_start, window_end=window_end, modality=modality,
                            model_name=name, inference_latency_ms=float(result.latency_ms))
        out.action_units = [ActionUnit(number=n, name=au_name(n), probability=float(prob), active=bool(on),
                                       intensity=math.nan)
                            for n, prob, on in zip(MODEL_AUS, probabilities, active)]
        self.gate.publish(out)
        self.health.count("out:au_predictions")
        self.health.values["inference_latency_ms"] = float(result.latency_ms)

    def _predict_rgb(self, rgb_roi: tuple[int, int, int, int] | None, window_start: Time,
                     window_end: Time) -> AUResult:
        """The RGB model on the kept frames over the window (host times, as the frames' stamps)."""
        frames, times = self.frames.arrays()
        t0, t1 = from_time_msg(window_start), from_time_msg(window_end)
        if times[0] > t0:
            self.health.count("rgb_history_short")
        roi = rgb_roi or (0, 0, frames.shape[2], frames.shape[1])
        return self.rgb_predictor.predict_frames(frames, times, t0, t1, roi)


def main() -> None:
    sys.exit(run_node(AUClassifierNode, prepare=DEFAULT_MODEL.prepare))


if __name__ == "__main__":
    main()
