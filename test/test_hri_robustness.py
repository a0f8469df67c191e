"""The running HRI graph survives what a robot throws at it: killed nodes and malformed input.

`microexp launch hri source:=bag loop:=true` plays the embedded bag in a loop through the full graph (separate
processes, the launch file's respawn settings). This test process joins the graph's DDS domain and watches
/au_predictions, /diagnostics and the visualizer's image topics while it kills nodes with SIGKILL and
publishes malformed EventPackets and Images into the sensor topics.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from event_camera_msgs.msg import EventPacket  # noqa: E402
from hri_msgs.msg import IdsList  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from microexp_ros.events.array import EVENT_DTYPE  # noqa: E402
from microexp_ros.events.evt3 import encode_evt3  # noqa: E402
from microexp_ros.bringup.graphs import DEAF_RESTART_S  # noqa: E402
from microexp_ros.msg import AUPredictions, FaceRegion, SyncedSample  # noqa: E402
from microexp_ros.nodes.sample_input import sample_window  # noqa: E402
from microexp_ros.ros import qos  # noqa: E402
from microexp_ros.ros.diagnostics import DEAF_EXIT_CODE  # noqa: E402
from microexp_ros.ros.image import to_numpy  # noqa: E402
from microexp_ros.ros.stamps import from_time_msg  # noqa: E402
from microexp_ros.viz.render import event_image  # noqa: E402

STREAMS = {name: (topic, msg_type, qos.predictions_qos()) for name, topic, msg_type in (
    ("predictions", "/au_predictions", AUPredictions),
    ("region", "/face_region/region", FaceRegion),
    ("tracked", "/humans/faces/tracked", IdsList),
)} | {name: (topic, Image, qos.image_qos()) for name, topic in (
    ("recon", "/reconstruction/image"), ("frames", "/rgb/image_raw"))}


FRAME_PERIOD_NS = 34_000_000   # the embedded bag's webcam runs at 30 fps


class Watcher:
    """An rclpy node in this process, on the graph's domain, recording what the graph publishes.

    A participant can be left deaf when a peer is killed with SIGKILL (FastDDS's shared-memory transport,
    eProsima/Fast-DDS#5469, open upstream). This watcher is the test's instrument, not the graph under test:
    once it has heard the graph, then nothing at all for DEAF_S seconds, not even the 1 Hz /diagnostics of
    seven nodes, it joins the domain again with a new participant (at most once per REJOIN_EVERY_S) and
    records when in `rejoins`; a graph that is really silent still fails the tests.
    """

    DEAF_S = 4.0
    REJOIN_EVERY_S = 15.0

    def __init__(self, domain_id: int) -> None:
        self.domain_id = domain_id
        self.lock = threading.Lock()
        # topic -> (receipt time.monotonic(), header stamp ns) of every message
        self.received: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.diagnostics: dict[str, dict[str, str]] = {}    # node name -> latest key/values
        self.samples: dict[int, SyncedSample] = {}          # window end ns -> sample
        self.event_images: dict[int, Image] = {}
        self.overlays: list[Image] = []
        self.diagnostics_heard = 0.0                        # last /diagnostics receipt (time.monotonic())
        self.rejoins: list[float] = []
        self._join()

    def _join(self) -> None:
        """A new participant (context, node, subscriptions, publishers) spun by a new thread."""
        self.joined = time.monotonic()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = rclpy.create_node("robustness_watcher", context=self.context)
        n = self.node
        for topic, msg_type, profile in STREAMS.values():
            n.create_subscription(msg_type, topic, lambda msg, topic=topic: self._on_message(topic, msg), profile)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.predictions_qos(50))
        n.create_subscription(SyncedSample, "/time_sync/samples", self._on_sample, qos.samples_qos())
        n.create_subscription(Image, "/visualizer/events", self._on_event_image, qos.image_qos())
        n.create_subscription(Image, "/visualizer/au_overlay", self._on_overlay, qos.image_qos())
        self.events_pub = n.create_publisher(EventPacket, "/event_camera/events", qos.events_qos())
        self.image_pub = n.create_publisher(Image, "/rgb/image_raw", qos.image_qos())
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.02)

    def _leave(self) -> None:
        self.running = False
        self.thread.join()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def _rejoin_if_deaf(self) -> None:
        now = time.monotonic()
        with self.lock:
            last = max(self._heard().values(), default=0.0)
        if last < self.joined:   # this participant has heard nothing yet: the graph may still be starting
            return
        if now - last > self.DEAF_S and now - max([0.0, *self.rejoins]) > self.REJOIN_EVERY_S:
            print(f"watcher: nothing heard for {now - last:.1f} s on any topic; joining again")
            self.rejoins.append(now)
            self._leave()
            self._join()

    def _heard(self) -> dict[str, float]:
        """Topic -> its last receipt (time.monotonic()), from what was recorded; call with the lock held."""
        heard = {topic: times[-1][0] for topic, times in self.received.items() if times}
        return heard | ({"/diagnostics": self.diagnostics_heard} if self.diagnostics_heard else {})

    def heard_ago(self) -> str:
        """How long ago each topic was last heard, for failure messages: all old = this watcher went deaf."""
        now = time.monotonic()
        with self.lock:
            ago = ", ".join(f"{topic} {now - t:.1f} s" for topic, t in sorted(self._heard().items()))
        return f"watcher last heard: {ago}; rejoined at {[round(now - t, 1) for t in self.rejoins]} s ago"

    def _on_message(self, topic: str, msg) -> None:
        with self.lock:
            self.received[topic].append((time.monotonic(), from_time_msg(msg.header.stamp)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics_heard = time.monotonic()
            for status in msg.status:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def _on_sample(self, msg: SyncedSample) -> None:
        with self.lock:
            self.samples[from_time_msg(msg.window_end)] = msg
            self.received["/time_sync/samples"].append((time.monotonic(), from_time_msg(msg.window_end)))

    def _on_event_image(self, msg: Image) -> None:
        with self.lock:
            self.event_images[from_time_msg(msg.header.stamp)] = msg

    def _on_overlay(self, msg: Image) -> None:
        with self.lock:
            self.overlays.append(msg)
            self.received["/visualizer/au_overlay"].append((time.monotonic(), from_time_msg(msg.header.stamp)))

    def after(self, t: float, topic: str = "/au_predictions", old: frozenset[int] = frozenset()) -> list[float]:
        """Receipt times on `topic` later than `t` (monotonic) of messages stamped neither at one of the `old`
        frame stamps (within 1 ms) nor in the frame period after one: this watcher's callbacks can run a frame
        late, so the frame that followed the last old one may have been recorded as arriving after the kill."""
        with self.lock:
            return [r for r, stamp in self.received[topic]
                    if r > t and not any(-1_000_000 < stamp - o < FRAME_PERIOD_NS for o in old)]

    def frames_between(self, start: float, end: float) -> frozenset[int]:
        """Stamps of the RGB frames that reached the graph between two monotonic times."""
        with self.lock:
            return frozenset(stamp for r, stamp in self.received["/rgb/image_raw"] if start <= r <= end)

    def wait_for(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            self._rejoin_if_deaf()
            time.sleep(0.02)
        return False

    def diag(self, node: str) -> dict[str, str]:
        with self.lock:
            return next((dict(v) for k, v in self.diagnostics.items() if k.endswith(node)), {})

    def close(self) -> None:
        self._leave()


class Graph:
    """`microexp launch hri` as a subprocess; node pids from its log lines."""

    def __init__(self, env: dict, log: Path, options: tuple[str, ...] = ()) -> None:
        self.log_path = log
        self.log = open(log, "w")
        microexp = Path(sys.prefix) / "bin" / "microexp"
        self.proc = subprocess.Popen([str(microexp), "launch", "hri", "source:=bag", "loop:=true", *options],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text()

    def pid(self, name: str) -> int:
        found = re.findall(rf"(?:started|respawned) {name} .*pid (\d+)", self.text())
        assert found, f"{name} not started:\n{self.text()[-2000:]}"
        return int(found[-1])

    def exits(self) -> list[str]:
        return re.findall(r"\[launch\] (\S+) exited with code (-?\d+)", self.text())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def running(ros_env, tmp_path_factory):
    """The looping HRI graph with predictions flowing, and the watcher; stopped with SIGINT at the end."""
    graph = Graph(ros_env, tmp_path_factory.mktemp("robustness") / "launch.log")
    watcher = Watcher(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        flowing = watcher.wait_for(lambda: len(watcher.after(0.0)) >= 20, 90.0)
        assert flowing, f"no predictions from the looping graph:\n{graph.text()[-3000:]}"
        yield graph, watcher
    finally:
        watcher.close()
        code = graph.stop()
        print(graph.text()[-1500:])
    assert code == 0, graph.text()[-3000:]


def _standbys_ready(log: str) -> bool:
    """Each node's newest standby has done its imports: a kill now is measured on a settled graph, not one
    sharing its two cores with a replacement standby that is still importing torch."""
    return all(log.rfind(f"[standby] {node} ready") > log.rfind(f"respawned {node} ") for node in KILLS)


class Resume(NamedTuple):
    seconds: float            # from the kill to the first message about a new window
    deaf: tuple[str, ...]     # nodes that left deaf (exit DEAF_EXIT_CODE) after the kill, to be respawned


def _resume_after_kill(graph: Graph, watcher: Watcher, node: str, topic: str, standby: bool = True) -> Resume:
    """SIGKILL `node` once its hot standby is ready; how long until `topic` carries a message about a new window:
    windows of frames that had arrived before the kill (in flight, or closed by time_sync's timeout when the
    input died) do not count. `standby=False` measures a graph launched with --no-standby (cold respawns);
    test/kill_respawn.py repeats this measurement."""
    if standby:
        assert watcher.wait_for(lambda: _standbys_ready(graph.text()), 60.0), \
            f"the standby processes did not all become ready:\n{graph.text()[-2000:]}"
    pid = graph.pid(node)
    log_at = len(graph.text())
    killed, killed_wall = time.monotonic(), time.time()
    os.kill(pid, signal.SIGKILL)
    old = watcher.frames_between(killed - 1.5, killed + 0.05)   # the bag replays at 1x: frames take < 50 ms
    how = "from standby" if standby else "cold start"
    assert watcher.wait_for(lambda: re.search(rf"respawned {node} .*{how}.*pid (?!{pid}\b)\d+",
                                              graph.text()), 10.0), \
        f"{node} was not respawned ({how}):\n{graph.text()[-2000:]}"
    respawned = time.monotonic()
    assert watcher.wait_for(lambda: watcher.after(killed, topic, old), 30.0), \
        f"{topic} did not resume after killing {node}; {watcher.heard_ago()}"
    first = watcher.after(killed, topic, old)[0]
    stamps = re.findall(rf"\[INFO\] \[(\d+\.\d+)\] \[{node}\]", graph.text())
    up = float(stamps[-1]) - killed_wall if stamps else float("nan")
    built = re.findall(rf"\[{node}\]: .*promoted: (node built in [\d.]+ s)", graph.text()[log_at:])
    samples = watcher.after(killed, "/time_sync/samples", old)
    deaf = tuple(re.findall(rf"\[launch\] (\S+) exited with code {DEAF_EXIT_CODE}\b", graph.text()[log_at:]))
    print(f"{node}: respawned {respawned - killed:.2f} s, node up {up:.2f} s, first new sample "
          f"{(samples[0] - killed) if samples else float('nan'):.2f} s, first {topic} {first - killed:.2f} s "
          f"after the kill" + (f" ({built[-1]})" if built else "")
          + (f"; left deaf and respawned: {', '.join(deaf)}" if deaf else ""))
    return Resume(first - killed, deaf)


# node killed -> the stream it feeds, and the longest gap accepted (s). The target is 2 s for the AU path
# a robot behaviour waits on (sensor input → time_sync → au_classifier): `microexp launch` promotes a hot standby
# (imports done, DDS participant already discovered), measured 0.4-0.9 s on this 2-core machine (docs/robustness.md).
# The bag player restarts the recording from its start; the visualizer needs a prediction and a sample of the
# same window. The streams off the AU path get 4 s: a promoted node now and then takes 2–3 s to build on the two
# busy cores (face_region 2.8 and 3.1 s, reconstruction 2.6 and 3.0 s in CI runs; why is not known), and that
# they come from the standby, not a cold start, is checked on the launcher's line.
KILLS = {
    "time_sync": ("/au_predictions", 2.0),
    "bag_player": ("/au_predictions", 5.0),
    "face_region": ("/face_region/region", 4.0),
    "hri_bridge": ("/humans/faces/tracked", 4.0),
    "visualizer": ("/visualizer/au_overlay", 5.0),
    "au_classifier": ("/au_predictions", 2.0),
    "reconstruction": ("/reconstruction/image", 4.0),
}


# A kill -9 can leave another node's DDS participant deaf (FastDDS shared memory, eProsima/Fast-DDS#5469; see
# docs/robustness.md): that node hears nothing for DEAF_RESTART_S, leaves with DEAF_EXIT_CODE and is respawned
# from its standby. The stream then resumes that much later, plus up to two 1 s periods of the reports that
# decide it (the first finds it deaf, the next confirms).
DEAF_RECOVERY_S = DEAF_RESTART_S + 2.0


@pytest.mark.parametrize("node", list(KILLS))
def test_killed_node_is_respawned_and_its_stream_resumes(running, node):
    graph, watcher = running
    topic, limit = KILLS[node]
    resume = _resume_after_kill(graph, watcher, node, topic)
    print(f"{node}: {topic} resumed {resume.seconds:.2f} s after kill -9")
    if resume.deaf:   # the wedge, recovered by the deaf node's restart: bounded, and said in the test's output
        limit += DEAF_RECOVERY_S
        print(f"{node}: the kill left {', '.join(resume.deaf)} deaf; bound {limit:.0f} s")
    assert resume.seconds <= limit, f"{node}: {topic} resumed only after {resume.seconds:.2f} s\n" + \
        "\n".join(line for line in graph.text().splitlines() if "[launch]" in line or "silence" in line
                  or "no in:" in line or "deaf" in line)[-3000:]


def _packet(seq: int, data: bytes, encoding: str = "evt3", width: int = 128, height: int = 128,
            stamp_ns: int | None = None) -> EventPacket:
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
    msg = EventPacket(height=height, width=width, seq=seq, encoding=encoding, time_base=0)
    msg.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    msg.header.frame_id = "injected"
    msg.events = data
    return msg


def _image(encoding: str, width: int, height: int, step: int, data: bytes, stamp_ns: int | None = None) -> Image:
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
    msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=0)
    msg.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    msg.data = data
    return msg


def malformed_packets() -> list[EventPacket]:
    rng = np.random.default_rng(3)
    late, early = np.zeros(1, EVENT_DTYPE), np.zeros(1, EVENT_DTYPE)
    late["t"], early["t"] = 3_000_000, 1_000_000
    good = np.zeros(100, EVENT_DTYPE)
    good["t"] = np.arange(100) * 1000
    return [
        _packet(10**6, b"\x01\x02\x03\x04", encoding="evt9"),                  # unknown encoding
        _packet(10**6 + 1, encode_evt3(good), width=0, height=0),                 # zero geometry
        _packet(10**6 + 2, encode_evt3(good), width=1 << 20, height=1 << 20),     # absurd geometry
        _packet(10**6 + 3, b"\x01\x80\x88"),                                      # truncated word
        _packet(10**6 + 4, rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),  # random words
        _packet(10**6 + 5, encode_evt3(late) + encode_evt3(early)),                            # timestamps out of order
        _packet(10**6 + 6, b""),                                                  # empty packet
        _packet(10**6 + 7, rng.integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()),  # 8 MiB of garbage
        _packet(10**6 + 8, encode_evt3(good), stamp_ns=1),                        # stamp decades in the past
    ]


def malformed_images() -> list[Image]:
    return [
        _image("bogus", 96, 96, 288, bytes(96 * 288)),          # unknown encoding
        _image("bgr8", 0, 0, 0, b""),                           # zero size
        _image("bgr8", 96, 96, 288, bytes(100)),                # truncated data
        _image("bgr8", 60000, 60000, 180000, bytes(1000)),      # huge size, tiny data
        _image("mono8", 96, 96, 10, bytes(96 * 10)),            # step shorter than a row
        _image("bgr8", 96, 96, 288, bytes(96 * 288), stamp_ns=1),  # timestamp out of order
    ]


def test_malformed_input_is_counted_and_valid_data_keeps_flowing(running):
    graph, watcher = running
    exits_before = len(graph.exits())
    errors_before = sum(int(v) for k, v in watcher.diag("time_sync").items() if k.startswith("error/"))
    started = time.monotonic()
    for packet, image in zip(malformed_packets(), malformed_images() * 2):
        watcher.events_pub.publish(packet)
        watcher.image_pub.publish(image)
        time.sleep(0.1)
    injected = time.monotonic()
    # the graph answered throughout and after: predictions in every second of the injection and the next one
    assert watcher.wait_for(lambda: watcher.after(injected + 1.0), 10.0), \
        f"predictions stopped; {watcher.heard_ago()}"
    during = [t for t in watcher.after(started) if t <= injected]
    assert during, "no predictions while malformed input arrived"
    # the bad input is counted on /diagnostics (the next 1 Hz report)
    def counted() -> bool:
        diag = watcher.diag("time_sync")
        errors = sum(int(v) for k, v in diag.items() if k.startswith("error/"))
        return errors - errors_before >= 3
    assert watcher.wait_for(counted, 5.0), f"time_sync diagnostics: {watcher.diag('time_sync')}"
    time.sleep(1.5)
    print({node: {k: v for k, v in watcher.diag(node).items() if k.startswith(("error/", "drop/"))}
           for node in ("time_sync", "au_classifier", "reconstruction", "visualizer", "face_region")})
    assert len(graph.exits()) == exits_before, f"nodes exited on malformed input: {graph.exits()}"
    assert graph.proc.poll() is None


def test_visualizer_images_show_each_window(running):
    """/visualizer/events is the offline rendering of each sample's events; overlays come with predictions."""
    _, watcher = running
    assert watcher.wait_for(lambda: len(watcher.overlays) >= 5, 10.0), "no AU overlay images"
    with watcher.lock:
        common = sorted(set(watcher.samples) & set(watcher.event_images))[-20:]
        pairs = [(watcher.samples[k], watcher.event_images[k]) for k in common]
        overlay = watcher.overlays[-1]
    assert len(pairs) >= 10, "event images do not match the samples' window ends"
    for sample, picture in pairs:
        window = sample_window(sample)
        expected = event_image(window.events, window.width, window.height)
        assert picture.encoding == "rgb8"
        np.testing.assert_array_equal(to_numpy(picture), expected)
    assert overlay.encoding == "rgb8" and overlay.height >= 288 and overlay.width > overlay.height
    shown = defaultdict(int)
    for sample, _ in pairs:
        shown[sample.event_count > 0] += 1
    assert shown[True] > 0, "every window was empty: the event images prove nothing"
