"""Evaluation of frame reconstruction under the project protocol (metrics-protocol.md).

Every model and baseline is scored per frame with `image_metrics.frame_quality`; rows are then grouped by
data source, event resolution, method and lighting. The CVAE goes through `Reconstructor.reconstruct`, the
same call the ROS node makes, so offline and online numbers agree for the same window.

Baselines: the mean training frame (per resolution), direct event integration (log intensity integrated from
the mean training frame with the simulator's contrast threshold), and the FireNet-style recurrent CNN.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from microexp_ros.data.dataset import RESOLUTIONS
from microexp_ros.eval.image_metrics import frame_quality, mean_quality
from microexp_ros.events.frame import event_frame
from microexp_ros.events.window import window_slice
from microexp_ros.models.recon_inference import Reconstructor
from microexp_ros.train.recon import ClipFrames, TrainConfig, between_frames_voxel

INTEGRATION_CONTRAST = 0.2  # log-intensity step per event (the simulator's default threshold)


def _chosen(cf: ClipFrames, max_frames: int | None) -> np.ndarray:
    if max_frames is None or len(cf.frames) <= max_frames:
        return cf.frames
    return cf.frames[np.linspace(0, len(cf.frames) - 1, max_frames).round().astype(int)]


def _row(method: str, cf: ClipFrames, k: int, q: dict) -> dict:
    return {"method": method, "source": cf.meta.get("source", "?"), "res": cf.res,
            "lighting": cf.meta.get("lighting", "?"), "clip": cf.meta.get("id", "?"), "k": int(k), **q}


def cvae_rows(rec: Reconstructor, cfs: list[ClipFrames], method: str, max_frames: int | None = None,
              keep: dict | None = None) -> list[dict]:
    """Per-frame quality of a CVAE (events-only or keyframe) on the chosen frames of each clip, each frame
    reconstructed from the `rec.window_ns` of events before it.

    `keep` (optional dict) receives one (voxel-free) prediction per (source, res, lighting) for montages.
    """
    rows, window_ns = [], rec.window_ns
    for cf in cfs:
        w, h = cf.size
        for k in _chosen(cf, max_frames):
            t1 = int(cf.t[k])
            key = cf.key[k - cf.keyframe_age] if rec.uses_keyframe else None
            events = window_slice(cf.events, t1 - window_ns, t1)
            pred = rec.reconstruct(events, t1 - window_ns, t1, w, h, keyframe=key)
            rows.append(_row(method, cf, k, frame_quality(pred, cf.gray[k])))
            if keep is not None:
                keep.setdefault((cf.meta.get("source"), cf.res, cf.meta.get("lighting")),
                                {"events": events, "size": (w, h), "pred": pred, "gt": cf.gray[k],
                                 "key": key, "clip": cf.meta.get("id"), "k": int(k)})
    return rows


@torch.no_grad()
def firenet_rows(model, cfs: list[ClipFrames], max_frames: int | None = None, method: str = "firenet") -> list[dict]:
    """Per-frame quality of the recurrent baseline, run over each clip from its first frame."""
    rows = []
    model.eval()
    for cf in cfs:
        chosen = set(int(k) for k in _chosen(cf, max_frames))
        state = None
        for k in range(max(chosen) + 1):
            v = torch.from_numpy(between_frames_voxel(cf, k, model.cfg.bins))[None]
            pred, state = model(v, state)
            if k in chosen:
                rows.append(_row(method, cf, k, frame_quality(pred[0, 0].numpy(), cf.gray[k])))
    return rows


def _pool_key(cf: ClipFrames) -> str:
    return f"{cf.meta.get('source', '?')}/{cf.res}"


def mean_training_frames(train: list[ClipFrames]) -> dict[str, np.ndarray]:
    """Mean ground-truth frame per "source/resolution" over the training clips ([H, W] float in [0, 1]), so
    real-video-derived clips are compared with the mean of real-video training frames."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    for cf in train:
        key = _pool_key(cf)
        g = cf.gray.astype(np.float64).sum(0) / 255.0
        if key in sums and sums[key].shape != g.shape:
            raise ValueError(f"training clips of {key} differ in size: {sums[key].shape} vs {g.shape}")
        sums[key] = sums.get(key, 0) + g
        counts[key] += len(cf.gray)
    return {key: (s / counts[key]).clip(0, 1) for key, s in sums.items()}


def _mean_for(means: dict[str, np.ndarray], cf: ClipFrames) -> np.ndarray:
    key = _pool_key(cf)
    if key not in means or means[key].shape != cf.gray.shape[1:]:
        raise ValueError(f"no mean training frame of size {cf.gray.shape[1:]} for {key!r} (training data has "
                         f"{sorted(means)})")
    return means[key]


def mean_frame_rows(means: dict[str, np.ndarray], cfs: list[ClipFrames], max_frames: int | None = None) -> list[dict]:
    """The naive baseline: always predict the mean training frame."""
    return [_row("mean frame", cf, k, frame_quality(_mean_for(means, cf), cf.gray[k]))
            for cf in cfs for k in _chosen(cf, max_frames)]


def integration_rows(means: dict[str, np.ndarray], cfs: list[ClipFrames], max_frames: int | None = None,
                     contrast: float = INTEGRATION_CONTRAST) -> list[dict]:
    """Direct event integration: log I_k = log(mean frame) + contrast * (ON - OFF events since clip start)."""
    rows = []
    for cf in cfs:
        w, h = cf.size
        base = np.log(_mean_for(means, cf) + 1e-3)
        for k in _chosen(cf, max_frames):
            signed = event_frame(window_slice(cf.events, 0, int(cf.t[k])), w, h)
            pred = (np.exp(base + contrast * signed) - 1e-3).clip(0.0, 1.0)
            rows.append(_row("event integration", cf, k, frame_quality(pred, cf.gray[k])))
    return rows


def evaluate_model(model, cfg: TrainConfig, cfs: list[ClipFrames], max_frames: int | None = None) -> dict:
    """Mean {ssim, psnr, mse, n} of a model in training (validation during `train`)."""
    if cfg.model == "firenet":
        rows = firenet_rows(model, cfs, max_frames)
    else:
        rows = cvae_rows(Reconstructor(model, {"train": {"window_ns": cfg.window_ns}}), cfs, "cvae", max_frames)
    return mean_quality(rows)


def group(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Mean quality per distinct value of `keys`, sorted by those values."""
    buckets: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        buckets[tuple(r[k] for k in keys)].append(r)
    return [dict(zip(keys, key)) | mean_quality(b) for key, b in sorted(buckets.items())]


def save_montage(samples: dict, path: Path) -> None:
    """One row per (source, resolution, lighting): signed event frame, reconstruction, ground truth
    (plus the keyframe when the model used one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(samples, key=str)
    if not keys:
        return
    cols = 4 if any(samples[k]["key"] is not None for k in keys) else 3
    fig, axes = plt.subplots(len(keys), cols, figsize=(2.2 * cols, 2.2 * len(keys)), squeeze=False)
    for row, key in zip(axes, keys):
        s = samples[key]
        ev = event_frame(s["events"], *s["size"])
        lim = max(1.0, float(np.abs(ev).max()))
        panels = [(ev, "events", dict(cmap="bwr", vmin=-lim, vmax=lim)),
                  (s["pred"], "reconstruction", dict(cmap="gray", vmin=0, vmax=1)),
                  (s["gt"], "ground truth", dict(cmap="gray", vmin=0, vmax=255))]
        if cols == 4:
            panels.insert(1, (s["key"], "keyframe", dict(cmap="gray", vmin=0, vmax=255)))
        for ax, (img, name, kw) in zip(row, panels):
            ax.imshow(img, **kw)
            ax.set_title(f"{name}\n{key[0]}/{key[1]}/{key[2]}" if name == "events" else name, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def score_recording(recs: dict[str, Reconstructor], events: np.ndarray, frames: list, width: int, height: int
                    ) -> dict[str, dict]:
    """A real recording with intensity frames: frame k+1 reconstructed by each model from the window it was
    trained on, ending at that frame (the keyframe model also gets frame k). A window reaching back before the
    recording holds only the recording's events, as the node's history does after a start. Out of domain:
    reported, not a target."""
    if len(frames) < 2:
        raise ValueError(f"need at least 2 intensity frames to score a recording, got {len(frames)}")
    rows: dict[str, list[dict]] = {name: [] for name in recs}
    for prev, cur in zip(frames[:-1], frames[1:]):
        t1 = int(cur.t)
        for name, rec in recs.items():
            t0 = t1 - rec.window_ns
            window = window_slice(events, t0, t1)
            key = prev.pixels if rec.uses_keyframe else None
            pred = rec.reconstruct(window, t0, t1, width, height, keyframe=key)
            rows[name].append(frame_quality(pred, cur.pixels) | {"events": int(window.size)})
    out = {}
    for name, r in rows.items():
        out[name] = mean_quality(r) | {"events_per_window": [x["events"] for x in r]}
    # The trivial "nothing changed" baseline: frame k as the prediction of frame k+1.
    out["previous frame"] = mean_quality([frame_quality(p.pixels, c.pixels) for p, c in zip(frames[:-1], frames[1:])])
    return out


def evaluate_dataset(test: list[ClipFrames], train: list[ClipFrames], cvae: Reconstructor,
                     keyframe: Reconstructor | None = None, firenet=None, max_frames: int | None = None,
                     montage_dir: Path | None = None) -> dict:
    """All rows of the dataset table (models and baselines on the test clips) and the headline figures."""
    means = mean_training_frames(train)
    samples: dict[str, dict] = {"cvae": {}, "cvae+keyframe": {}}
    rows = cvae_rows(cvae, test, "cvae", max_frames, samples["cvae"])
    if keyframe is not None:
        rows += cvae_rows(keyframe, test, "cvae+keyframe", max_frames, samples["cvae+keyframe"])
    if firenet is not None:
        rows += firenet_rows(firenet, test, max_frames)
    rows += mean_frame_rows(means, test, max_frames)
    rows += integration_rows(means, test, max_frames)
    if montage_dir is not None:
        montage_dir.mkdir(parents=True, exist_ok=True)
        for name, s in samples.items():
            if s:
                save_montage(s, montage_dir / f"montage_{name.replace('+', '_')}.png")
    overall = group(rows, ("source", "res", "method"))
    per_light = group(rows, ("source", "res", "method", "lighting"))

    def pick(source: str, res: str, method: str, metric: str):
        hit = [r for r in overall if (r["source"], r["res"], r["method"]) == (source, res, method)]
        return hit[0][metric] if hit else None

    headline = {}
    for res in RESOLUTIONS:
        headline[f"ssim_{res}"] = pick("video", res, "cvae", "ssim")
        headline[f"psnr_{res}"] = pick("video", res, "cvae", "psnr")
        headline[f"frames_{res}"] = pick("video", res, "cvae", "n")
        headline[f"ssim_synthetic_{res}"] = pick("synthetic", res, "cvae", "ssim")
        headline[f"psnr_synthetic_{res}"] = pick("synthetic", res, "cvae", "psnr")
    headline["ssim_keyframe"] = pick("video", "high", "cvae+keyframe", "ssim")
    headline["psnr_keyframe"] = pick("video", "high", "cvae+keyframe", "psnr")
    headline["ssim_keyframe_synthetic"] = pick("synthetic", "high", "cvae+keyframe", "ssim")
    return headline | {"table": overall, "per_lighting": per_light}


def score_video(recs: dict[str, Reconstructor], path: Path, width: int = 128, height: int = 128,
                seconds: float | None = None, keyframe_age: int = 3, seed: int = 0) -> dict[str, dict]:
    """Any video: converted to events by the simulator (`video_to_events`, centred crop of the sensor's aspect),
    each frame k reconstructed from the window before it and scored against the frame itself (gray, resized
    to the sensor); the keyframe model gets frame k - keyframe_age. Frames without a full window are skipped."""
    import cv2

    from microexp_ros.sim.video import video_to_events

    conv = video_to_events(path, width, height, seconds=seconds, seed=seed)
    gray = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (width, height), interpolation=cv2.INTER_AREA)
                     for f in conv.frames])
    rows: dict[str, list[dict]] = {name: [] for name in recs}
    for name, rec in recs.items():
        window = rec.window_ns
        for k in range(keyframe_age, len(gray)):
            t1 = int(conv.frame_t[k])
            if t1 < window:
                continue
            key = gray[k - keyframe_age] if rec.uses_keyframe else None
            pred = rec.reconstruct(window_slice(conv.events, t1 - window, t1), t1 - window, t1, width, height, keyframe=key)
            rows[name].append(frame_quality(pred, gray[k]))
    return {name: mean_quality(r) for name, r in rows.items()} | {
        "events": int(conv.events.size), "frames": len(gray), "crop": list(conv.crop), "fps": conv.fps}
