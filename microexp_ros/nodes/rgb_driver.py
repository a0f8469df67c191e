"""rgb_driver (node `rgb`): OpenCV capture from a device index or a video file to `~/image_raw` (bgr8).

Frames are stamped at their exposure time: for a device, capture time minus `exposure_latency_ms`; for a video
file, a host clock started at the first frame plus the frame's position in the file (played at `fps`, or the
file's own rate when `fps` is 0). A device that cannot be opened or stops delivering is logged, counted and
reopened with exponential backoff; a file ends (or loops with `loop`).
"""

from __future__ import annotations

import sys
import time

import cv2
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.image import to_image
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.publish_gate import SubscriberWait
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import to_time_msg

PARAMS = [
    Param("source", "0", "camera device index (e.g. '0') or a video file path"),
    Param("fps", 30.0, "capture / playback rate (Hz); 0 = the video file's own rate", min=0.0, max=1000.0),
    Param("width", 0, "requested frame width (0 = the device default); frames are resized to it", min=0, max=8192),
    Param("height", 0, "requested frame height (0 = the device default)", min=0, max=8192),
    Param("frame_id", "rgb", "header.frame_id of the images"),
    Param("loop", False, "restart a video file at its end"),
    Param("wait_for_subscribers", 0, "video file only: start playing once this many subscribers listen",
          min=0, max=100),
    Param("exposure_latency_ms", 0.0, "device only: time from mid-exposure to the frame's arrival (ms)",
          min=0.0, max=1000.0),
    Param("retry_initial_s", 0.5, "first retry delay after a device failure (s)", min=0.01, max=60.0),
    Param("retry_max_s", 10.0, "longest retry delay (s)", min=0.01, max=600.0),
]


class RgbDriver(Node):
    def __init__(self) -> None:
        super().__init__("rgb")
        self.p = declare_parameters(self, PARAMS)
        self.health = Health(self)
        self.publisher = self.create_publisher(Image, "~/image_raw", qos.image_qos())
        source = self.p["source"].strip()
        self.device = int(source) if source.isdigit() else None
        self.path = None if self.device is not None else source
        self.capture: cv2.VideoCapture | None = None
        self.retry_delay = self.p["retry_initial_s"]
        self.next_open = 0.0
        self.file_start_ns = 0
        self.file_frame = 0
        self.done = False
        self.subscribers = SubscriberWait(self.publisher, self.p["wait_for_subscribers"])
        self.period = 1.0 / self.p["fps"] if self.p["fps"] > 0 else None
        self.timer = self.create_timer(self.period or 1 / 30, self.tick)

    def _open(self) -> bool:
        capture = cv2.VideoCapture(self.device if self.device is not None else self.path)
        if not capture.isOpened():
            capture.release()
            self.health.error("open_failed", f"cannot open {self.p['source']}; retrying in {self.retry_delay:.2f} s")
            self.next_open = time.monotonic() + self.retry_delay
            self.retry_delay = min(self.retry_delay * 2, self.p["retry_max_s"])
            return False
        if self.device is not None:
            if self.p["width"]:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.p["width"])
            if self.p["height"]:
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.p["height"])
            if self.p["fps"]:
                capture.set(cv2.CAP_PROP_FPS, self.p["fps"])
        elif self.period is None:
            file_fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            self.period = 1.0 / file_fps
            self.timer.timer_period_ns = int(self.period * 1e9)
        self.capture = capture
        self.retry_delay = self.p["retry_initial_s"]
        self.file_start_ns, self.file_frame = time.time_ns(), 0
        self.get_logger().info(f"opened {self.p['source']}")
        return True

    def tick(self) -> None:
        if self.done:
            return
        if self.path is not None and not self.subscribers.ready():
            return
        if self.capture is None:
            if time.monotonic() < self.next_open or not self._open():
                return
        ok, frame = self.capture.read()
        captured = time.time_ns()
        if not ok:
            self.capture.release()
            self.capture = None
            if self.path is not None and not self.p["loop"]:
                self.get_logger().info(f"end of {self.path}")
                self.done = True
                self.destroy_publisher(self.publisher)   # readers see the stream end, not a silence
            elif self.device is not None:
                self.health.error("device_lost", f"device {self.device} stopped delivering; reopening")
            return
        if self.device is not None:
            stamp = captured - int(self.p["exposure_latency_ms"] * 1e6)
        else:
            stamp = self.file_start_ns + int(round(self.file_frame * self.period * 1e9))
            self.file_frame += 1
        if self.p["width"] and self.p["height"] and frame.shape[:2] != (self.p["height"], self.p["width"]):
            frame = cv2.resize(frame, (self.p["width"], self.p["height"]), interpolation=cv2.INTER_AREA)
        self.publisher.publish(to_image(frame, "bgr8", Header(stamp=to_time_msg(stamp), frame_id=self.p["frame_id"])))
        self.health.count("out:images")

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


def main() -> None:
    sys.exit(run_node(RgbDriver))


if __name__ == "__main__":
    main()
