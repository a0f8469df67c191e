"""face_region node: where the face is, in RGB pixels and in event-camera pixels.

Detects the face (dlib HOG, `face.detector`) in the RGB frame of each sample (`source: samples`) or of each
image on `image` (`source: image`), grows the box by `margin`, maps it into event pixels through the
`homography` parameter (RGB → event, 9 numbers row-major, from `microexp calibrate homography`) and publishes
`~/region` (microexp_ros/FaceRegion) and ROS4HRI `/humans/faces/<face_id>/roi` (normalised to the RGB frame).
With no RGB camera (`source: static`) it publishes the fixed `static_region` (event pixels) for every sample,
stamped with the window end, `detected` false, and the ROS4HRI roi normalised to the event sensor.
Frames without a face, unreadable frames and boxes mapped off the sensor are counted and skipped.
"""

from __future__ import annotations

import sys

from hri_msgs.msg import NormalizedRegionOfInterest2D
from rclpy.node import Node
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from microexp_ros.face.detector import FaceDetector, frontal_face_detector
from microexp_ros.face.homography import expand_box, homography_from_params, map_box
from microexp_ros.msg import FaceRegion, SyncedSample
from microexp_ros.nodes.sample_input import camera_frame, region_param
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.params import Param, ParameterError, command_line_value, declare_parameters
from microexp_ros.ros.ready import announce_ready
from microexp_ros.ros.runtime import run_node

SOURCES = ("samples", "image", "static")
IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]

PARAMS = [
    Param("source", "samples", "where frames come from", choices=SOURCES, read_only=True),
    Param("homography", IDENTITY, "RGB → event pixel homography, 9 numbers row-major", read_only=True),
    Param("static_region", [0, 0, 0, 0], "face region [x, y, w, h] in event pixels for source 'static' "
          "([0, 0, 0, 0] = the whole sensor)",
          read_only=True),
    Param("event_width", 0, "event sensor width (0 = from the samples; required for source 'image')", min=0,
          read_only=True),
    Param("event_height", 0, "event sensor height (0 = from the samples; required for source 'image')", min=0,
          read_only=True),
    Param("face_id", "f00000", "ROS4HRI id of the tracked face", read_only=True),
    Param("margin", 0.15, "grow the detected box by this fraction of its size on every side", min=0.0, max=1.0,
          read_only=True),
    Param("upsample", 0, "detector image upsampling (1 finds faces down to ~40 px, 4x slower)", min=0, max=2,
          read_only=True),
    Param("threshold", 0.0, "detector SVM score threshold (higher = fewer false faces)", min=-2.0, max=3.0,
          read_only=True),
    Param("max_side", 640, "shrink frames to this longest side before detection", min=64, max=4096, read_only=True),
]


def roi_msg(box: tuple[int, int, int, int]) -> RegionOfInterest:
    x, y, w, h = box
    return RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False)


def normalised(box: tuple[int, int, int, int], size: tuple[int, int], confidence: float,
               header: Header) -> NormalizedRegionOfInterest2D:
    x, y, w, h = box
    width, height = size
    return NormalizedRegionOfInterest2D(header=header, xmin=x / width, ymin=y / height, xmax=(x + w) / width,
                                        ymax=(y + h) / height, c=confidence)


class FaceRegionNode(Node):
    def __init__(self) -> None:
        super().__init__("face_region")
        p = declare_parameters(self, PARAMS)
        self.params = p
        self.matrix = homography_from_params(p["homography"])
        # [0, 0, 0, 0] (region_param → None) with source 'static' means the whole event sensor.
        self.static = region_param("static_region", p["static_region"])
        self.event_size = (p["event_width"], p["event_height"])
        if p["source"] == "image" and 0 in self.event_size:
            raise ParameterError("source 'image' needs event_width and event_height (the event sensor size)")
        self.detector = None if p["source"] == "static" else FaceDetector(p["upsample"], p["threshold"],
                                                                          p["max_side"])
        self.health = Health(self)
        # Subscriptions first: the `~/ready` flag a bag player waits for comes after them, so the first
        # samples are not missed.
        if p["source"] == "image":
            self.health.watch(self.create_subscription(Image, "image", self.on_image, qos.image_qos()), "in:image")
        else:
            self.health.watch(self.create_subscription(SyncedSample, "samples", self.on_sample, qos.samples_qos()),
                              "in:samples")
        self.region_pub = self.create_publisher(FaceRegion, "~/region", qos.predictions_qos())
        self.roi_pub = self.create_publisher(NormalizedRegionOfInterest2D, f"/humans/faces/{p['face_id']}/roi",
                                             qos.predictions_qos())
        announce_ready(self)

    def _sensor_size(self, msg: SyncedSample | None) -> tuple[int, int] | None:
        if 0 not in self.event_size:
            return self.event_size
        size = (int(msg.events.width), int(msg.events.height))
        if 0 in size:
            self.health.error("bad_events", f"sample {msg.sequence} has a {size[0]}x{size[1]} event sensor")
            return None
        return size

    def on_sample(self, msg: SyncedSample) -> None:
        self.health.count("in:samples")
        sensor = self._sensor_size(msg)
        if sensor is None:
            return
        if self.params["source"] == "static":
            self.publish_static(msg, sensor)
        elif not msg.has_rgb:
            self.health.drop("no_rgb")
        else:
            self.detect(msg.rgb, sensor)

    def on_image(self, msg: Image) -> None:
        self.health.count("in:image")
        self.detect(msg, self.event_size)

    def publish_static(self, msg: SyncedSample, sensor: tuple[int, int]) -> None:
        x, y, w, h = self.static or (0, 0, *sensor)
        if x + w > sensor[0] or y + h > sensor[1]:
            self.health.error("static_region_outside_sensor", f"{self.static} on a {sensor[0]}x{sensor[1]} sensor")
            return
        header = Header(stamp=msg.window_end, frame_id=msg.header.frame_id)
        self.region_pub.publish(FaceRegion(header=header, face_id=self.params["face_id"], detected=False,
                                           confidence=1.0, event_roi=roi_msg((x, y, w, h))))
        self.roi_pub.publish(normalised((x, y, w, h), sensor, 1.0, header))
        self.health.count("out:region")

    def detect(self, image: Image, sensor: tuple[int, int]) -> None:
        try:
            frame = camera_frame(image)
            faces = self.detector.detect(frame)
        except ValueError as error:  # ImageEncodingError included
            self.health.error("bad_image", str(error))
            return
        if not faces:
            self.health.drop("no_face")
            return
        best = faces[0]
        size = (frame.shape[1], frame.shape[0])
        rgb_box = expand_box(best.box, self.params["margin"], size)
        try:
            event_box = map_box(self.matrix, rgb_box, sensor)
        except ValueError as error:
            self.health.error("face_off_sensor", str(error))
            return
        header = Header(stamp=image.header.stamp, frame_id=image.header.frame_id)
        self.region_pub.publish(FaceRegion(header=header, face_id=self.params["face_id"], detected=True,
                                           confidence=best.confidence, rgb_roi=roi_msg(rgb_box),
                                           event_roi=roi_msg(event_box)))
        self.roi_pub.publish(normalised(rgb_box, size, best.confidence, header))
        self.health.count("out:region")
        self.health.values["confidence"] = best.confidence


def _prepare_detector() -> None:
    """`run_node`'s prepare: build the face detector before a standby waits, unless the ROS arguments make
    this a `static` face_region (no detection)."""
    if command_line_value(sys.argv, "face_region", "source") != "static":
        frontal_face_detector()


def main() -> None:
    sys.exit(run_node(FaceRegionNode, prepare=_prepare_detector))


if __name__ == "__main__":
    main()
