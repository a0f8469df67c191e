"""The main job: the HRI graph on a recording (default: the embedded bag), a live line per window, a report.

A collector node in this process listens to what a robot behaviour would (`/au_predictions`), to the
reconstruction outputs, to the ground truth recorded in the bag and to /diagnostics, while
`microexp_ros.bringup.runner.Launcher` runs the `hri` graph as separate processes. When the bag player has
finished, the report folder gets metrics.json, au_timeline.png and recon_montage.png.
`replay_graph` (the collector around one replay) is shared with `microexp bench au`, which replays the bag
through the AU path only (`AU_PATH`), so both measure end-to-end latency the same way.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import Image

from microexp_ros.bringup.graphs import NodeSpec, wait_for_ready
from microexp_ros.bringup.runner import Launcher
from microexp_ros.eval.hri_report import (GroundTruthEvent, WindowPrediction, plot_timeline, save_montage, score,
                                          summary)
from microexp_ros.msg import AUGroundTruth, AUPredictions, ReconstructionQuality, SyncedSample
from microexp_ros.ros import qos
from microexp_ros.ros.dds import configure_transport
from microexp_ros.ros.image import to_numpy
from microexp_ros.ros.stamps import from_time_msg

MONTAGE_FRAMES = 12
MODEL_NODES = ("au_classifier", "reconstruction")
# The path a robot behaviour waits on: the recording, windowing, the AU model. No reconstruction, face region,
# visualizer or ROS4HRI bridge competing for the cores.
AU_PATH = ("bag_player", "time_sync", "au_classifier")


def serialized_stamp(raw: bytes) -> int:
    """header.stamp (ns) of a CDR-serialized message that starts with a std_msgs/Header: after the 4-byte
    encapsulation (representation 0x0001 = little-endian CDR, 0x0000 = big-endian) come int32 sec and
    uint32 nanosec."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError(f"not a CDR message with a header ({len(raw)} bytes, encapsulation {bytes(raw[:2]).hex()})")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def caught_up(counts: Mapping[str, Mapping[str, int]], previous: Mapping[str, Mapping[str, int]],
              model_nodes: Sequence[str], predictions: int) -> bool:
    """Whether a replay's graph has processed everything: every model node received as many samples as
    time_sync published, and `predictions` (received) covers what au_classifier received. `counts` are each
    node's latest /diagnostics counts, `previous` the report before. time_sync's count must be the same in
    both: otherwise two reports from before its last samples, one from time_sync and one from a model node,
    would agree on a count that is already out of date, and the graph would be stopped with those samples in
    flight."""
    published = counts.get("/time_sync", {}).get("out:samples")
    before = previous.get("/time_sync", {}).get("out:samples")
    received = [counts.get(f"/{node}", {}).get("in:samples") for node in model_nodes]
    classified = counts.get("/au_classifier", {}).get("in:samples")
    return published is not None and published == before and all(n == published for n in received) \
        and predictions >= (classified or 0)


class Collector(Node):
    """Records the graph's outputs with their arrival times.

    Times are taken when this process's callbacks run, or with `dds_stamps` from the middleware: a packet at
    its DDS source timestamp (when the player published it) and a prediction at its reception timestamp in
    this process. The callback times drift when this Python process falls behind the 1,000 packets/s of
    a loaded machine; the middleware's do not. With `dds_stamps` the collector also reads the source
    timestamps of time_sync's samples and of the predictions, which split each window's latency into its
    stages (`stages_after_run`).
    """

    def __init__(self, events_topic: str, verbose: bool, model_nodes: Sequence[str] = MODEL_NODES,
                 dds_stamps: bool = False) -> None:
        super().__init__("demo_collector")
        self.verbose = verbose
        self.model_nodes = tuple(model_nodes)
        self.dds_stamps = dds_stamps
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
        self.previous_counts: dict[str, dict[str, int]] = {}   # each node's counts one diagnostics period earlier
        self.packet_stamps: list[int] = []
        self.packet_arrivals: list[int] = []
        self.receipts: list[tuple[int, int, int]] = []   # (window end, received, published) per prediction
        self.sample_published: dict[int, int] = {}          # window end -> time_sync's publication (dds_stamps)
        self.first_stamp_ns: int | None = None
        # A deep queue: when this process falls behind the packets, no prediction is replaced before it is read.
        self.create_subscription(AUPredictions, "/au_predictions", self.on_prediction, qos.predictions_qos(1000))
        self.create_subscription(AUGroundTruth, "/ground_truth/au", self.on_ground_truth, qos.predictions_qos())
        if "reconstruction" in self.model_nodes:  # else its images would only take this process's time
            self.create_subscription(ReconstructionQuality, "/reconstruction/quality", self.on_quality,
                                     qos.predictions_qos())
            self.create_subscription(Image, "/reconstruction/image", self.on_recon, qos.image_qos(50))
            self.create_subscription(Image, "/rgb/image_raw", self.on_reference, qos.image_qos(50))
        # Serialized: only the stamp is read, so the 1,000 packets/s cost this process little time.
        self.create_subscription(EventPacket, events_topic, self.on_packet, qos.events_qos(), raw=True)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, qos.predictions_qos(100))
        if dds_stamps:
            self.create_subscription(SyncedSample, "/time_sync/samples", self.on_sample, qos.samples_qos(),
                                     raw=True)

    def on_packet(self, raw: bytes, info: MessageInfo) -> None:
        arrival = info["source_timestamp"] if self.dds_stamps else time.time_ns()
        stamp = serialized_stamp(raw)
        with self.lock:
            self.packet_stamps.append(stamp)
            self.packet_arrivals.append(arrival)
            if self.first_stamp_ns is None:
                self.first_stamp_ns = stamp

    def on_sample(self, raw: bytes, info: MessageInfo) -> None:
        with self.lock:
            self.sample_published[serialized_stamp(raw)] = info["source_timestamp"]

    def window_closed_at(self, window_end_ns: int) -> int | None:
        """Arrival time of the first packet stamped at or after the window end: when the window could close."""
        with self.lock:
            i = bisect.bisect_left(self.packet_stamps, window_end_ns)
            return self.packet_arrivals[i] if i < len(self.packet_arrivals) else None

    def on_prediction(self, msg: AUPredictions, info: MessageInfo) -> None:
        received = info["received_timestamp"] if self.dds_stamps else time.time_ns()
        end = from_time_msg(msg.window_end)
        closed = self.window_closed_at(end)
        prediction = WindowPrediction(
            window_end_ns=end, probabilities={au.number: au.probability for au in msg.action_units},
            active=frozenset(au.number for au in msg.action_units if au.active),
            latency_ms=msg.inference_latency_ms, e2e_ms=(received - closed) / 1e6 if closed else float("nan"))
        with self.lock:
            self.predictions.append(prediction)
            self.receipts.append((end, received, info["source_timestamp"]))
            t0 = self.first_stamp_ns or end
        if self.verbose:
            active = " ".join(f"AU{au.number}({au.probability:.2f})" for au in msg.action_units if au.active)
            # e2e is known here only once this process has read the packet that closed the window; otherwise it
            # is measured after the run (e2e_after_run).
            e2e = f"{prediction.e2e_ms:6.1f} ms" if math.isfinite(prediction.e2e_ms) else "after run"
            print(f"t={(end - t0) / 1e9:7.3f} s  active: {active or '-':40s} "
                  f"infer {msg.inference_latency_ms:5.1f} ms  e2e {e2e}", flush=True)

    def e2e_after_run(self) -> list[float]:
        """Every prediction's e2e ms in window order, with the packets of the whole run: a prediction read
        before its window's closing packet (this process behind on packets) is then measured too; NaN only
        where no packet followed the window end."""
        latencies = []
        for end, received, _ in sorted(self.receipts):
            closed = self.window_closed_at(end)
            latencies.append((received - closed) / 1e6 if closed is not None else float("nan"))
        return latencies

    def stages_after_run(self) -> dict[str, list[float]]:
        """Each prediction's latency split at the DDS source timestamps (`dds_stamps` only), ms in window order:
        `sync` from the closing packet to time_sync publishing the sample, `classify` from there to
        au_classifier publishing the prediction (one DDS hop, decoding, the model), `deliver` from there to its
        reception here. NaN where a stamp is missing (no closing packet, a sample this process did not read)."""
        stages: dict[str, list[float]] = {"sync": [], "classify": [], "deliver": []}
        nan = float("nan")
        for end, received, published in sorted(self.receipts):
            closed, sampled = self.window_closed_at(end), self.sample_published.get(end)
            stages["sync"].append((sampled - closed) / 1e6 if closed is not None and sampled is not None else nan)
            stages["classify"].append((published - sampled) / 1e6 if sampled is not None else nan)
            stages["deliver"].append((received - published) / 1e6)
        return stages

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
        """Every sample time_sync published has reached the model nodes and come back out of them
        (`caught_up` on the latest /diagnostics counts)."""
        with self.lock:
            return caught_up(self.counts, self.previous_counts, self.model_nodes, len(self.predictions))

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                self.drops[status.name] = {k[5:]: int(v) for k, v in values.items() if k.startswith("drop/")}
                self.errors[status.name] = {k[6:]: int(v) for k, v in values.items() if k.startswith("error/")}
                if status.name in self.counts:
                    self.previous_counts[status.name] = self.counts[status.name]
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


@dataclass
class GraphRun:
    """One replay: what the collector recorded, the launcher (node exit codes, stop time), its code, wall time."""

    collector: Collector
    launcher: Launcher
    code: int
    wall_s: float


def select_nodes(specs: list[NodeSpec], nodes: Sequence[str]) -> list[NodeSpec]:
    """The specs of `nodes` only; the bag player then waits for the publishers of those nodes alone, and
    time_sync and au_classifier for their readers among them."""
    kept = [spec for spec in specs if spec.name in nodes]
    missing = set(nodes) - {spec.name for spec in kept}
    if missing:
        raise ValueError(f"node(s) {', '.join(sorted(missing))} not in the graph "
                         f"(it has {', '.join(spec.name for spec in specs)})")
    return wait_for_ready(kept)


def override_parameters(specs: list[NodeSpec], parameters: dict[str, dict]) -> list[NodeSpec]:
    """`specs` with node parameters overridden by node name; ValueError for a node not among them."""
    names = {spec.name for spec in specs}
    unknown = set(parameters) - names
    if unknown:
        raise ValueError(f"parameters given for node(s) {', '.join(sorted(unknown))}, not in the graph")
    return [dataclasses.replace(spec, parameters={**spec.parameters, **parameters[spec.name]})
            if spec.name in parameters else spec for spec in specs]


def replay_graph(bag: str = "", rate: str = "", resolution: str = "high", verbose: bool = True,
                 nodes: Sequence[str] | None = None, parameters: dict[str, dict] | None = None,
                 dds_stamps: bool = False, fuse_rgb: bool = False) -> GraphRun:
    """Replay `bag` (default: the embedded one) through the hri graph, or only its `nodes`, with a collector
    listening; `parameters` overrides node parameters by node name (e.g. {"au_classifier": {"threads": 2}}),
    `dds_stamps` is the Collector's, `fuse_rgb` the graph's au_fuse_rgb. The launcher's lines go to stdout when
    `verbose`, else to stderr, so that a caller printing --json keeps stdout to its one JSON object."""
    # No standby processes: their imports would take CPU from the one replay whose latency this measures
    # (a crashed node is still respawned, from a cold start).
    log = print if verbose else (lambda line: print(line, file=sys.stderr))
    launcher = Launcher("hri", {"source": "bag", "bag": bag, "rate": rate, "resolution": resolution,
                                "au_fuse_rgb": str(fuse_rgb).lower()}, log=log, standby=False)
    specs = select_nodes(launcher.specs, nodes) if nodes is not None else launcher.specs
    # The collector reads /au_predictions (and with dds_stamps the samples): their writers wait for it too.
    specs = wait_for_ready(specs, {"au_classifier": 1, "time_sync": int(dds_stamps)})
    launcher.specs = override_parameters(specs, parameters or {})
    running = {spec.name for spec in launcher.specs}
    configure_transport()
    rclpy.init()
    events_topic = "/event_camera_low/events" if resolution == "low" else "/event_camera/events"
    collector = Collector(events_topic, verbose, [name for name in MODEL_NODES if name in running], dds_stamps)
    # Not ros.runtime.make_executor: the collector's callbacks take a MessageInfo (DDS timestamps), which
    # rclpy 9.1's EventsExecutor fails on ("SystemError: null argument to internal routine").
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
    code = launcher.run(until_exit="bag_player", grace_s=60.0, settled=collector.settled)
    wall_s = time.monotonic() - started
    spinning.clear()
    thread.join()
    executor.remove_node(collector)
    collector.destroy_node()
    rclpy.try_shutdown()
    return GraphRun(collector, launcher, code, wall_s)


def run_demo(report_dir: Path, bag: str = "", rate: str = "", resolution: str = "high",
             verbose: bool = True, fuse_rgb: bool = False) -> tuple[int, dict]:
    """Run the HRI graph on `bag` (default: the embedded one); write the report; (exit code, metrics)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    run = replay_graph(bag, rate, resolution, verbose, fuse_rgb=fuse_rgb)
    collector, launcher = run.collector, run.launcher
    with collector.lock:
        predictions = sorted(collector.predictions, key=lambda p: p.window_end_ns)
        events = sorted(collector.ground_truth.values(), key=lambda e: e.onset_ns)
        drops = {f"{node}/{reason}": n for node, reasons in collector.drops.items() for reason, n in reasons.items()}
        errors = {f"{node}/{kind}": n for node, kinds in collector.errors.items() for kind, n in kinds.items()}
        metrics = summary(score(events, predictions), predictions, collector.ssim, collector.psnr, drops)
        metrics.update({"errors": int(sum(errors.values())), "errors_by_kind": errors,
                        "ground_truth_events": len(events), "wall_s": run.wall_s,
                        "node_exit_codes": launcher.exit_codes, "teardown_cut": launcher.teardown_cut,
                        "stop_s": launcher.stop_s,
                        "counts_by_node": dict(collector.counts)})
        t0 = collector.first_stamp_ns or (predictions[0].window_end_ns if predictions else 0)
        pairs = montage_pairs(collector)

    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    plot_timeline(report_dir / "au_timeline.png", events, predictions, t0)
    if pairs:
        save_montage(report_dir / "recon_montage.png", pairs)
    ok = run.code == 0 and predictions and metrics["errors"] == 0
    return (0 if ok else 1), metrics
