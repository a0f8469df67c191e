"""reconstruction node: an intensity image of the face region from each window's events, and its quality.

Subscribes `samples` (microexp_ros/SyncedSample) and calls `Reconstructor.reconstruct` on the window's events
cropped to the face region (the `roi` parameter in event pixels, or the latest FaceRegion when
`use_face_region` is true), exactly as the offline evaluation does; publishes `~/image` (mono8, stamped with
the window end). When the sample carries an RGB frame, `~/quality` scores the image with
`Reconstructor.quality` against that frame cropped to the same face (the FaceRegion's RGB box, or the
`rgb_roi` parameter), converted to gray and resized: the evaluation's alignment.

The model reads the window it was trained on (its sidecar's, e.g. 600 ms) ending at the sample's end: the
samples' events are kept in an `EventHistory` of that span, so a model longer than the samples (time_sync's
200 ms) reads several. Before the history reaches that far back (the stream's first samples, or after a replay
went back in time or a sensor of another size took over: `count/history_resets`) the window's earlier part has
no events, as offline for a recording that starts there; `count/partial_history` counts those windows,
`count/history_gaps` the stretches without samples inside a window. Keyframe models are given the RGB crop of
the previous sample (the current one is the reference); windows before the first RGB frame are skipped
(`drop/no_keyframe`). Bad windows are counted and skipped.
Before it subscribes, the node reconstructs a synthetic window once (`warm_up`), so the first real window
does not pay the fresh process's lazy loading (numba kernels, torch's first allocations). The shipped model is
loaded and warmed up before rclpy starts (`DEFAULT_MODEL`, unless the command line sets `model_path`), so a hot
standby has done it while it waits.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from microexp_ros.events.array import synthetic_events
from microexp_ros.events.history import EventHistory
from microexp_ros.events.window import crop
from microexp_ros.models.recon_inference import Reconstructor
from microexp_ros.msg import FaceRegion, ReconstructionQuality, SyncedSample
from microexp_ros.nodes.sample_input import (RegionSource, RegionUnavailable, camera_frame, read_sample,
                                             region_param)
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.image import to_image
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.prepared_model import PreparedModel
from microexp_ros.ros.ready import announce_ready
from microexp_ros.ros.runtime import run_node
from microexp_ros.ros.stamps import from_time_msg

PARAMS = [
    Param("model_path", "", "CVAE weights (.safetensors with its .json sidecar); empty = the shipped default",
          read_only=True),
    Param("threads", 1, "torch intra-op threads", min=1, max=64, read_only=True),
    Param("roi", [0, 0, 0, 0], "face region [x, y, w, h] in event pixels; w = h = 0 means the whole sensor",
          read_only=True),
    Param("rgb_roi", [0, 0, 0, 0], "the same face in RGB pixels, for the quality reference; 0 size = whole frame",
          read_only=True),
    Param("use_face_region", False, "use the latest FaceRegion on `face_region` instead of `roi`/`rgb_roi`",
          read_only=True),
    Param("face_region_max_age_s", 1.0, "ignore a FaceRegion older than this before the window end", min=0.0,
          read_only=True),
]


# The synthetic warm-up window when the face region's size is not a parameter: the event sensor of the
# generated recordings (the embedded bag's high resolution), and a window length of time_sync's default.
WARM_UP_SIZE = 128
WARM_UP_WINDOW_NS = 200_000_000


def to_mono8(frame: np.ndarray) -> np.ndarray:
    """A [0, 1] float frame as uint8 (rounded), the published image."""
    return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)


def crop_image(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """`image[y:y+h, x:x+w]`; ValueError when the region is not inside the image."""
    if roi is None:
        return image
    x, y, w, h = roi
    if x + w > image.shape[1] or y + h > image.shape[0]:
        raise ValueError(f"RGB region {roi} is outside the {image.shape[1]}x{image.shape[0]} frame")
    return image[y:y + h, x:x + w]


def _warm_up(reconstructor: Reconstructor, width: int, height: int) -> list[float]:
    """Reconstruct a synthetic window of this size; the wall ms of each call."""
    window = WARM_UP_WINDOW_NS
    return reconstructor.warm_up(synthetic_events(width, height, 0, window), 0, window, width, height)


DEFAULT_MODEL = PreparedModel("reconstruction", Reconstructor.from_file,
                              lambda reconstructor: _warm_up(reconstructor, WARM_UP_SIZE, WARM_UP_SIZE))


class ReconstructionNode(Node):
    def __init__(self) -> None:
        super().__init__("reconstruction")
        p = declare_parameters(self, PARAMS)
        self.regions = RegionSource(p["use_face_region"], region_param("roi", p["roi"]),
                                    region_param("rgb_roi", p["rgb_roi"]), "", int(p["face_region_max_age_s"] * 1e9))
        torch.set_num_threads(p["threads"])
        self.reconstructor = DEFAULT_MODEL.take(p["model_path"])
        self.warm_up(None if p["use_face_region"] else self.regions.fixed.event_roi)
        self.health = Health(self)
        self.keyframe: np.ndarray | None = None
        self.history = EventHistory(self.reconstructor.window_ns)
        # Subscriptions first: the `~/ready` flag a bag player waits for comes after them, so the first
        # samples are not missed.
        self.health.watch(self.create_subscription(SyncedSample, "samples", self.on_sample, qos.samples_qos()),
                          "in:samples")
        if p["use_face_region"]:
            self.create_subscription(FaceRegion, "face_region", self.on_face_region, qos.predictions_qos())
        self.image_pub = self.create_publisher(Image, "~/image", qos.image_qos())
        self.quality_pub = self.create_publisher(ReconstructionQuality, "~/quality", qos.predictions_qos())
        announce_ready(self)

    def warm_up(self, roi: tuple[int, int, int, int] | None) -> None:
        """Reconstruct a synthetic window of the fixed region's size (WARM_UP_SIZE when it is not known)."""
        width, height = roi[2:] if roi is not None else (WARM_UP_SIZE, WARM_UP_SIZE)
        times = _warm_up(self.reconstructor, width, height)
        self.get_logger().info(f"warm-up on a synthetic {width}x{height} window: "
                               + ", ".join(f"{ms:.0f}" for ms in times) + " ms")

    def on_face_region(self, msg: FaceRegion) -> None:
        self.health.count("in:face_region")
        self.regions.update_from_msg(msg)

    def on_sample(self, msg: SyncedSample) -> None:
        self.health.count("in:samples")
        window = read_sample(msg, self.health)
        if window is None:
            return
        try:
            face = self.regions.select(from_time_msg(msg.window_end))
        except RegionUnavailable as reason:
            self.health.drop(str(reason))
            return
        rgb = None
        if msg.has_rgb:
            try:
                rgb = crop_image(camera_frame(msg.rgb), face.rgb_roi)
            except ValueError as error:  # ImageEncodingError included
                self.health.error("bad_rgb", str(error))
        keyframe, self.keyframe = self.keyframe, (rgb if rgb is not None else self.keyframe)
        if self.reconstructor.uses_keyframe and keyframe is None:
            self.health.drop("no_keyframe")
            return
        x, y, w, h = face.event_roi or (0, 0, window.width, window.height)
        try:
            if x + w > window.width or y + h > window.height:
                raise ValueError(f"event region {(x, y, w, h)} is outside the {window.width}x{window.height} sensor")
            joined = self.history.add(window.events, window.t0_ns, window.t1_ns, (window.width, window.height))
            self.health.count("history_gaps", int(joined == "gap"))
            self.health.count("history_resets", int(joined == "reset"))
            if self.history.covered_ns < self.reconstructor.window_ns:
                self.health.count("partial_history")
            events, _, t1 = self.history.latest()
            t0 = t1 - self.reconstructor.window_ns
            frame = self.reconstructor.reconstruct(crop(events, x, y, w, h), t0, t1, w, h,
                                                   keyframe=keyframe if self.reconstructor.uses_keyframe else None)
        except ValueError as error:
            self.health.error("bad_window", str(error))
            return
        except RuntimeError as error:  # torch refused this input: count it, keep serving the next windows
            self.health.error("inference", str(error))
            return
        header = Header(stamp=msg.window_end, frame_id=msg.header.frame_id)
        self.image_pub.publish(to_image(to_mono8(frame), "mono8", header))
        self.health.count("out:image")
        if rgb is None:
            return
        try:
            scores = Reconstructor.quality(frame, rgb)
        except ValueError as error:
            self.health.error("quality", str(error))
            return
        self.quality_pub.publish(ReconstructionQuality(header=header, has_reference=True, ssim=scores["ssim"],
                                                       psnr=scores["psnr"], mse=scores["mse"]))
        self.health.count("out:quality")
        for name in ("ssim", "psnr"):
            if math.isfinite(scores[name]):
                self.health.values[name] = scores[name]


def main() -> None:
    sys.exit(run_node(ReconstructionNode, prepare=DEFAULT_MODEL.prepare))


if __name__ == "__main__":
    main()
