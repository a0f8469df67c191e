"""Training of the reconstruction models (CVAE, keyframe CVAE, FireNet-style baseline) on datasets in the
microexp-dataset/1 format.

A training sample is frame k of a clip at one event resolution: the voxel grid of the events in
[rgb_t[k] - W, rgb_t[k]) is the input, gray_<res>[k] / 255 the target, and the RGB frame `keyframe_age`
frames earlier (converted to gray, resized to the event resolution) the keyframe. Voxels are built on the
fly from the clip's events with the same `voxel_grid` the inference uses.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from microexp_ros.data.dataset import RESOLUTIONS
from microexp_ros.events.voxel import voxel_grid


@dataclass
class ClipFrames:
    """One clip at one event resolution, with the frames usable as samples."""

    meta: dict
    res: str
    events: np.ndarray
    t: np.ndarray        # rgb_t, ns
    gray: np.ndarray     # [N, H, W] uint8 ground truth at this resolution
    key: np.ndarray      # [N, H, W] uint8 gray of the RGB frames, resized to this resolution
    frames: np.ndarray   # indices k with a full event window and a keyframe
    keyframe_age: int    # the keyframe of frame k is key[k - keyframe_age]

    @property
    def size(self) -> tuple[int, int]:
        return self.gray.shape[2], self.gray.shape[1]


def rgb_to_gray(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N, H, W, 3] BGR uint8 frames as [N, height, width] uint8 gray (INTER_AREA resize)."""
    out = np.empty((len(rgb), height, width), np.uint8)
    for i, frame in enumerate(rgb):
        g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        out[i] = g if g.shape == (height, width) else cv2.resize(g, (width, height), interpolation=cv2.INTER_AREA)
    return out


def clip_frames(clip, res: str, window_ns: int, keyframe_age: int) -> ClipFrames:
    """The usable frames of a loaded clip (`microexp_ros.data.dataset.Clip`) at one resolution."""
    if res not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {res!r}")
    gray = clip.gray[res]
    t = np.asarray(clip.rgb_t, np.int64)
    if len(t) != len(gray) or len(t) != len(clip.rgb):
        raise ValueError(f"clip {clip.meta.get('id')}: rgb_t ({len(t)}), rgb ({len(clip.rgb)}) and "
                         f"gray_{res} ({len(gray)}) differ in length")
    h, w = gray.shape[1:]
    k = np.arange(len(t))
    frames = k[(t >= window_ns) & (k >= keyframe_age)]
    return ClipFrames(clip.meta, res, clip.events[res], t, gray, rgb_to_gray(clip.rgb, w, h), frames, keyframe_age)


def load_split(roots: list[Path], split: str, resolutions=RESOLUTIONS, window_ns: int = 33_333_333,
               keyframe_age: int = 3, **filters) -> list[ClipFrames]:
    """Every clip of `split` in the dataset roots, at each resolution."""
    from microexp_ros.data.dataset import clips as dataset_clips
    from microexp_ros.data.dataset import load_clip

    out = []
    for root in roots:
        for meta in dataset_clips(root, split=split, **filters):
            clip = load_clip(root, meta)
            for res in resolutions:
                cf = clip_frames(clip, res, window_ns, keyframe_age)
                if len(cf.frames):
                    out.append(cf)
    return out


def training_pools(frames: list[ClipFrames]) -> list[list[ClipFrames]]:
    """Clips grouped by (source, resolution): each batch comes from one group, so synthetic and
    real-video-derived clips, and both resolutions, get the shares of the training steps `pool_shares` gives."""
    groups: dict[tuple[str, str], list[ClipFrames]] = {}
    for cf in frames:
        groups.setdefault((str(cf.meta.get("source", "?")), cf.res), []).append(cf)
    return [groups[k] for k in sorted(groups)]


def pool_shares(pools: list[list[ClipFrames]], video_share: float = 0.0) -> list[float]:
    """Each pool's share of the batches: equal when `video_share` is 0; else `video_share` (in (0, 1), as
    TrainConfig checks) split evenly among the real-video-derived pools and the rest among the others (the real
    faces are the scarcer data, and the test clips are theirs)."""
    if not video_share:
        return [1 / len(pools)] * len(pools)
    video = [p[0].meta.get("source") == "video" for p in pools]
    if all(video) or not any(video):
        raise ValueError("video_share needs both real-video-derived and other training clips")
    n_video = sum(video)
    return [video_share / n_video if v else (1 - video_share) / (len(pools) - n_video) for v in video]


def window_voxel(cf: ClipFrames, k: int, window_ns: int, bins: int) -> np.ndarray:
    """Voxel grid [bins, H, W] of frame k's window [t_k - W, t_k)."""
    w, h = cf.size
    return voxel_grid(cf.events, w, h, bins, int(cf.t[k]) - window_ns, int(cf.t[k]))


# ---------------------------------------------------------------- losses

def _gaussian_1d(sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_G = _gaussian_1d()


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 11x11 Gaussian (sigma 1.5), valid region only."""
    g = _G.to(x.dtype)
    return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))


def ssim_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of [N, 1, H, W] images in [0, 1] (Gaussian 11x11, sigma 1.5, population statistics, valid
    region): the differentiable twin of the evaluation's SSIM."""
    c1, c2 = 0.01**2, 0.03**2
    n = pred.shape[0]
    stats = _blur(torch.cat([pred, target, pred * pred, target * target, pred * target], 0))
    mu_x, mu_y, xx, yy, xy = stats.split(n, 0)
    sxx, syy, sxy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def recon_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + (1 - SSIM)."""
    return F.l1_loss(pred, target) + (1.0 - ssim_torch(pred, target))


def kl_weight(step: int, warmup: int, beta: float) -> float:
    """KL weight, rising linearly from 0 to beta over the warm-up steps."""
    return beta * min(1.0, step / max(1, warmup))


# ---------------------------------------------------------------- batches

@dataclass
class Sampler:
    """Random crops of random frames; each batch comes from one pool (a source and resolution). Pools take turns
    by their `shares` (`pool_shares`): the next batch goes to the pool furthest behind its share (equal shares:
    in order)."""

    pools: list[list[ClipFrames]]
    window_ns: int
    bins: int
    crop: int
    rng: np.random.Generator
    shares: list[float]
    _used: list[int] = field(init=False)   # batches each pool has given

    def __post_init__(self) -> None:
        self._used = [0] * len(self.pools)

    def _pick(self) -> list[ClipFrames]:
        turn = sum(self._used) + 1
        behind = [share * turn - used for share, used in zip(self.shares, self._used)]
        i = max(range(len(behind)), key=lambda j: (behind[j], -j))
        self._used[i] += 1
        return self.pools[i]

    def cvae_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(voxel [n,B,s,s], target [n,1,s,s], keyframe [n,1,s,s]) from one resolution pool."""
        pool = self._pick()
        s = min(min(min(cf.size) for cf in pool) // 4 * 4, self.crop)
        vox, tgt, key = [], [], []
        for _ in range(n):
            cf = pool[int(self.rng.integers(len(pool)))]
            k = int(cf.frames[self.rng.integers(len(cf.frames))])
            w, h = cf.size
            x0, y0 = int(self.rng.integers(0, w - s + 1)), int(self.rng.integers(0, h - s + 1))
            flip = bool(self.rng.integers(2))
            sl = (slice(y0, y0 + s), slice(x0, x0 + s))
            v = window_voxel(cf, k, self.window_ns, self.bins)[:, sl[0], sl[1]]
            g = cf.gray[k][sl]
            kf = cf.key[k - cf.keyframe_age][sl]
            if flip:
                v, g, kf = v[..., ::-1], g[:, ::-1], kf[:, ::-1]
            vox.append(v)
            tgt.append(g)
            key.append(kf)
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a), dtype=np.float32))  # noqa: E731
        return as_t(vox), as_t(tgt)[:, None] / 255.0, as_t(key)[:, None] / 255.0

    def sequence_batch(self, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(voxels [L,n,B,s,s], targets [L,n,1,s,s]) of consecutive between-frame windows, for FireNet."""
        pool = [cf for cf in self._pick() if len(cf.t) > length]
        if not pool:
            raise ValueError(f"no clip has more than {length} frames for sequence training")
        s = min(min(min(cf.size) for cf in pool) // 4 * 4, self.crop)
        vox = np.zeros((length, n, self.bins, s, s), np.float32)
        tgt = np.zeros((length, n, 1, s, s), np.float32)
        for i in range(n):
            cf = pool[int(self.rng.integers(len(pool)))]
            w, h = cf.size
            x0, y0 = int(self.rng.integers(0, w - s + 1)), int(self.rng.integers(0, h - s + 1))
            start = int(self.rng.integers(0, len(cf.t) - length + 1))
            for j, k in enumerate(range(start, start + length)):
                v = between_frames_voxel(cf, k, self.bins)
                vox[j, i] = v[:, y0:y0 + s, x0:x0 + s]
                tgt[j, i, 0] = cf.gray[k][y0:y0 + s, x0:x0 + s] / 255.0
        return torch.from_numpy(vox), torch.from_numpy(tgt)


def between_frames_voxel(cf: ClipFrames, k: int, bins: int) -> np.ndarray:
    """Voxel of the events between frame k-1 and frame k (from 0 for the first frame): FireNet's input."""
    w, h = cf.size
    t0 = int(cf.t[k - 1]) if k > 0 else 0
    t1 = int(cf.t[k])
    return voxel_grid(cf.events, w, h, bins, t0, t1 if t1 > t0 else t0 + 1)


# ---------------------------------------------------------------- training

@dataclass
class TrainConfig:
    """Everything that shapes a training run (recorded in the weights sidecar)."""

    model: str = "cvae"          # "cvae" or "firenet"
    keyframe: bool = False       # CVAE conditioned on the keyframe too
    steps: int = 3000
    batch: int = 16
    crop: int = 128               # training crop (full frames of both resolutions by default)
    lr: float = 2e-3
    beta: float = 0.01           # KL weight after warm-up
    warmup: int = 1000           # KL warm-up steps
    window_ns: int = 33_333_333
    bins: int = 5
    width: int = 16
    latent: int = 8
    keyframe_age: int = 3
    seq_len: int = 8             # FireNet truncated-BPTT length
    seed: int = 0
    eval_every: int = 500
    val_frames: int = 4          # frames per validation clip scored at each evaluation
    video_share: float = 0.0     # share of batches from real-video-derived clips (0 = every pool alike)

    def __post_init__(self):
        if self.model not in ("cvae", "firenet"):
            raise ValueError(f"model must be 'cvae' or 'firenet', got {self.model!r}")
        if self.model == "firenet" and self.keyframe:
            raise ValueError("the FireNet baseline has no keyframe mode")
        for name in ("steps", "batch", "crop", "window_ns", "bins", "width", "latent", "seq_len", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.crop < 12:
            raise ValueError(f"crop must be at least 12 pixels (SSIM window), got {self.crop}")
        if not 0 <= self.video_share < 1:
            raise ValueError(f"video_share must be in (0, 1), or 0 for equal pools, got {self.video_share}")


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """A fresh model of the configured kind."""
    if cfg.model == "firenet":
        from microexp_ros.models.firenet import FireNet, FireNetConfig

        return FireNet(FireNetConfig(bins=cfg.bins, width=cfg.width))
    from microexp_ros.models.cvae import CVAEConfig, ReconCVAE

    return ReconCVAE(CVAEConfig(bins=cfg.bins, width=cfg.width, latent=cfg.latent, keyframe=cfg.keyframe))


def model_config_record(cfg: TrainConfig, model: torch.nn.Module) -> dict:
    """The sidecar config from which the inference side rebuilds the model."""
    if cfg.model == "firenet":
        from microexp_ros.models.firenet import firenet_config_record

        return firenet_config_record(model.cfg)
    from microexp_ros.models.recon_inference import cvae_config_record

    return cvae_config_record(model.cfg)


def _cvae_step(model, batch, cfg: TrainConfig, step: int) -> dict[str, torch.Tensor]:
    voxel, target, key = batch
    out = model(voxel, target, key if cfg.keyframe else None)
    rec = recon_loss(out["recon"], target)
    rec_prior = recon_loss(out["recon_prior"], target)
    beta = kl_weight(step, cfg.warmup, cfg.beta)
    return {"loss": rec + rec_prior + beta * out["kl"], "recon": rec, "recon_prior": rec_prior, "kl": out["kl"]}


def _firenet_step(model, batch, cfg: TrainConfig, step: int) -> dict[str, torch.Tensor]:
    voxels, targets = batch
    state, total = None, 0.0
    for v, t in zip(voxels, targets):
        pred, state = model(v, state)
        total = total + recon_loss(pred, t)
    loss = total / len(voxels)
    return {"loss": loss, "recon_prior": loss}


def train(cfg: TrainConfig, train_pools: list[list[ClipFrames]], val: list[ClipFrames], workdir: Path,
          progress: bool = True, save_checkpoint=None) -> tuple[torch.nn.Module, dict]:
    """Train one model; returns it with its history {step: [...], loss curves, val_ssim}.

    `save_checkpoint(model, step)` (optional) is called at every evaluation.
    """
    from tqdm import tqdm

    from microexp_ros.eval.recon import evaluate_model

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pools = [p for p in train_pools if p]
    if not pools:
        raise ValueError("no training frames: the training split is empty for every resolution")
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    sampler = Sampler(pools, cfg.window_ns, cfg.bins, cfg.crop, rng, pool_shares(pools, cfg.video_share))
    step_fn = _firenet_step if cfg.model == "firenet" else _cvae_step
    history: dict[str, list] = {"step": [], "loss": [], "recon": [], "recon_prior": [], "kl": [],
                                "val_step": [], "val_ssim": [], "val_psnr": []}
    running: dict[str, list[float]] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    log_every = max(1, min(50, cfg.steps // 20))
    start = time.monotonic()
    bar = tqdm(range(1, cfg.steps + 1), desc=f"train {cfg.model}{'+key' if cfg.keyframe else ''}",
               disable=not progress, mininterval=2.0)
    for step in bar:
        model.train()
        if cfg.model == "firenet":
            batch = sampler.sequence_batch(cfg.batch, cfg.seq_len)
        else:
            batch = sampler.cvae_batch(cfg.batch)
        terms = step_fn(model, batch, cfg, step)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"training loss is not finite at step {step}: {terms}")
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        for k, v in terms.items():
            running.setdefault(k, []).append(float(v.detach()))
        if step % log_every == 0 or step == cfg.steps:
            history["step"].append(step)
            for k in ("loss", "recon", "recon_prior", "kl"):
                history[k].append(float(np.mean(running[k])) if k in running else float("nan"))
            running = {}
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        if val and (step % cfg.eval_every == 0 or step == cfg.steps):
            q = evaluate_model(model.eval(), cfg, val, max_frames=cfg.val_frames)
            history["val_step"].append(step)
            history["val_ssim"].append(q["ssim"])
            history["val_psnr"].append(q["psnr"])
            if save_checkpoint is not None:
                save_checkpoint(model, step)
    history["train_seconds"] = time.monotonic() - start
    plot_curves(history, workdir / "curves.png", title=f"{cfg.model}{' + keyframe' if cfg.keyframe else ''}")
    (workdir / "history.json").write_text(json.dumps(history, indent=1))
    return model.eval(), history


def plot_curves(history: dict, path: Path, title: str) -> None:
    """Loss terms and validation SSIM against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for k in ("loss", "recon", "recon_prior", "kl"):
        vals = history[k]
        if vals and not all(math.isnan(v) for v in vals):
            axes[0].plot(history["step"], vals, label=k)
    axes[0].set_xlabel("step")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].set_title(f"{title}: training terms")
    axes[1].plot(history["val_step"], history["val_ssim"], marker="o")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("validation SSIM")
    axes[1].set_title("validation SSIM (prior mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
