"""Every custom message, and a ≥ 1 MiB EventPacket stream, crosses DDS between two separate processes intact."""

from __future__ import annotations

import array
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from event_camera_msgs.msg import EventPacket
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from microexp_ros.facs import MODEL_AUS, au_name
from microexp_ros.msg import (ActionUnit, AUGroundTruth, AUPredictions, FaceRegion, ReconstructionQuality,
                              SyncedSample)
from microexp_ros.ros.image import numpy_to_image
from procs.cdr_files import read_blobs, write_blobs

PROCS = Path(__file__).parent / "procs"


def stamp(rng: random.Random) -> Time:
    return Time(sec=rng.randrange(2**31), nanosec=rng.randrange(10**9))


def header(rng: random.Random) -> Header:
    return Header(stamp=stamp(rng), frame_id=f"frame_{rng.randrange(1000)}")


def event_packet(rng: random.Random, size: int) -> EventPacket:
    msg = EventPacket(header=header(rng), height=720, width=1280, seq=rng.randrange(2**63),
                      time_base=rng.randrange(2**63), encoding="evt3", is_bigendian=False)
    msg.events = rng.randbytes(size)
    return msg


def make_messages(rng: random.Random) -> dict[str, list]:
    aus = [ActionUnit(number=n, name=au_name(n), probability=rng.random(), active=rng.random() > 0.5,
                      intensity=rng.uniform(0, 5)) for n in MODEL_AUS]
    image = numpy_to_image(np.frombuffer(rng.randbytes(48 * 64 * 3), np.uint8).reshape(48, 64, 3), "bgr8",
                           header(rng))
    return {
        "microexp_ros/msg/ActionUnit": aus[:3],
        "microexp_ros/msg/AUPredictions": [AUPredictions(
            header=header(rng), face_id="f00001", window_start=stamp(rng), window_end=stamp(rng),
            action_units=aus, modality=AUPredictions.MODALITY_EVENTS, model_name="snn_events_default",
            inference_latency_ms=3.25) for _ in range(3)],
        "microexp_ros/msg/SyncedSample": [SyncedSample(
            header=header(rng), has_rgb=True, rgb=image, events=event_packet(rng, 200_000),
            window_start=stamp(rng), window_end=stamp(rng), sensor_time_start_ns=rng.randrange(2**63),
            sensor_time_end_ns=rng.randrange(2**63), event_count=rng.randrange(2**32),
            on_count=rng.randrange(2**32), trigger_count=7, sequence=rng.randrange(2**63)) for _ in range(3)],
        "microexp_ros/msg/ReconstructionQuality": [
            ReconstructionQuality(header=header(rng), has_reference=True, ssim=0.85, psnr=26.9, mse=0.002),
            ReconstructionQuality(header=header(rng), has_reference=False, ssim=math.nan, psnr=math.nan,
                                  mse=math.nan)],
        "microexp_ros/msg/FaceRegion": [FaceRegion(
            header=header(rng), face_id="f00001", detected=True, confidence=0.9,
            rgb_roi=RegionOfInterest(x_offset=10, y_offset=20, width=100, height=120, do_rectify=False),
            event_roi=RegionOfInterest(x_offset=300, y_offset=200, width=400, height=480, do_rectify=True))],
        "microexp_ros/msg/AUGroundTruth": [AUGroundTruth(
            header=header(rng), clip_id="c00012", identity="id007", lighting="dim", active_aus=[12, 6],
            intensities=[2.0, 1.5], phase=AUGroundTruth.PHASE_APEX, onset=stamp(rng), apex=stamp(rng),
            offset=stamp(rng))],
    }


def exchange(tmp_path: Path, env: dict, streams: list[dict]) -> dict[str, list]:
    """Publish each stream's messages from one process, record them in another; return topic → received.

    A stream is {"topic", "type", "messages", "qos", "rate_hz"}.
    """
    pub_spec, rec_spec = [], []
    for i, stream in enumerate(streams):
        sent, got = tmp_path / f"sent_{i}.bin", tmp_path / f"got_{i}.bin"
        write_blobs(sent, [serialize_message(m) for m in stream["messages"]])
        common = {"topic": stream["topic"], "type": stream["type"], "qos": stream["qos"]}
        pub_spec.append({**common, "file": str(sent), "rate_hz": stream["rate_hz"]})
        rec_spec.append({**common, "file": str(got), "count": len(stream["messages"])})
    recorder = subprocess.Popen([sys.executable, str(PROCS / "cdr_recorder.py"), json.dumps(rec_spec), "60"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert recorder.stdout.readline().strip() == "ready"
    publisher = subprocess.run([sys.executable, str(PROCS / "cdr_publisher.py"), json.dumps(pub_spec)], env=env,
                               capture_output=True, text=True, timeout=90)
    assert publisher.returncode == 0, publisher.stderr
    _, err = recorder.communicate(timeout=90)
    assert recorder.returncode == 0, f"recorder did not get every message: {err}"
    return {stream["topic"]: [deserialize_message(blob, type(stream["messages"][0]))
                              for blob in read_blobs(rec["file"])]
            for stream, rec in zip(streams, rec_spec)}


def same(a, b) -> bool:
    """Field-by-field equality where NaN equals NaN (message __eq__ says NaN != NaN)."""
    if type(a) is not type(b):
        return False
    if hasattr(a, "get_fields_and_field_types"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.get_fields_and_field_types())
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (array.array, np.ndarray)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_custom_message_round_trips_between_processes(tmp_path, ros_env):
    by_type = make_messages(random.Random(1))
    streams = [{"topic": "/test_" + name.split("/")[-1].lower(), "type": name, "messages": msgs,
                "qos": "reliable", "rate_hz": 50.0} for name, msgs in by_type.items()]
    received = exchange(tmp_path, ros_env, streams)
    for stream in streams:
        got = received[stream["topic"]]
        assert len(got) == len(stream["messages"]), stream["type"]
        for want, msg in zip(stream["messages"], got):
            # float32 fields hold the float32 nearest to the Python float that was set: compare wire values.
            assert same(deserialize_message(serialize_message(want), type(want)), msg), stream["type"]


def test_large_event_packets_arrive_complete_best_effort(tmp_path, ros_env):
    """1 MiB best-effort EventPackets at 100 Hz: the configured transport must deliver every one."""
    rng = random.Random(7)
    packets = [event_packet(rng, 1 << 20) for _ in range(50)]
    stream = {"topic": "/event_camera/events", "type": "event_camera_msgs/msg/EventPacket", "messages": packets,
              "qos": "best_effort", "rate_hz": 100.0}
    received = exchange(tmp_path, ros_env, [stream])[stream["topic"]]
    assert [p.seq for p in received] == [p.seq for p in packets]
    for want, got in zip(packets, received):
        assert same(want, got)
