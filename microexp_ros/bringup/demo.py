"""The main job: the HRI graph on a recording (default: the embedded bag), a live line per window, a report.

A collector node in this process listens to what a robot behaviour would (`/au_predictions`), to the
reconstruction outputs, to the ground truth recorded in the bag and to /diagnostics, while
`microexp_ros.bringup.runner.Launcher` runs the `hri` graph as separate processes. When the bag player has
finished, the report folder gets metrics.json, au_timeline.png and recon_montage.png.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from microexp_ros.bringup.runner import Launcher
from microexp_ros.eval.hri_report import (GroundTruthEvent, WindowPrediction, plot_timeline, save_montage, score,
                                          summary)
from microexp_ros.msg import AUGroundTruth, AUPredictions, ReconstructionQuality
from microexp_ros.ros import qos
from microexp_ros.ros.dds import configure_transport
from microexp_ros.ros.image import to_numpy
from microexp_ros.ros.stamps import from_time_msg

MONTAGE_FRAMES = 12


class Collector(Node):
    """Records the graph's outputs with their arrival times."""

    def __init__(self, events_topic: str, verbose: bool) -> None:
        super().__init__("demo_collector")
        self.verbose = verbose
        self.lock = threading.Lock()
        self.predictions: list[WindowPrediction] = []
        self.ground_truth: dict[tuple[str, int], GroundTruthEvent] = {}
        self.ssim: list[float] = []
        self.psnr: list[float] = []
        self.recon: list[tuple[int, object]] = []
        self.references: dict[int, object] = {}
        self.drops: dict[str, dict[str, int]] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.packet_stamps: list[int] = []
        self.packet_arrivals: list[int] = []
        self.first_stamp_ns: int | None = None
        self.create_subscription(AUPredictions, "/au_predictions", self.on_prediction, qos.predictions_qos())
        self.create_subscription(AUGroundTruth, "/ground_truth/au", self.on_ground_truth, qos.predictions_qos())
        self.create_subscription(ReconstructionQuality, "/reconstruction/quality", self.on_quality,
                                 qos.predictions_qos())
        self.create_subscription(Image, "/reconstruction/image", self.on_recon, qos.image_qos(50))
        self.create_subscription(Image, "/rgb/image_raw", self.on_reference, qos.image_qos(50))
        self.create_subscription(EventPacket, events_topic, self.on_packet, qos.events_qos())
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, qos.predictions_qos(100))

    def on_packet(self, msg: EventPacket) -> None:
        stamp = from_time_msg(msg.header.stamp)
        with self.lock:
            self.packet_stamps.append(stamp)
            self.packet_arrivals.append(time.time_ns())
            if self.first_stamp_ns is None:
                self.first_stamp_ns = stamp

    def window_closed_at(self, window_end_ns: int) -> int | None:
        """Arrival time of the first packet stamped at or after the window end: when the window could close."""
        with self.lock:
            i = bisect.bisect_left(self.packet_stamps, window_end_ns)
            return self.packet_arrivals[i] if i < len(self.packet_arrivals) else None

    def on_prediction(self, msg: AUPredictions) -> None:
        received = time.time_ns()
        end = from_time_msg(msg.window_end)
        closed = self.window_closed_at(end)
        prediction = WindowPrediction(
            window_end_ns=end, probabilities={au.number: au.probability for au in msg.action_units},
            active=frozenset(au.number for au in msg.action_units if au.active),
            latency_ms=msg.inference_latency_ms, e2e_ms=(received - closed) / 1e6 if closed else float("nan"))
        with self.lock:
            self.predictions.append(prediction)
            t0 = self.first_stamp_ns or end
        if self.verbose:
            active = " ".join(f"AU{au.number}({au.probability:.2f})" for au in msg.action_units if au.active)
            print(f"t={(end - t0) / 1e9:7.3f} s  active: {active or '-':40s} "
                  f"infer {msg.inference_latency_ms:5.1f} ms  e2e {prediction.e2e_ms:6.1f} ms", flush=True)

    def on_ground_truth(self, msg: AUGroundTruth) -> None:
        with self.lock:
            for au in msg.active_aus:
                self.ground_truth.setdefault((msg.clip_id, int(au)), GroundTruthEvent(
                    msg.clip_id, int(au), from_time_msg(msg.onset), from_time_msg(msg.apex),
                    from_time_msg(msg.offset), msg.lighting))

    def on_quality(self, msg: ReconstructionQuality) -> None:
        if msg.has_reference:
            with self.lock:
                self.ssim.append(msg.ssim)
                self.psnr.append(msg.psnr)

    def on_recon(self, msg: Image) -> None:
        with self.lock:
            if len(self.recon) < 10 * MONTAGE_FRAMES:
                self.recon.append((from_time_msg(msg.header.stamp), to_numpy(msg)))

    def on_reference(self, msg: Image) -> None:
        import cv2

        with self.lock:
            if len(self.references) < 10 * MONTAGE_FRAMES:
                self.references[from_time_msg(msg.header.stamp)] = cv2.cvtColor(to_numpy(msg), cv2.COLOR_BGR2GRAY)

    def settled(self) -> bool:
        """Every sample time_sync published has reached the model nodes and come back out of them."""
        with self.lock:
            published = self.counts.get("/time_sync", {}).get("out:samples")
            classified = self.counts.get("/au_classifier", {}).get("in:samples")
            reconstructed = self.counts.get("/reconstruction", {}).get("in:samples")
            return published is not None and published == classified == reconstructed \
                and len(self.predictions) >= (classified or 0)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                self.drops[status.name] = {k[5:]: int(v) for k, v in values.items() if k.startswith("drop/")}
                self.errors[status.name] = {k[6:]: int(v) for k, v in values.items() if k.startswith("error/")}
                self.counts[status.name] = {k[6:]: int(v) for k, v in values.items() if k.startswith("count/")}


def montage_pairs(collector: Collector) -> list[tuple[object, object | None]]:
    """Evenly spaced reconstructions with the RGB reference of the same stamp (nearest within 20 ms)."""
    frames = sorted(collector.recon, key=lambda item: item[0])
    if not frames:
        return []
    step = max(1, len(frames) // MONTAGE_FRAMES)
    ref_stamps = sorted(collector.references)
    pairs = []
    for stamp, image in frames[::step][:MONTAGE_FRAMES]:
        i = bisect.bisect_left(ref_stamps, stamp)
        near = [s for s in ref_stamps[max(0, i - 1):i + 1] if abs(s - stamp) < 20_000_000]
        pairs.append((image, collector.references[near[0]] if near else None))
    return pairs


def run_demo(report_dir: Path, bag: str = "", rate: str = "", resolution: str = "high",
             verbose: bool = True) -> tuple[int, dict]:
    """Run the HRI graph on `bag` (default: the embedded one); write the report; (exit code, metrics)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    configure_transport()
    rclpy.init()
    events_topic = "/event_camera_low/events" if resolution == "low" else "/event_camera/events"
    collector = Collector(events_topic, verbose)
    executor = SingleThreadedExecutor()
    executor.add_node(collector)
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the collector's subscriptions be discovered before the bag starts
    started = time.monotonic()
    launcher = Launcher("hri", {"source": "bag", "bag": bag, "rate": rate, "resolution": resolution})
    code = launcher.run(until_exit="bag_player", grace_s=60.0, settled=collector.settled)
    wall_s = time.monotonic() - started
    spinning.clear()
    thread.join()
    executor.remove_node(collector)

    with collector.lock:
        predictions = sorted(collector.predictions, key=lambda p: p.window_end_ns)
        events = sorted(collector.ground_truth.values(), key=lambda e: e.onset_ns)
        drops = {f"{node}/{reason}": n for node, reasons in collector.drops.items() for reason, n in reasons.items()}
        errors = {f"{node}/{kind}": n for node, kinds in collector.errors.items() for kind, n in kinds.items()}
        metrics = summary(score(events, predictions), predictions, collector.ssim, collector.psnr, drops)
        metrics.update({"errors": int(sum(errors.values())), "errors_by_kind": errors,
                        "ground_truth_events": len(events), "wall_s": wall_s,
                        "node_exit_codes": launcher.exit_codes, "stop_s": launcher.stop_s,
                        "counts_by_node": dict(collector.counts)})
        t0 = collector.first_stamp_ns or (predictions[0].window_end_ns if predictions else 0)
        pairs = montage_pairs(collector)
    collector.destroy_node()
    rclpy.try_shutdown()

    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    plot_timeline(report_dir / "au_timeline.png", events, predictions, t0)
    if pairs:
        save_montage(report_dir / "recon_montage.png", pairs)
    ok = code == 0 and predictions and metrics["errors"] == 0
    return (0 if ok else 1), metrics
