"""The data-plane nodes as real processes exchanging real messages over DDS.

driver (a real recording) → time_sync → samples whose events are exactly the offline decode inside the window;
bag_player (a bag with known clock offsets) → time_sync → RGB/event pairing error < 1 ms, by stamps and by
trigger; driver → bag_recorder → an MCAP bag equal, message by message, to what the driver published (with
`forward_recorded_words`: packets spliced from the recording's words, decoding to exactly the packetizer's
events); and
malformed input counted in /diagnostics while the nodes keep running; events that stop while their publisher
stays matched reported there as a silence.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool

from microexp_ros.data.bag_io import BagReader, BagWriter, TopicQos
from microexp_ros.data.typestore import EVENT_PACKET, IMAGE, typestore
from microexp_ros.events.array import TRIGGER_DTYPE
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import Packetizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all
from microexp_ros.msg import SyncedSample
from procs.cdr_files import read_blobs, write_blobs

PROCS = Path(__file__).parent / "procs"
BAG = ("event_camera_py", "test_events_1.bag")   # 343,474 events, 2.08 s, 640x480, ROS 1
WINDOW_NS = 30_000_000


def node(module: str, env: dict, *args: str, name: str | None = None) -> subprocess.Popen:
    ros_args = ["--ros-args", *args] + (["-r", f"__node:={name}"] if name else [])
    return subprocess.Popen([sys.executable, "-m", f"microexp_ros.nodes.{module}", *ros_args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> tuple[int, str]:
    """SIGINT (as a launcher does) and the exit code and output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -9, out
    return proc.returncode, out


def recorder(tmp_path: Path, env: dict, streams: list[dict], timeout_s: float) -> tuple[subprocess.Popen, list]:
    """The cdr_recorder test process on `streams` ({topic, type, qos, count}); returns it and its files."""
    spec = [{**s, "file": str(tmp_path / f"got_{i}.bin")} for i, s in enumerate(streams)]
    proc = subprocess.Popen([sys.executable, str(PROCS / "cdr_recorder.py"), json.dumps(spec), str(timeout_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, [s["file"] for s in spec]


def finish(proc: subprocess.Popen, others: list[subprocess.Popen], exiting: list[subprocess.Popen] = (),
           timeout: float = 60.0) -> int:
    """Wait for `proc`; then for the `exiting` nodes to end by themselves, and stop the `others`: all exit 0."""
    try:
        proc.wait(timeout=timeout)
    finally:
        for node_proc in exiting:
            try:
                out, _ = node_proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                node_proc.kill()
                out, _ = node_proc.communicate()
            assert node_proc.returncode == 0, out
        for other in others:
            code, out = stop(other)
            assert code == 0, out
    return proc.returncode


def decode_sample(sample: SyncedSample) -> np.ndarray:
    """A sample's events alone: its packet is self-contained EVT3 in the stream's sensor time."""
    packet = sample.events
    return make_decoder(packet.encoding, packet.width, packet.height).decode(memoryview(packet.events)).events


def in_window(events: np.ndarray, start: int, end: int) -> np.ndarray:
    return events[(events["t"] >= start) & (events["t"] < end)]


@pytest.fixture(scope="module")
def recording(real_data):
    chunk = next(iter(read_all(open_events(real_data.joinpath(*BAG))).values()))
    return chunk.events, chunk.triggers


def test_driver_to_time_sync_windows_are_exact(tmp_path, ros_env, real_data, recording):
    events, triggers = recording
    first = int(min(events["t"][0], triggers["t"][0]))
    last = int(max(events["t"][-1], triggers["t"][-1]))
    period = 50_000_000
    expected = (last - first) // period
    sync = node("time_sync", ros_env, "-p", "events_only:=true", "-p", "window_rate_hz:=20.0",
                "-p", "window_ms:=50.0", "-r", "events:=/event_camera/events")
    rec, files = recorder(tmp_path, ros_env, [{"topic": "/time_sync/samples", "type": "microexp_ros/msg/SyncedSample",
                                               "qos": "reliable", "count": expected, "publishers": 1}], 60)
    driver = node("event_camera_driver", ros_env, "-p", f"file:={real_data.joinpath(*BAG)}",
                  "-p", "wait_for_subscribers:=1", "-p", "exit_when_done:=true", "-p", "rate:=2.0",
                  "-p", "event_message_time_threshold:=0.004")  # ~250 packets/s, as metavision_driver sends
    assert finish(rec, [], [driver]) == 0
    samples = [deserialize_message(b, SyncedSample) for b in read_blobs(files[0])]
    # the windows were spliced from the driver's own words, not re-encoded
    diag, diag_files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable", "count": 2}], 30)
    assert finish(diag, [sync]) == 0
    values = _diagnostics(read_blobs(diag_files[0]))
    assert int(values["count/windows_spliced"]) == expected and "count/windows_reencoded" not in values
    assert [s.sequence for s in samples] == list(range(expected))
    assert not any(s.has_rgb for s in samples)
    for k, sample in enumerate(samples):
        end = first + (k + 1) * period
        assert (sample.sensor_time_start_ns, sample.sensor_time_end_ns) == (end - period, end)
        want = in_window(events, end - period, end)
        got = decode_sample(sample)
        assert np.array_equal(got, want), k
        assert (sample.event_count, sample.on_count) == (want.size, int(want["p"].sum()))
        assert sample.trigger_count == in_window(triggers, end - period, end).size
    assert sum(s.event_count for s in samples) == in_window(events, first, first + expected * period).size


def test_time_sync_holds_its_first_samples_until_its_reader_matched(tmp_path, ros_env, real_data, recording):
    """A reader that appears only after the whole recording was played still gets every sample, from the first:
    time_sync (wait_for_subscribers 1) held them. Without the hold the recorder would get none."""
    events, triggers = recording
    first = int(min(events["t"][0], triggers["t"][0]))
    last = int(max(events["t"][-1], triggers["t"][-1]))
    expected = (last - first) // 100_000_000
    sync = node("time_sync", ros_env, "-p", "events_only:=true", "-p", "window_rate_hz:=10.0",
                "-p", "window_ms:=100.0", "-r", "events:=/event_camera/events", "-p", "wait_for_subscribers:=1",
                "-p", "subscriber_timeout_s:=60.0")
    driver = node("event_camera_driver", ros_env, "-p", f"file:={real_data.joinpath(*BAG)}",
                  "-p", "wait_for_subscribers:=1", "-p", "exit_when_done:=true", "-p", "rate:=2.0")
    code, out = driver.wait(timeout=60), driver.stdout.read()
    assert code == 0, out
    time.sleep(1.0)   # the last windows are cut
    rec, files = recorder(tmp_path, ros_env, [{"topic": "/time_sync/samples", "type": "microexp_ros/msg/SyncedSample",
                                               "qos": "reliable", "count": expected}], 60)
    assert finish(rec, []) == 0
    samples = [deserialize_message(b, SyncedSample) for b in read_blobs(files[0])]
    assert [s.sequence for s in samples] == list(range(expected))
    diag, diag_files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable", "count": 2},
        {"topic": "/time_sync/ready", "type": "std_msgs/msg/Bool", "qos": "latched", "count": 1}], 30)
    assert finish(diag, [sync]) == 0
    values = _diagnostics(read_blobs(diag_files[0]))
    assert int(values["count/held_until_matched"]) == expected
    assert "error/subscribers_not_matched" not in values
    # its latched ready flag says the gate opened with its reader matched
    assert [deserialize_message(b, Bool).data for b in read_blobs(diag_files[1])] == [True]


def test_bag_player_plays_only_once_the_graph_says_ready(tmp_path, ros_env):
    """A bag player told to wait for a node's `~/ready` flag and for a reader of its topic plays nothing until
    both are there, then everything."""
    from microexp_ros.nodes.bag_player import EMBEDDED_BAG
    from microexp_ros.resources import share_path

    topic = "/ground_truth/au"
    count = BagReader(share_path(*EMBEDDED_BAG)).topics[topic].count
    player = node("bag_player", ros_env, "-p", f"topics:=['{topic}']", "-p", "rate:=4.0",
                  "-p", "wait_for_ready:=['/face_region/ready']", "-p", f"wait_for_readers:=['{topic}']",
                  "-p", "exit_when_done:=true")
    region = node("face_region", ros_env, "-p", "source:=static")
    time.sleep(6.0)   # the bag's topic plays in under 2 s at rate 4: still there means it waits (for a reader)
    assert player.poll() is None, player.stdout.read()
    rec, files = recorder(tmp_path, ros_env, [{"topic": topic, "type": "microexp_ros/msg/AUGroundTruth",
                                               "qos": "reliable", "count": count, "publishers": 1}], 90)
    assert finish(rec, [region], exiting=[player]) == 0
    assert len(read_blobs(files[0])) == count
    # and with a reader there from the start, it waits for the flag
    rec, files = recorder(tmp_path, ros_env, [{"topic": topic, "type": "microexp_ros/msg/AUGroundTruth",
                                               "qos": "reliable", "count": count}], 90)
    player = node("bag_player", ros_env, "-p", f"topics:=['{topic}']", "-p", "rate:=4.0",
                  "-p", "wait_for_ready:=['/face_region/ready']", "-p", f"wait_for_readers:=['{topic}']",
                  "-p", "exit_when_done:=true")
    time.sleep(6.0)
    assert player.poll() is None, player.stdout.read()
    region = node("face_region", ros_env, "-p", "source:=static")
    assert finish(rec, [region], exiting=[player]) == 0
    assert len(read_blobs(files[0])) == count


def known_offset_bag(path: Path, events: np.ndarray, offset_ns: int, drift_ppm: float, rng) -> tuple[list, list]:
    """A bag of the recording's events (4 ms packets, metavision_driver's usual rate) plus 30 Hz images and a strobe on trigger channel 0.

    Host time of sensor time s is offset + s·(1 + drift); packet stamps add a transport delay of 0.05–2 ms,
    image stamps are the exact host time of the exposure. Packets keep their order (stamps never decrease). Returns the frame sensor times and image stamps.
    """
    store = typestore()
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    t0 = int(events["t"][0])

    def host(s: int) -> int:
        return offset_ns + s + int((s - t0) * drift_ppm * 1e-6)

    def header(ns: int, frame: str):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    frames = np.arange(t0 + 100_000_000, int(events["t"][-1]) - 100_000_000, 33_333_333, dtype=np.int64)
    strobe = np.zeros(frames.size, TRIGGER_DTYPE)
    strobe["t"], strobe["edge"], strobe["id"] = frames // 1000 * 1000, 1, 0   # EVT3 time is µs
    packetizer = Packetizer(4_000_000)
    packets = packetizer.add(events, strobe) + packetizer.flush()
    messages, stamp = [], 0
    for seq, packet in enumerate(packets):
        # arrival order is send order: a stamp is never earlier than the previous packet's
        stamp = max(host(packet.first_t) + int(rng.uniform(50_000, 2_000_000)), stamp + 1)
        msg = store.types[EVENT_PACKET](header=header(stamp, "events"), height=480, width=640, seq=seq, time_base=0,
                                        encoding="evt3", is_bigendian=False, events=np.frombuffer(packet.data, np.uint8))
        messages.append(("/event_camera/events", stamp + 100_000, store.serialize_cdr(msg, EVENT_PACKET)))
    stamps = []
    for k, frame in enumerate(frames):
        stamp = host(int(frame))
        pixels = np.full((24, 32, 3), k % 256, np.uint8)
        msg = store.types[IMAGE](header=header(stamp, "rgb"), height=24, width=32, encoding="bgr8", is_bigendian=0,
                                 step=96, data=pixels.reshape(-1))
        # images reach the recorder 40 ms after exposure: later than the events of their window
        messages.append(("/rgb/image_raw", stamp + 40_000_000, store.serialize_cdr(msg, IMAGE)))
        stamps.append(stamp)
    with BagWriter(path) as writer:
        writer.add_topic("/event_camera/events", EVENT_PACKET, TopicQos("best_effort", depth=1000))
        writer.add_topic("/rgb/image_raw", IMAGE, TopicQos("best_effort", depth=10))
        for topic, t, cdr in sorted(messages, key=lambda m: m[1]):
            writer.write(topic, t, cdr)
    return [int(f) for f in frames], stamps


def test_bag_player_to_time_sync_pairs_frames_within_1ms(tmp_path, ros_env, recording):
    events, _ = recording
    bag = tmp_path / "known_offsets"
    frames, stamps = known_offset_bag(bag, events, 1_700_000_000_000_000_000, 60.0, np.random.default_rng(5))
    syncs = [node("time_sync", ros_env, "-p", f"sync_mode:={mode}", "-p", "window_ms:=30.0",
                  "-r", "events:=/event_camera/events", "-r", "image:=/rgb/image_raw",
                  "-r", f"~/samples:=/samples_{mode}", name=f"time_sync_{mode}") for mode in ("stamps", "trigger")]
    # the first frames may arrive while the clock has only a few packets: all must still be paired
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": f"/samples_{mode}", "type": "microexp_ros/msg/SyncedSample", "qos": "reliable", "count": len(frames),
         "publishers": 1} for mode in ("stamps", "trigger")], 60)
    player = node("bag_player", ros_env, "-p", f"bag:={bag}", "-p", "wait_for_subscribers:=2",
                  "-p", "exit_when_done:=false")
    assert finish(rec, [player, *syncs]) == 0
    for mode, file in zip(("stamps", "trigger"), files):
        samples = [deserialize_message(b, SyncedSample) for b in read_blobs(file)]
        assert len(samples) == len(frames)
        errors = []
        for sample, frame, stamp in zip(samples, frames, stamps):
            assert sample.has_rgb and sample.rgb.header.stamp.sec * 10**9 + sample.rgb.header.stamp.nanosec == stamp
            errors.append(abs(int(sample.sensor_time_end_ns) - frame))
            start, end = int(sample.sensor_time_start_ns), int(sample.sensor_time_end_ns)
            assert end - start == WINDOW_NS
            assert np.array_equal(decode_sample(sample), in_window(events, start, end))
        assert max(errors) < 1_000_000, (mode, errors)
        if mode == "trigger":   # pinned to the strobe edge: exact to the µs EVT3 carries
            assert max(errors) < 1_000


def test_recorder_writes_what_the_driver_published(tmp_path, ros_env, real_data, recording):
    out = tmp_path / "recorded"
    rec = node("bag_recorder", ros_env, "-p", f"output:={out}", "-p", "topics:=['/event_camera/events']")
    time.sleep(1.0)
    driver = node("event_camera_driver", ros_env, "-p", f"file:={real_data.joinpath(*BAG)}",
                  "-p", "wait_for_subscribers:=1", "-p", "exit_when_done:=true", "-p", "rate:=2.0",
                  "-p", "frame_id:=cam0", "-p", "forward_recorded_words:=true")
    code, out_text = driver.wait(timeout=60), driver.stdout.read()
    assert code == 0, out_text
    time.sleep(0.5)
    code, rec_out = stop(rec)
    assert code == 0, rec_out
    # what the driver published, rebuilt offline with the same packetizer
    events, triggers = recording
    packetizer = Packetizer(1_000_000)
    want = packetizer.add(events, triggers) + packetizer.flush()
    reader = BagReader(out)
    recorded_qos = reader.topics["/event_camera/events"].qos   # DDS discovery does not carry the depth
    assert (recorded_qos.reliability, recorded_qos.durability) == ("best_effort", "volatile")
    store = typestore()
    got = [store.deserialize_cdr(m.cdr, EVENT_PACKET) for m in reader.messages()]
    assert [m.seq for m in got] == list(range(len(want)))
    # forward_recorded_words: the driver forwards the bag's own words (SplicingPacketizer): other bytes, the
    # same packets. Decoded
    # as a stream and each on its own (self-contained), they hold exactly the packetizer's events.
    stream = make_decoder("evt3", 640, 480)
    spliced = 0
    for msg, packet in zip(got, want):
        assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == ("evt3", 640, 480, "cam0")
        spliced += bytes(msg.events) != packet.data
        for decoded in (stream.decode(msg.events), make_decoder("evt3", 640, 480).decode(msg.events)):
            assert np.array_equal(decoded.events, packet.events)
            assert np.array_equal(decoded.triggers, packet.triggers)
    assert spliced > len(want) // 2   # most packets were forwarded, not re-encoded
    from mcap.reader import make_reader
    with open(next(out.glob("*.mcap")), "rb") as f:
        raw = [bytes(m.data) for _, _, m in make_reader(f).iter_messages()]
    assert raw == [m.cdr for m in reader.messages()]


def _diagnostics(blobs: list[bytes]) -> dict[str, str]:
    latest: dict[str, str] = {}
    for blob in blobs:
        for status in deserialize_message(blob, DiagnosticArray).status:
            latest.update({kv.key: kv.value for kv in status.values})
    return latest


def test_malformed_packets_are_counted_and_time_sync_keeps_running(tmp_path, ros_env):
    from builtin_interfaces.msg import Time
    from event_camera_msgs.msg import EventPacket
    from rclpy.serialization import serialize_message
    from microexp_ros.events.array import EVENT_DTYPE
    from microexp_ros.events.evt3 import encode_evt3

    def packet(seq, data, encoding="evt3", width=64, height=64, stamp_ms=0):
        msg = EventPacket(height=height, width=width, seq=seq, encoding=encoding, time_base=0)
        msg.header.stamp = Time(sec=100 + stamp_ms // 1000, nanosec=(stamp_ms % 1000) * 10**6)
        msg.events = bytes(data)
        return serialize_message(msg)

    good = np.zeros(200, EVENT_DTYPE)
    good["t"] = np.arange(200) * 1_000_000 + 1_000_000
    good["x"] = np.arange(200) % 64
    stream = encode_evt3(good)
    backwards = np.zeros(3, EVENT_DTYPE)
    backwards["t"] = [5_000_000, 6_000_000, 7_000_000]
    blobs = [packet(0, stream[: len(stream) // 2]),
             packet(1, b"\x01\x02\x03", encoding="evt9"),             # unknown encoding
             packet(2, stream[:5], width=0),                          # zero geometry
             packet(3, b"\x01\x80\x88"),                              # truncated word on a bad stream
             packet(4, encode_evt3(backwards), stamp_ms=5),            # time going backwards
             packet(7, stream[len(stream) // 2:], stamp_ms=100)]      # a sequence gap
    sent = tmp_path / "bad.bin"
    write_blobs(sent, blobs)
    sync = node("time_sync", ros_env, "-p", "events_only:=true", "-p", "window_rate_hz:=50.0",
                "-r", "events:=/event_camera/events")
    pub = subprocess.run([sys.executable, str(PROCS / "cdr_publisher.py"), json.dumps([{
        "topic": "/event_camera/events", "type": "event_camera_msgs/msg/EventPacket", "file": str(sent),
        "qos": "best_effort", "rate_hz": 50.0}])], env=ros_env, capture_output=True, text=True, timeout=60)
    assert pub.returncode == 0, pub.stderr
    # diagnostics published after every packet was handled
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable", "count": 2}], 30)
    assert rec.wait(timeout=40) == 0
    assert sync.poll() is None, "time_sync died on malformed input"
    code, out = stop(sync)
    assert code == 0, out
    values = _diagnostics(read_blobs(files[0]))
    assert int(values["error/bad_packet"]) >= 2                     # evt9 and width 0
    assert int(values["drop/packet_gap"]) == 2
    # the garbage after the 3-byte packet, and the jump back in time, are counted, whichever way they show
    assert sum(int(values.get(f"drop/decode:{k}", 0)) for k in ("unknown_word", "out_of_bounds")) >= 1
    assert int(values.get("drop/events_out_of_order", 0)) + int(values.get("drop/clock_restart", 0)) >= 1
    assert int(values["count/out:samples"]) > 0                      # the good packets still made windows


def _packets_then_silence(tmp_path: Path, env: dict, linger_s: float) -> subprocess.Popen:
    """A publisher of /event_camera/events that sends 5 packets and then stays matched, silent, for `linger_s`
    (a stalled camera, or what a deaf reader hears). Five, not one: best-effort data can be lost while
    discovery settles, and a reader that never got anything is rightly not reported."""
    from event_camera_msgs.msg import EventPacket
    from rclpy.serialization import serialize_message
    from microexp_ros.events.array import EVENT_DTYPE
    from microexp_ros.events.evt3 import encode_evt3

    blobs = []
    for seq in range(5):
        events = np.zeros(50, EVENT_DTYPE)
        events["t"] = seq * 500_000_000 + np.arange(50) * 10_000_000 + 1_000_000
        msg = EventPacket(height=64, width=64, seq=seq, encoding="evt3", time_base=0, events=encode_evt3(events))
        msg.header.stamp.sec = 100 + seq
        blobs.append(serialize_message(msg))
    sent = tmp_path / "few.bin"
    write_blobs(sent, blobs)
    return subprocess.Popen([sys.executable, str(PROCS / "cdr_publisher.py"), json.dumps([{
        "topic": "/event_camera/events", "type": "event_camera_msgs/msg/EventPacket", "file": str(sent),
        "qos": "best_effort", "rate_hz": 50.0}]), str(linger_s)], env=env, stderr=subprocess.PIPE, text=True)


def test_time_sync_reports_events_that_stop_while_their_publisher_is_still_there(tmp_path, ros_env):
    from microexp_ros.ros.diagnostics import SILENT_AFTER_S

    sync = node("time_sync", ros_env, "-p", "events_only:=true", "-r", "events:=/event_camera/events")
    pub = _packets_then_silence(tmp_path, ros_env, SILENT_AFTER_S + 8.0)
    # 1 Hz diagnostics from the node's start: its start-up, the packets, 5 s of silence, the warning, with margin
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable",
         "count": int(SILENT_AFTER_S) + 10}], 40)
    assert rec.wait(timeout=50) == 0
    assert pub.wait(timeout=30) == 0, pub.stderr.read()
    code, out = stop(sync)
    assert code == 0, out
    statuses = [status for blob in read_blobs(files[0]) for status in deserialize_message(blob, DiagnosticArray).status]
    warned = [s for s in statuses if s.message.startswith("no in:packets for")]
    assert warned, ([(s.level, s.message, {kv.key: kv.value for kv in s.values}.get("count/in:packets"))
                     for s in statuses], out)
    assert warned[0].level == DiagnosticStatus.WARN
    assert "from 1 matched publisher(s) of /event_camera/events" in warned[0].message
    assert float({kv.key: kv.value for kv in warned[0].values}["silent_s/in:packets"]) >= SILENT_AFTER_S
    assert 1 <= int({kv.key: kv.value for kv in warned[0].values}["count/in:packets"]) <= 5
    assert "no in:packets for" in out                                 # logged once, as a warning
    assert out.count("no in:packets for") == 1, out


def test_time_sync_with_deaf_restart_s_leaves_only_when_the_other_nodes_go_quiet_too(tmp_path, ros_env):
    from microexp_ros.ros.diagnostics import DEAF_EXIT_CODE, SILENT_AFTER_S

    restart_s = SILENT_AFTER_S + 2.0
    sync = node("time_sync", ros_env, "-p", "events_only:=true", "-p", f"deaf_restart_s:={restart_s}",
                "-r", "events:=/event_camera/events")
    # another node of the graph, whose 1 Hz /diagnostics time_sync hears (a driver retrying a missing file)
    peer = node("event_camera_driver", ros_env, "-p", f"file:={tmp_path / 'absent.raw'}", "-r",
                "__node:=peer_driver", "-r", "~/events:=/unrelated/events")
    pub = _packets_then_silence(tmp_path, ros_env, 60.0)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in sync.stdout),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30.0
        while not any("no in:packets for" in line for _, line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        warned = [t for t, line in lines if "no in:packets for" in line]   # after 5 s of silence
        assert warned, "".join(line for _, line in lines)
        warned_at = warned[0]
        time.sleep(restart_s - SILENT_AFTER_S + 2.0)
        assert sync.poll() is None, "".join(line for _, line in lines)  # input silent 9 s, but the graph heard
        peer.send_signal(signal.SIGSTOP)          # the graph goes quiet too, its participants still matched
        frozen_at = time.monotonic()
        sync.wait(timeout=restart_s + 10.0)
        left_at = time.monotonic()
    finally:
        peer.send_signal(signal.SIGCONT)
        pub.kill()
        stop(peer)
        if sync.poll() is None:
            stop(sync)
    reader.join(timeout=5)
    out = "".join(line for _, line in lines)
    assert sync.returncode == DEAF_EXIT_CODE, out
    assert left_at - frozen_at >= restart_s - 1.5, (left_at - frozen_at, out)   # after the peers' silence
    assert left_at - warned_at >= restart_s - SILENT_AFTER_S + 2.0
    error = [line for line in out.splitlines() if "deaf, leaving" in line]
    assert len(error) == 1 and "ERROR" in error[0] and "no in:packets for" in error[0], out
    assert "no /diagnostics from 1 other node(s)" in error[0]
    assert "Traceback" not in out


def test_driver_survives_a_missing_file(tmp_path, ros_env):
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable", "count": 2}], 30)
    driver = node("event_camera_driver", ros_env, "-p", f"file:={tmp_path / 'absent.raw'}",
                  "-p", "retry_initial_s:=0.1")
    assert rec.wait(timeout=40) == 0
    assert driver.poll() is None
    code, out = stop(driver)
    assert code == 0, out
    assert "absent.raw" in out and "retrying" in out
    assert int(_diagnostics(read_blobs(files[0]))["error/source_open"]) >= 2


def test_rgb_driver_plays_a_face_video_with_exposure_stamps(tmp_path, ros_env, real_data):
    from sensor_msgs.msg import Image

    from microexp_ros.ros.image import to_numpy

    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/rgb/image_raw", "type": "sensor_msgs/msg/Image", "qos": "best_effort", "count": 72}], 40)
    rgb = node("rgb_driver", ros_env, "-p", f"source:={real_data / 'pyfeat' / 'single_face.mp4'}", "-p", "fps:=0.0",
               "-p", "wait_for_subscribers:=1")
    assert finish(rec, [rgb]) == 0
    images = [deserialize_message(b, Image) for b in read_blobs(files[0])]
    assert len(images) == 72                      # every frame of the 2.4 s clip
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images])
    assert np.allclose(np.diff(stamps), 1e9 / 30, atol=2)   # the file's 30 fps, stamped by frame position
    frame = to_numpy(images[10])
    assert frame.shape == (360, 640, 3) and images[10].encoding == "bgr8" and frame.std() > 10


def test_drivers_withdraw_their_publisher_when_a_recording_ends(ros_env, real_data):
    """A file played without loop or exit_when_done: the driver stays, its readers see no publisher left (the
    stream ended) rather than a matched one gone silent (which Health.watch reports)."""
    import rclpy

    # real time (2.1 s and 2.4 s of stream): long enough for the probe to see both publishers before they go
    events = node("event_camera_driver", ros_env, "-p", f"file:={real_data.joinpath(*BAG)}", "-p", "rate:=1.0")
    rgb = node("rgb_driver", ros_env, "-p", f"source:={real_data / 'pyfeat' / 'single_face.mp4'}")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("publisher_probe", context=context)
    topics = ("/event_camera/events", "/rgb/image_raw")
    try:
        seen, deadline = set(), time.monotonic() + 40.0
        while time.monotonic() < deadline:
            counts = {topic: probe.count_publishers(topic) for topic in topics}
            seen |= {topic for topic, n in counts.items() if n}
            if seen == set(topics) and not any(counts.values()):
                break
            time.sleep(0.1)
        assert seen == set(topics) and not any(counts.values()), (seen, counts)
        assert events.poll() is None and rgb.poll() is None          # the drivers themselves stay
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
    for driver, ended in ((events, "source ended"), (rgb, "end of")):
        code, out = stop(driver)
        assert code == 0 and ended in out, out


def test_rgb_driver_keeps_retrying_a_missing_device(tmp_path, ros_env):
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/diagnostics", "type": "diagnostic_msgs/msg/DiagnosticArray", "qos": "reliable", "count": 2}], 30)
    rgb = node("rgb_driver", ros_env, "-p", "source:='57'", "-p", "retry_initial_s:=0.1")  # no such device
    assert rec.wait(timeout=40) == 0
    assert rgb.poll() is None
    code, out = stop(rgb)
    assert code == 0, out
    assert int(_diagnostics(read_blobs(files[0]))["error/open_failed"]) >= 2


def test_bag_player_start_offset_loop_and_raw_bytes(tmp_path, ros_env, real_data):
    bag = real_data.joinpath(*BAG)
    reader = BagReader(bag)
    want = [m.cdr for m in reader.messages(start_ns=reader.start_ns + 1_000_000_000)]  # ROS 1 → CDR once
    rec, files = recorder(tmp_path, ros_env, [
        {"topic": "/event_camera/events", "type": "event_camera_msgs/msg/EventPacket", "qos": "reliable",
         "count": 2 * len(want)}], 60)
    player = node("bag_player", ros_env, "-p", f"bag:={bag}", "-p", "start_offset:=1.0", "-p", "loop:=true",
                  "-p", "rate:=4.0", "-p", "topics:=['/event_camera/events']", "-p", "wait_for_subscribers:=1",
                  "-p", "wait_for_ready:=['/cdr_recorder/ready']", "-p", "exit_when_done:=false")
    assert finish(rec, [player]) == 0
    got = read_blobs(files[0])
    assert got == want + want     # two passes from the offset, byte for byte what the reader converted
