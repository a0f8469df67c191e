"""How many events per second the driver → time_sync path carries without loss on this machine.

Two parts, measured in one run on a real recording (event_camera_py/test_events_1.bag) tiled to a large stream:
- stages: each node's per-event work in one process, no ROS — the driver's file source reading and decoding
  the bag, the driver's whole path for an evt3 bag (read, decode, packets spliced from the bag's words), the
  packetizer other sources go through (1 ms packets, EVT3 encode), time_sync's decode → window cut → window bytes
  spliced from the input (the node's `EventStreamWindows`), the same with the window re-encoded instead (the
  node's fallback), and a bare decode of the same packets as the baseline, by thread CPU time and wall clock,
  on the stream compressed to the density of a fast stream (default 30 Mev/s, ~30k events per 1 ms packet).
- end to end: the real nodes as processes (driver playing a bag of the stream time-compressed to a target
  rate, paced in real time; time_sync in events-only mode; a subscriber here), for increasing target rates.
  A rate is lossless when every sample arrives (no sequence gap, no drop of any kind in the nodes'
  diagnostics) and the samples hold every event of their windows; real time when it is lossless and
  delivery keeps up (achieved rate >= 80 % of the target). Each node's CPU seconds are read while it runs,
  so the events per CPU second it needed are reported next to the wall-clock rate (the machine is shared).
  The sweep goes up until a rate loses events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from microexp_ros.bench.decode import tiled_stream
from microexp_ros.data.bag_io import BagWriter, TopicQos
from microexp_ros.data.typestore import EVENT_PACKET, typestore
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import Packetizer, SplicingPacketizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.events.sources import EventStreamSource, make_source
from microexp_ros.sync.stream_windows import EventStreamWindows
from microexp_ros.sync.windows import FixedRateWindows, WindowCutter

DEFAULT_RECORDING = Path("event_camera_py") / "test_events_1.bag"
WIDTH, HEIGHT = 640, 480
WINDOW_NS = 33_333_333
KEEP_UP = 0.8   # achieved / target rate for a lossless run to count as real time
# host stamp of a packet = its sensor time + this, as a driver started 1 s after the sensor would stamp it
HOST_OFFSET_NS = 1_000_000_000
# time_sync's event history: the 33 ms windows plus delivery lag; at 64 Mev/s still below its 20 M-event cap
HISTORY_MS = 200.0
# diagnostics counters reported per run: time_sync's windows spliced/re-encoded and packets taken in bursts,
# the driver's packets spliced from the bag's words / encoded
COUNTERS = ("windows_spliced", "windows_reencoded", "packets_drained", "packets_spliced", "packets_encoded")


def load_recording(path: str | Path) -> np.ndarray:
    chunk = next(iter(read_all(open_events(path)).values()))
    if chunk.events.size == 0:
        raise ValueError(f"{path}: no events")
    return chunk.events


def at_rate(events: np.ndarray, mev_per_s: float) -> np.ndarray:
    """The stream with its times rescaled to `mev_per_s` million events per second (µs resolution kept)."""
    if not mev_per_s > 0:
        raise ValueError(f"target rate must be > 0 Mev/s, got {mev_per_s}")
    out = events.copy()
    t = out["t"] - out["t"][0]
    duration_ns = events.size / (mev_per_s * 1e6) * 1e9
    scale = duration_ns / max(int(t[-1]), 1)
    out["t"] = (np.floor(t * scale / 1000) * 1000).astype(np.int64) + 1_000_000
    return out


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def stage_rates(events: np.ndarray, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Mev/s of the driver's stages, the time_sync stage and a bare decode baseline (medians of `repeats`)."""
    with tempfile.TemporaryDirectory(prefix="bench_dataplane_stages_") as tmp:
        bag = Path(tmp) / "stream"
        _write_bag(bag, events)
        opened = make_source("file", {"file": str(bag)})   # opened once, as by the driver: not part of the rate
        try:
            return _stage_rates(events, opened, repeats)
        finally:
            opened.close()


def _stage_rates(events: np.ndarray, opened: EventStreamSource, repeats: int) -> dict[str, dict[str, float]]:
    packetizer = Packetizer(1_000_000)
    packets = packetizer.add(events) + packetizer.flush()

    def source() -> None:   # what the driver's file source does before the packetizer: read the bag, decode
        for _ in opened.batches():
            pass

    def forwarded() -> None:   # the driver's whole path for an evt3 bag: read, decode, splice the bag's words
        pk = SplicingPacketizer(opened.width, opened.height, 1_000_000)
        for batch in opened.batches():
            pk.add_words(batch.words, batch.state, batch.events, batch.triggers)
        pk.flush()

    def driver() -> None:
        pk = Packetizer(1_000_000)
        for start in range(0, events.size, 65_536):
            pk.add(events[start:start + 65_536])
        pk.flush()

    def decode_only() -> None:
        decoder = make_decoder("evt3", WIDTH, HEIGHT)
        for packet in packets:
            decoder.decode(packet.data)

    def time_sync(splice: bool) -> None:
        stream = EventStreamWindows(WindowCutter(history_ns=int(HISTORY_MS * 1e6)),
                                    FixedRateWindows(WINDOW_NS, WINDOW_NS), splice=splice)
        for seq, packet in enumerate(packets):
            stream.add(packet.data, HOST_OFFSET_NS + packet.first_t, seq, "evt3", WIDTH, HEIGHT)
            for window in stream.ready():
                stream.encoded(window)

    stages = {"driver file source (bag read + decode)": source,
              "driver, evt3 bag forwarded (read + decode + splice)": forwarded,
              "driver (packetize + encode), other sources": driver,
              "time_sync (decode + cut + splice)": lambda: time_sync(True),
              "time_sync, windows re-encoded": lambda: time_sync(False),
              "baseline: decode only": decode_only}
    for fn in stages.values():  # warm-up: numba kernels load from the on-disk cache
        fn()
    out = {}
    for name, fn in stages.items():
        runs = [_timed(fn) for _ in range(repeats)]
        wall = float(np.median([r[0] for r in runs]))
        cpu = float(np.median([r[1] for r in runs]))
        out[name] = {"wall_mevps": events.size / wall / 1e6, "cpu_mevps": events.size / max(cpu, 1e-9) / 1e6}
    return out


def _write_bag(path: Path, events: np.ndarray) -> None:
    """The stream as a bag of 1 ms EventPackets (what a camera driver would have recorded)."""
    store = typestore()
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    packetizer = Packetizer(1_000_000)
    with BagWriter(path) as writer:
        writer.add_topic("/event_camera/events", EVENT_PACKET, TopicQos("best_effort", depth=1000))
        for seq, packet in enumerate(packetizer.add(events) + packetizer.flush()):
            stamp = HOST_OFFSET_NS + packet.first_t
            msg = store.types[EVENT_PACKET](
                header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="bench"),
                height=HEIGHT, width=WIDTH, seq=seq, time_base=0, encoding="evt3", is_bigendian=False,
                events=np.frombuffer(packet.data, np.uint8))
            writer.write("/event_camera/events", stamp, store.serialize_cdr(msg, EVENT_PACKET))


def _expected(events: np.ndarray) -> tuple[int, int]:
    """Windows and events time_sync must deliver in events-only mode (windows tile from the first event)."""
    first, last = int(events["t"][0]), int(events["t"][-1])
    n = (last - first) // WINDOW_NS
    inside = np.count_nonzero(events["t"] < first + n * WINDOW_NS)
    return n, int(inside)


def end_to_end(events: np.ndarray, mev_per_s: float, packet_ms: float = 1.0,
               timeout_s: float = 60.0, forward_words: bool = True) -> dict[str, float]:
    """Play `events` at `mev_per_s` through driver (packets of `packet_ms`; with `forward_words` the bag's
    own words re-cut, else decoded and re-encoded) and time_sync processes; what arrived, and how fast."""
    import psutil
    import rclpy
    import rclpy.executors
    from diagnostic_msgs.msg import DiagnosticArray

    from microexp_ros.msg import SyncedSample
    from microexp_ros.ros import qos
    from microexp_ros.ros.dds import configure_transport, private_domain_id

    stream = at_rate(events, mev_per_s)
    windows, in_windows = _expected(stream)
    env = dict(os.environ, ROS_DOMAIN_ID=str(private_domain_id()), PYTHONUNBUFFERED="1")
    configure_transport(env)
    with tempfile.TemporaryDirectory(prefix="bench_dataplane_") as tmp:
        bag = Path(tmp) / "stream"
        _write_bag(bag, stream)
        os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
        configure_transport()   # this process joins the nodes' domain over the same transport
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("bench_dataplane", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        got = {"samples": 0, "events": 0, "first": None, "last": None, "gaps": 0, "seq": -1, "drops": {},
               **{key: 0 for key in COUNTERS}}
        cpu = {"driver": [0.0, 0.0], "time_sync": [0.0, 0.0]}   # CPU s at the first sample, and last read

        def on_sample(msg) -> None:
            now = time.monotonic()
            if got["first"] is None:
                got["first"] = now
                for times in cpu.values():
                    times[0] = times[1]
            got["last"] = now
            got["gaps"] += int(msg.sequence != got["seq"] + 1)
            got["seq"] = int(msg.sequence)
            got["samples"] += 1
            got["events"] += int(msg.event_count)

        def on_diagnostics(msg) -> None:
            for status in msg.status:
                for kv in status.values:
                    if kv.key.startswith("drop/"):
                        got["drops"][f"{status.name}:{kv.key[5:]}"] = int(kv.value)
                    elif kv.key.startswith("count/") and kv.key[6:] in COUNTERS:
                        got[kv.key[6:]] = int(kv.value)

        node.create_subscription(SyncedSample, "/time_sync/samples", on_sample, qos.samples_qos(1000))
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.predictions_qos())
        base = [sys.executable, "-m"]
        sync = subprocess.Popen(base + ["microexp_ros.nodes.time_sync", "--ros-args", "-p", "events_only:=true",
                                        "-p", f"window_ms:={WINDOW_NS / 1e6}",
                                        "-p", f"window_rate_hz:={1e9 / WINDOW_NS}", "-p", f"history_ms:={HISTORY_MS}",
                                        "-r", "events:=/event_camera/events"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = subprocess.Popen(base + ["microexp_ros.nodes.event_camera_driver", "--ros-args",
                                          "-p", f"file:={bag}", "-p", "wait_for_subscribers:=1",
                                          "-p", "exit_when_done:=true",
                                          "-p", f"event_message_time_threshold:={packet_ms / 1e3}",
                                          "-p", f"forward_recorded_words:={str(forward_words).lower()}"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watched = {"driver": psutil.Process(driver.pid), "time_sync": psutil.Process(sync.pid)}

        def read_cpu() -> None:
            for name, proc in watched.items():
                try:
                    times = proc.cpu_times()
                    cpu[name][1] = times.user + times.system
                except psutil.NoSuchProcess:   # the driver exits when its recording ends
                    pass

        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and got["samples"] < windows:
                executor.spin_once(timeout_sec=0.05)
                read_cpu()
            end = time.monotonic() + 1.5   # the next diagnostics report
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
        finally:
            for proc in (driver, sync):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc in (driver, sync):
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
    stream_s = (int(stream["t"][-1]) - int(stream["t"][0])) / 1e9
    # samples arrive one window apart once flowing: events after the first sample over the time they took
    span = (got["last"] - got["first"]) if got["samples"] > 1 else 0.0
    flowed = got["events"] * (1 - 1 / max(got["samples"], 1)) / 1e6   # Mev delivered after the first sample
    achieved = flowed / span if span > 0 else 0.0
    drops = {k: v for k, v in got["drops"].items() if v}
    lossless = (got["samples"] == windows and got["gaps"] == 0 and not drops and got["events"] == in_windows)
    sustained = bool(lossless and achieved >= KEEP_UP * mev_per_s)
    # events per CPU second each node spent while samples flowed (its startup excluded)
    cpu_rates = {f"{name}_cpu_mevps": flowed / (t[1] - t[0]) if t[1] > t[0] else 0.0 for name, t in cpu.items()}
    return {"target_mevps": mev_per_s, "events": int(stream.size), "stream_s": stream_s,
            "windows_expected": windows, "windows_received": got["samples"], "events_expected": in_windows,
            "events_received": got["events"], "packet_gaps": sum(v for k, v in drops.items()
                                                                  if k.endswith(":packet_gap")),
            "drops": drops, **{key: got[key] for key in COUNTERS}, "achieved_mevps": achieved, **cpu_rates,
            "lossless": bool(lossless), "sustained": sustained}


def run_dataplane_benchmark(recording: Path, events: int, rates: list[float], seconds: float = 2.0,
                            repeats: int = 3, stage_density_mevps: float = 30.0, packet_ms: float = 1.0,
                            forward_words: bool = True) -> dict:
    """Stage rates on a tiled stream of `events` events compressed to `stage_density_mevps` (so packets hold
    as many events as at that rate: per-packet overheads weigh as they would), then the end-to-end sweep over
    `rates` (Mev/s), each playing `seconds` of stream; the sweep stops after the first rate that loses events."""
    base = load_recording(recording)
    stages = stage_rates(at_rate(tiled_stream(base, events), stage_density_mevps), repeats)
    sweep = []
    for rate in sorted(rates):
        result = end_to_end(tiled_stream(base, int(rate * 1e6 * seconds)), rate, packet_ms,
                            forward_words=forward_words)
        print(f"bench dataplane: {rate:g} Mev/s -> lossless={result['lossless']} "
              f"achieved={result['achieved_mevps']:.2f} Mev/s", file=sys.stderr, flush=True)
        sweep.append(result)
        if not result["lossless"]:
            break
    sustained = [r["target_mevps"] for r in sweep if r["sustained"]]
    return {"recording": str(recording), "events": int(events), "stage_density_mevps": stage_density_mevps,
            "packet_ms": packet_ms, "forward_words": forward_words,
            "load_average": list(os.getloadavg()), "stages": stages, "end_to_end": sweep,
            "max_sustained_mevps": max(sustained) if sustained else 0.0}
