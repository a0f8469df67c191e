"""Face detection on a real photo and the RGB → event homography (mapping, estimation, checkerboards)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexp_ros.face.detector import FaceDetector
from microexp_ros.face.homography import (estimate_from_checkerboards, estimate_homography, expand_box,
                                          homography_from_params, map_box, map_points)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()  # loading dlib's model takes about a second: once per module


def test_detects_the_face_of_a_real_photo(real_data, detector):
    image = cv2.imread(str(real_data / "pyfeat" / "single_face.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    # The man's face sits around the image centre-left: eyes near y~250, chin near y~400 in this 572x562 photo.
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    assert 200 < cx < 340 and 230 < cy < 360, face
    assert 150 < face.w < 300 and 150 < face.h < 300
    assert 0.5 < face.confidence <= 1.0


def test_detection_is_scale_consistent_and_finds_several_faces(real_data, detector):
    image = cv2.imread(str(real_data / "pyfeat" / "single_face.jpg"))
    full = detector.detect(image)[0]
    detector.max_side = 281  # detect at half size, boxes scaled back
    try:
        shrunk = detector.detect(image)
        detector.max_side = 1000
        faces = detector.detect(cv2.imread(str(real_data / "pyfeat" / "multi_face.jpg")))
    finally:
        detector.max_side = 640
    assert len(shrunk) == 1
    assert np.allclose(shrunk[0].box, full.box, atol=0.12 * full.w)
    assert len(faces) >= 3
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_no_face_in_an_event_like_noise_image_and_bad_images_rejected(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(rng.integers(0, 256, (240, 320), dtype=np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((240, 320), np.float32))
    with pytest.raises(ValueError, match="upsample"):
        FaceDetector(upsample=5)


def test_a_face_region_standby_builds_the_detector_before_promotion(monkeypatch):
    """face_region's prepare step (run before a hot standby waits) builds dlib's detector, which every
    FaceDetector then shares; a `static` face_region, which detects nothing, skips it."""
    pytest.importorskip("rclpy")
    from microexp_ros.face.detector import frontal_face_detector
    from microexp_ros.nodes import face_region

    frontal_face_detector.cache_clear()
    monkeypatch.setattr("sys.argv", ["face_region", "--ros-args", "-p", "source:=static"])
    face_region._prepare_detector()
    assert frontal_face_detector.cache_info().currsize == 0
    monkeypatch.setattr("sys.argv", ["face_region", "--ros-args", "-p", "source:=samples"])
    face_region._prepare_detector()
    assert frontal_face_detector.cache_info().currsize == 1
    built = frontal_face_detector()
    assert FaceDetector()._detector is built and FaceDetector(upsample=1)._detector is built


def test_box_mapping_through_a_known_homography():
    # Event camera at half the RGB resolution, shifted by (10, 20) event pixels.
    matrix = homography_from_params([0.5, 0, 10, 0, 0.5, 20, 0, 0, 1])
    assert map_box(matrix, (100, 60, 200, 100), (640, 480)) == (60, 50, 100, 50)
    # Clipped to the sensor, and a box that misses the sensor is an error, not an empty crop.
    assert map_box(matrix, (1100, 800, 300, 300), (640, 480)) == (560, 420, 80, 60)
    with pytest.raises(ValueError, match="outside"):
        map_box(matrix, (2000, 2000, 100, 100), (640, 480))
    assert expand_box((100, 100, 100, 50), 0.1, (640, 480)) == (90, 95, 120, 60)
    assert expand_box((0, 0, 100, 100), 0.5, (120, 120)) == (0, 0, 120, 120)


@pytest.mark.parametrize("values, message", [
    ([1, 0, 0, 0, 1, 0, 0, 0], "9 numbers"),
    ([1, 0, 0, 0, 1, 0, 0, 0, 0], r"H\[2\]\[2\] is 0"),
    ([1, 2, 0, 2, 4, 0, 0, 0, 1], "singular"),
    ([1, 0, float("nan"), 0, 1, 0, 0, 0, 1], "non-finite"),
])
def test_bad_homography_parameters_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        homography_from_params(values)


def test_estimation_recovers_a_perspective_homography_despite_an_outlier():
    truth = np.array([[0.52, 0.03, 14.0], [-0.02, 0.49, 22.0], [1e-5, -2e-5, 1.0]])
    rng = np.random.default_rng(1)
    src = rng.uniform([0, 0], [1280, 720], size=(30, 2))
    dst = map_points(truth, src) + rng.normal(0, 0.2, size=(30, 2))
    dst[3] += 80.0  # a mis-clicked point
    fit = estimate_homography(src, dst)
    assert fit.inliers == 29 and fit.points == 30
    assert fit.rms_error_px < 0.5
    probe = np.array([[640.0, 360.0], [100.0, 600.0]])
    assert np.allclose(map_points(fit.matrix, probe), map_points(truth, probe), atol=0.5)
    with pytest.raises(ValueError, match="at least 4"):
        estimate_homography(src[:3], dst[:3])


def _board(pattern: tuple[int, int], square: int, size: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """A white image with a checkerboard of (cols, rows) inner corners drawn at `origin`."""
    image = np.full((size[1], size[0]), 255, np.uint8)
    for r in range(pattern[1] + 1):
        for c in range(pattern[0] + 1):
            if (r + c) % 2 == 0:
                x, y = origin[0] + c * square, origin[1] + r * square
                image[y:y + square, x:x + square] = 0
    return image


def test_checkerboard_homography_between_an_rgb_frame_and_an_event_frame():
    pattern = (6, 4)
    rgb = cv2.cvtColor(_board(pattern, 40, (640, 480), (100, 80)), cv2.COLOR_GRAY2BGR)
    # The event camera sees the board at half scale, shifted. The board is shown on a flashing screen: in a
    # window its white squares and margin produce a few OFF events per pixel, black squares none, plus noise.
    rng = np.random.default_rng(2)
    white = _board(pattern, 20, (320, 240), (40, 30)) == 255
    event_frame = -rng.poisson(3.0, white.shape).astype(np.float32) * white + rng.normal(0, 0.3, white.shape)
    fit, used = estimate_from_checkerboards([(rgb, event_frame)], pattern)
    assert used == 1
    expected = homography_from_params([0.5, 0, -10, 0, 0.5, -10, 0, 0, 1])
    probe = np.array([[140.0, 120.0], [340.0, 240.0]])
    assert np.allclose(map_points(fit.matrix, probe), map_points(expected, probe), atol=1.0)
    with pytest.raises(ValueError, match="no frame pair"):
        estimate_from_checkerboards([(rgb, np.zeros((240, 320), np.float32))], pattern)


# --- microexp calibrate homography ------------------------------------------------------------------------------

def test_calibrate_from_points_writes_the_params_yaml(tmp_path, capsys):
    import json

    import yaml

    from microexp_ros.cli import main

    truth = homography_from_params([0.5, 0.01, 12.0, -0.02, 0.5, 25.0, 0.0, 0.0, 1.0])
    src = np.array([[100, 100], [1000, 120], [980, 650], [120, 600], [500, 360], [300, 200]], float)
    dst = map_points(truth, src)
    csv = tmp_path / "points.csv"
    csv.write_text("rgb_x,rgb_y,event_x,event_y\n" + "".join(f"{a:.4f},{b:.4f},{c:.4f},{d:.4f}\n"
                                                              for (a, b), (c, d) in zip(src, dst)))
    out = tmp_path / "homography.yaml"
    assert main(["calibrate", "homography", "--points", str(csv), "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inliers"] == 6 and report["rms_error_px"] < 0.01
    params = yaml.safe_load(out.read_text())["face_region"]["ros__parameters"]["homography"]
    assert np.allclose(homography_from_params(params), truth, atol=1e-4)
    csv.write_text("1,2,3\n4,5,6,7\n")
    assert main(["calibrate", "homography", "--points", str(csv)]) == 2
    assert "microexp calibrate homography: error:" in (err := capsys.readouterr().err)
    assert "expected rgb_x,rgb_y,event_x,event_y" in err


def test_calibrate_from_a_bag_of_a_flashing_checkerboard(tmp_path, capsys):
    import json

    from event_camera_msgs.msg import EventPacket
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from microexp_ros.cli import main
    from microexp_ros.data.bag_io import BagWriter
    from microexp_ros.events.array import empty_events
    from microexp_ros.events.evt3 import Evt3Encoder
    from microexp_ros.ros.image import numpy_to_image
    from microexp_ros.ros.stamps import to_time_msg

    pattern, rng = (6, 4), np.random.default_rng(4)
    rgb = cv2.cvtColor(_board(pattern, 40, (640, 480), (100, 80)), cv2.COLOR_GRAY2BGR)
    ys, xs = np.nonzero(_board(pattern, 20, (320, 240), (40, 30)) == 255)
    encoder, bag = Evt3Encoder(), tmp_path / "calib"
    with BagWriter(bag) as writer:
        writer.add_topic("/rgb/image_raw", "sensor_msgs/msg/Image")
        writer.add_topic("/event_camera/events", "event_camera_msgs/msg/EventPacket")
        for k in range(2):
            frame_t = (1 + k) * 10**9
            for packet_t in range(frame_t - 40_000_000, frame_t, 10_000_000):  # 10 ms packets of the flash
                n = 40_000
                pick = rng.integers(0, xs.size, n)
                events = empty_events(n)
                events["t"] = np.sort(rng.integers(packet_t, packet_t + 10_000_000, n)) // 1000 * 1000
                events["x"], events["y"], events["p"] = xs[pick], ys[pick], 0
                msg = EventPacket(header=Header(stamp=to_time_msg(packet_t)), height=240, width=320, seq=k,
                                  time_base=0, encoding="evt3", is_bigendian=False)
                msg.events = encoder.encode(events)
                writer.write("/event_camera/events", packet_t, serialize_message(msg))
            image = numpy_to_image(rgb, "bgr8", Header(stamp=to_time_msg(frame_t)))
            writer.write("/rgb/image_raw", frame_t, serialize_message(image))
    assert main(["calibrate", "homography", "--bag", str(bag), "--pattern", "6x4", "--window-ms", "45",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_used"] == 2
    expected = homography_from_params([0.5, 0, -10, 0, 0.5, -10, 0, 0, 1])
    probe = np.array([[140.0, 120.0], [340.0, 240.0]])
    assert np.allclose(map_points(homography_from_params(report["homography"]), probe),
                       map_points(expected, probe), atol=1.0)
