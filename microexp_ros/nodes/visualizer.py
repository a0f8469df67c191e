"""visualizer node: image topics to watch the system in rqt_image_view or Foxglove.

- `~/events` (rgb8): each synchronised window's events (ON red, OFF blue, on white), stamped with the window end;
- `~/au_overlay` (rgb8): for each AUPredictions, the RGB frame of its window (or the event image when the
  window has none) scaled up, the face box, and a bar per AU (active AUs red and named).
Predictions are matched to their window by window end. A prediction can overtake its sample (this node renders
every sample and falls behind under load): it waits for it, up to `history` predictions. A prediction whose
window is no longer held, or that waited out `history`, is counted (`drop/window_not_held`). Rendering is in
`microexp_ros.viz.render`, shared with the reports.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from microexp_ros.hri.facs import AUState
from microexp_ros.msg import AUPredictions, FaceRegion, SyncedSample
from microexp_ros.nodes.sample_input import RegionSource, RegionUnavailable, camera_frame, read_sample
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.image import ImageEncodingError, to_image
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import from_time_msg
from microexp_ros.viz.render import au_overlay, event_image

PARAMS = [
    Param("history", 90, "windows kept for predictions still to come, and predictions kept for windows still to "
          "come", min=1, max=10000, read_only=True),
    Param("use_face_region", False, "draw the latest FaceRegion on `face_region`", read_only=True),
]


class VisualizerNode(Node):
    def __init__(self) -> None:
        super().__init__("visualizer")
        self.params = declare_parameters(self, PARAMS)
        self.health = Health(self)
        self.regions = RegionSource(self.params["use_face_region"], None, None, "", 10**9)
        # window end (host ns) -> (base image for the overlay, True when it is the RGB frame)
        self.windows: OrderedDict[int, tuple[np.ndarray, bool]] = OrderedDict()
        self.waiting: OrderedDict[int, AUPredictions] = OrderedDict()   # window end -> prediction ahead of it
        self.events_pub = self.create_publisher(Image, "~/events", qos.image_qos())
        self.overlay_pub = self.create_publisher(Image, "~/au_overlay", qos.image_qos())
        self.health.watch(self.create_subscription(SyncedSample, "samples", self.on_sample, qos.samples_qos()),
                          "in:samples")
        self.create_subscription(AUPredictions, "/au_predictions", self.on_predictions, qos.predictions_qos())
        if self.params["use_face_region"]:
            self.create_subscription(FaceRegion, "face_region", self.regions.update_from_msg, qos.predictions_qos())

    def on_sample(self, msg: SyncedSample) -> None:
        self.health.count("in:samples")
        window = read_sample(msg, self.health)
        if window is None:
            return
        picture = event_image(window.events, window.width, window.height)
        header = Header(stamp=msg.window_end, frame_id=msg.events.header.frame_id)
        self.events_pub.publish(to_image(picture, "rgb8", header))
        self.health.count("out:event_images")
        base, is_rgb = picture, False
        if msg.has_rgb:
            try:
                base, is_rgb = camera_frame(msg.rgb), True
            except ImageEncodingError as error:
                self.health.error("bad_image", str(error))
            else:
                if base.ndim == 3:
                    base = np.ascontiguousarray(base[:, :, ::-1])  # BGR -> RGB
        end = from_time_msg(msg.window_end)
        self.windows[end] = (base, is_rgb)
        while len(self.windows) > self.params["history"]:
            self.windows.popitem(last=False)
        if end in self.waiting:
            self._overlay(self.waiting.pop(end), base, is_rgb)

    def on_predictions(self, msg: AUPredictions) -> None:
        self.health.count("in:au_predictions")
        end = from_time_msg(msg.window_end)
        held = self.windows.get(end)
        if held is not None:
            self._overlay(msg, *held)
        elif self.windows and end < next(iter(self.windows)):   # older than every held window: gone
            self.health.drop("window_not_held")
        else:
            self.waiting[end] = msg
            while len(self.waiting) > self.params["history"]:
                self.waiting.popitem(last=False)
                self.health.drop("window_not_held")

    def _overlay(self, msg: AUPredictions, base: np.ndarray, is_rgb: bool) -> None:
        """Publish the overlay of a prediction on the picture of its window."""
        try:
            crop = self.regions.select(from_time_msg(msg.window_end))
            roi = crop.rgb_roi if is_rgb else crop.event_roi
        except RegionUnavailable:   # no face region yet: the overlay goes without a box
            roi = None
        units = [AUState(u.number, u.probability, u.active) for u in msg.action_units]
        caption = f"{msg.face_id or 'face'} {msg.inference_latency_ms:.1f} ms"
        picture = au_overlay(base, units, roi, caption)
        self.overlay_pub.publish(to_image(picture, "rgb8", Header(stamp=msg.window_end, frame_id=msg.header.frame_id)))
        self.health.count("out:au_overlays")


def main() -> None:
    sys.exit(run_node(VisualizerNode))


if __name__ == "__main__":
    main()
