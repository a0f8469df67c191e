"""The driver's simulated live sources: the synthetic face (kind "face") and a webcam (kind "camera").

The face source is deterministic for its options and its events concentrate where the planned AU moves the
skin while the AU plays; the camera source, fed a real face video as OpenCV would feed it a webcam, times its
events by frame arrival on the host clock; and the real driver process publishes the face source's events as
EventPackets that decode to exactly the events the source yields offline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message

from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.sources import CameraSource, SyntheticFaceSource, make_source
from microexp_ros.sim.face_stream import FaceStream, stream_identity
from microexp_ros.sim.facs_motion import au_field
from procs.cdr_files import read_blobs

PROCS = Path(__file__).parent / "procs"
VIDEO = ("pyfeat", "single_face.mp4")   # 640x360, 30 fps, 72 frames, 2.4 s: one frontal smiling man
MS = 1_000_000


def _events(source) -> np.ndarray:
    return np.concatenate([b.events for b in source.batches()])


@pytest.fixture(scope="module")
def face_run():
    """3 s of the face source at the dataset's high resolution (seed 11 plans AU9 and AU25 episodes in it)."""
    source = SyntheticFaceSource(128, 128, seed=11, duration_s=3.0)
    return source, _events(source)


def test_face_source_is_deterministic_for_its_options():
    options = {"width": 64, "height": 48, "seed": 5, "lighting": "flicker", "identity": 3, "duration_s": 0.4}
    source = make_source("face", options)
    a, b = _events(source), _events(make_source("face", options))
    assert a.size > 100 and np.array_equal(a, b)
    assert np.array_equal(_events(source), a)                   # a second pass starts the same stream again
    assert int(a["x"].max()) < 64 and int(a["y"].max()) < 48
    assert np.all(np.diff(a["t"]) >= 0) and int(a["t"][-1]) <= 400 * MS
    other = _events(make_source("face", {**options, "seed": 6}))
    assert not (other.size == a.size and np.array_equal(other, a))


def test_face_events_concentrate_in_the_au_region_during_its_episode(face_run):
    source, events = face_run
    episodes = [(e, role) for e, role in source.stream.episodes if e.offset_ns <= 3_000 * MS]
    muscle = [e for e, role in episodes if role == "main" and e.au != 45]
    assert {e.au for e in muscle} == {9, 25}
    # time away from every planned episode (with 50 ms of settling), to compare event rates against
    quiet = np.ones(events.size, bool)
    quiet_ns = 3_000 * MS
    for e, _ in source.stream.episodes:
        lo, hi = max(e.onset_ns - 50 * MS, 0), min(e.offset_ns + 50 * MS, 3_000 * MS)
        quiet &= (events["t"] < lo) | (events["t"] >= hi)
        quiet_ns -= max(hi - lo, 0)
    calm = events[quiet]
    for e in muscle:
        dx, dy = au_field(source.stream.identity, e.au, 128)
        magnitude = np.hypot(dx, dy)
        region = magnitude >= 0.3 * magnitude.max()          # where this AU moves the skin
        during = events[(events["t"] >= e.onset_ns) & (events["t"] < e.offset_ns)]
        inside = region[during["y"], during["x"]].sum() / region.sum()
        outside = (~region)[during["y"], during["x"]].sum() / (~region).sum()
        assert inside > 2 * outside, (e.au, inside, outside)       # per pixel, while the AU plays
        rate_during = region[during["y"], during["x"]].sum() / (e.offset_ns - e.onset_ns)
        rate_quiet = region[calm["y"], calm["x"]].sum() / quiet_ns
        assert rate_during > 2 * rate_quiet, (e.au, rate_during, rate_quiet)


def test_face_stream_renders_a_blink_and_goes_on_forever():
    stream = FaceStream(stream_identity(0), "shadow", 48, seed=2)
    frames = stream.frames(48, 48)                             # endless
    means = []
    for k in range(int(12 * stream.render_hz)):                 # 12 s: several segments planned and dropped
        t, frame = next(frames)
        if k % 100 == 0:
            means.append(float(frame.mean()))
    assert t == pytest.approx(12e9, abs=1e7) and frame.shape == (48, 48)
    # the shadow sweeps across the face and back again, rather than staying once it has crossed
    assert np.ptp(means[len(means) // 2:]) > 0.5 * np.ptp(means[:len(means) // 2]) > 0.05
    assert len(stream._segments) <= 2                          # finished segments are not kept
    with pytest.raises(ValueError, match="only moves forward"):
        stream.luminance(0)
    planned = [e for e, _ in stream.episodes]
    assert len(planned) >= 4 and all(e.onset_ns < 15e9 for e in planned)  # planned one segment ahead at most
    blink = next(e for e in planned if e.au == 45)
    again = FaceStream(stream_identity(0), "shadow", 48, seed=2)
    eye_rows = slice(int(0.3 * 48), int(0.55 * 48))
    before = again.luminance(blink.onset_ns - 30 * MS)[eye_rows]
    shut = again.luminance(blink.apex_ns)[eye_rows]
    assert np.abs(shut - before).max() > 0.2                   # the lids close over the eyes


def test_face_source_bad_options_are_named():
    with pytest.raises(ValueError, match="lighting"):
        make_source("face", {"lighting": "moonlight"})
    with pytest.raises(ValueError, match="sensor_model"):
        make_source("face", {"sensor_model": "vga"})
    with pytest.raises(ValueError, match="duration_s"):
        make_source("face", {"duration_s": -1})
    with pytest.raises(ValueError, match="width and height"):
        make_source("face", {"width": 8, "height": 8})


def test_camera_source_times_events_by_frame_arrival(real_data):
    source = make_source("camera", {"device": str(real_data.joinpath(*VIDEO)), "width": 64, "height": 48})
    assert isinstance(source, CameraSource) and source.live
    start = time.monotonic_ns()
    last, early, n, batches = -1, [], 0, 0
    try:
        for batch in source.batches():
            batches += 1
            ev = batch.events
            if ev.size:
                assert int(ev["t"][0]) >= last and np.all(np.diff(ev["t"]) >= 0)
                last = int(ev["t"][-1])
                n += ev.size
                # an event cannot be delivered before the host clock has reached its time
                early.append(last - (time.monotonic_ns() - start))
    finally:
        source.close()
    assert n > 1000 and max(early) <= 0
    # One 1 ms batch per ms from the first frame's arrival to the last's. A file is delivered at its own frame
    # rate, as by a camera, so the 72 frames at 30 fps span at least 71 periods (2.37 s), later if the host lags.
    assert 2366 <= batches <= 2366 + 1000, batches


def test_camera_that_cannot_be_opened_is_named(tmp_path):
    with pytest.raises(OSError, match="cannot open camera"):
        CameraSource(str(tmp_path / "no_such_camera.mp4"))
    with pytest.raises(OSError, match="cannot open camera 57"):
        make_source("camera", {"device": "57"})


def test_driver_process_publishes_the_face_source(tmp_path, ros_env):
    options = {"width": 64, "height": 64, "seed": 4, "lighting": "bright"}
    count = 400  # packets of 1 ms: the first 0.4 s
    spec = [{"topic": "/event_camera/events", "type": "event_camera_msgs/msg/EventPacket", "qos": "best_effort",
             "count": count, "file": str(tmp_path / "packets.bin")}]
    rec = subprocess.Popen([sys.executable, str(PROCS / "cdr_recorder.py"), json.dumps(spec), "40"], env=ros_env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert rec.stdout.readline().strip() == "ready"
    params = [a for k, v in options.items() for a in ("-p", f"{k}:={v}")]
    driver = subprocess.Popen([sys.executable, "-m", "microexp_ros.nodes.event_camera_driver", "--ros-args",
                               "-p", "source:=face", *params, "-p", "wait_for_subscribers:=1"], env=ros_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert rec.wait(timeout=45) == 0, rec.stderr.read()
    finally:
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=15)
    assert driver.returncode == 0, out
    from event_camera_msgs.msg import EventPacket

    packets = [deserialize_message(b, EventPacket) for b in read_blobs(spec[0]["file"])]
    assert [p.seq for p in packets[:count]] == list(range(count))
    assert all((p.encoding, p.width, p.height) == ("evt3", 64, 64) for p in packets)
    stamps = np.array([p.header.stamp.sec * 10**9 + p.header.stamp.nanosec for p in packets])
    assert np.all(np.diff(stamps) > 0)
    got = np.concatenate([make_decoder("evt3", 64, 64).decode(memoryview(p.events)).events for p in packets])
    assert got.size > 500
    expected = _events(make_source("face", {**options, "duration_s": 2.0}))[: got.size]
    assert np.array_equal(got["t"], expected["t"] // 1000 * 1000)   # EVT3 carries microseconds
    for field in ("x", "y", "p"):
        assert np.array_equal(got[field], expected[field])
