"""Frame reconstruction from an event window: the one code path shared by offline evaluation and the node.

`Reconstructor` loads a CVAE weights file (the shipped default when no path is given), turns a window of
events into the voxel grid the model was trained on, decodes the prior mean (deterministic), and scores a
prediction against a reference frame with the evaluation's alignment and metrics.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from microexp_ros.bench.timing import latencies_ms
from microexp_ros.eval.image_metrics import frame_quality, to_unit_gray
from microexp_ros.events.voxel import voxel_grid
from microexp_ros.events.window import window_slice
from microexp_ros.models.cvae import CVAEConfig, ReconCVAE
from microexp_ros.models.weights import load_model
from microexp_ros.resources import share_path

DEFAULT_WEIGHTS = "cvae_default.safetensors"
# The window of weights whose sidecar does not record one: the frame period of the 30 fps training clips.
DEFAULT_WINDOW_NS = 33_333_333
DEFAULT_KEYFRAME_WEIGHTS = "cvae_keyframe_default.safetensors"
MODEL_KIND = "recon-cvae"


def build_cvae(config: dict) -> ReconCVAE:
    """Rebuild a CVAE from a sidecar config; rejects files of another model kind."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind != MODEL_KIND:
        raise ValueError(f"config kind is {kind!r}, expected {MODEL_KIND!r} (not a reconstruction CVAE file)")
    return ReconCVAE(CVAEConfig(**config))


def cvae_config_record(cfg: CVAEConfig) -> dict:
    """The sidecar config of a CVAE (its architecture plus the kind tag checked on load)."""
    return {"kind": MODEL_KIND, **cfg.to_dict()}


def default_weights(keyframe: bool = False) -> Path:
    """Path of the shipped default weights (events-only or keyframe model)."""
    return share_path("models", DEFAULT_KEYFRAME_WEIGHTS if keyframe else DEFAULT_WEIGHTS)


def keyframe_to_unit(keyframe: np.ndarray, width: int, height: int) -> np.ndarray:
    """A keyframe (uint8 gray/BGR or float [0, 1] gray, any size) as float32 [height, width] in [0, 1]."""
    gray = to_unit_gray(keyframe)
    if gray.shape != (height, width):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32).clip(0.0, 1.0)


class Reconstructor:
    """A loaded reconstruction model with the window-to-frame and scoring steps around it."""

    def __init__(self, model: ReconCVAE, meta: dict | None = None, threads: int | None = None):
        self.model = model.eval()
        self.meta = dict(meta or {})
        if threads is not None:
            torch.set_num_threads(threads)

    @classmethod
    def from_file(cls, path: str | Path | None = None, threads: int | None = None) -> Reconstructor:
        """Load weights (None = the shipped events-only default). FileNotFoundError / WeightsError on bad files."""
        path = default_weights() if path is None else Path(path)
        model, meta = load_model(path, build_cvae)
        return cls(model, meta, threads)

    @property
    def bins(self) -> int:
        return self.model.cfg.bins

    @property
    def uses_keyframe(self) -> bool:
        return self.model.cfg.keyframe

    @property
    def window_ns(self) -> int:
        """The event window the model was trained on (from its sidecar)."""
        return int(self.meta.get("train", {}).get("window_ns", DEFAULT_WINDOW_NS))

    def voxel(self, events: np.ndarray, t0_ns: int, t1_ns: int, width: int, height: int) -> np.ndarray:
        """The model's input for the window [t0_ns, t1_ns): a [bins, H, W] voxel grid."""
        if int(t1_ns) <= int(t0_ns):
            raise ValueError(f"reconstruction window must have t1_ns > t0_ns, got t0_ns={t0_ns} t1_ns={t1_ns}")
        if int(width) < 4 or int(height) < 4:
            raise ValueError(f"output size must be at least 4x4, got {width}x{height}")
        return voxel_grid(events, int(width), int(height), self.bins, int(t0_ns), int(t1_ns))

    def reconstruct_voxels(self, voxels: np.ndarray, keyframes: np.ndarray | None = None) -> np.ndarray:
        """Frames [N, H, W] float32 in [0, 1] from voxels [N, bins, H, W] (and keyframes [N, H, W] in [0, 1])."""
        v = torch.from_numpy(np.ascontiguousarray(voxels, dtype=np.float32))
        k = None if keyframes is None else torch.from_numpy(np.ascontiguousarray(keyframes, np.float32))[:, None]
        return self.model.reconstruct(v, k)[:, 0].numpy()

    def reconstruct(
        self,
        events: np.ndarray,
        t0_ns: int,
        t1_ns: int,
        width: int,
        height: int,
        keyframe: np.ndarray | None = None,
    ) -> np.ndarray:
        """Float32 [height, width] frame in [0, 1] for the events with t0_ns <= t < t1_ns.

        A window longer than the one the model was trained on (time_sync's 200 ms AU windows) is cut to its
        trailing `window_ns`, so the model sees the input it was trained and evaluated on.
        `keyframe` (the last RGB frame, BGR or gray, any size) is required by keyframe models and refused by
        events-only ones.
        """
        if int(t1_ns) - int(t0_ns) > self.window_ns:
            t0_ns = int(t1_ns) - self.window_ns
            events = window_slice(events, t0_ns, int(t1_ns))
        voxel = self.voxel(events, t0_ns, t1_ns, width, height)[None]
        key = None if keyframe is None else keyframe_to_unit(keyframe, int(width), int(height))[None]
        return self.reconstruct_voxels(voxel, key)[0]

    def warm_up(self, events: np.ndarray, t0_ns: int, t1_ns: int, width: int, height: int,
                calls: int = 3) -> list[float]:
        """Run `reconstruct` `calls` times on a window (e.g. `events.array.synthetic_events`), with a gray
        keyframe for keyframe models, so lazy work (numba kernels from cache, torch's first-call allocations and
        kernel choice) is done before the first real window; the wall ms of each call, first to last."""
        keyframe = np.full((height, width), 0.5, np.float32) if self.uses_keyframe else None
        return latencies_ms(lambda: self.reconstruct(events, t0_ns, t1_ns, width, height, keyframe=keyframe), calls,
                            warmup=0).tolist()

    @staticmethod
    def quality(pred: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """{ssim, psnr, mse} of a prediction against a reference frame (reference made gray and resized to the
        prediction's size), exactly as the offline evaluation scores it."""
        return frame_quality(pred, reference)
