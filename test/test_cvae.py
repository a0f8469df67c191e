"""The reconstruction CVAE: it learns a tiny simulated scene far beyond the mean frame, keeps a working
latent (no collapse to a constant image), decodes deterministically from the prior mean, and its weights
files and windows are checked."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from microexp_ros.eval.recon import cvae_rows, mean_frame_rows, mean_training_frames
from microexp_ros.eval.image_metrics import mean_quality
from microexp_ros.models.cvae import CVAEConfig, ReconCVAE
from microexp_ros.models.firenet import FireNet, FireNetConfig, firenet_config_record
from microexp_ros.models.recon_inference import Reconstructor, cvae_config_record
from microexp_ros.models.weights import WeightsError, save_model
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig
from microexp_ros.train.recon import ClipFrames, Sampler, TrainConfig, pool_shares, train, training_pools

SIZE = 32
FPS = 30.0


def _texture(seed: int, size: int) -> np.ndarray:
    """A smooth random pattern (blobs) twice the sensor size, luminance in [0.15, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : 2 * size, 0 : 2 * size].astype(np.float32)
    img = np.zeros_like(xx)
    f = size / SIZE
    for _ in range(6):
        cx, cy, s = rng.uniform(8, 2 * SIZE - 8) * f, rng.uniform(8, 2 * SIZE - 8) * f, rng.uniform(3, 7) * f
        img += rng.choice([-1.0, 1.0]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    img -= img.min()
    return 0.15 + 0.85 * img / img.max()


def tiny_clip(seed: int, frames: int = 16, res: str = "high", lighting: str = "normal", size: int = SIZE
              ) -> ClipFrames:
    """A pattern drifting over a simulated sensor: events from the project's simulator, ground truth the
    rendered frames (uint8), keyframes the frames 3 steps earlier."""
    tex = _texture(seed, size)
    rng = np.random.default_rng(seed + 100)
    vx, vy = rng.uniform(-1.5, 1.5, 2) * size / SIZE
    t = (np.arange(frames) * 1e9 / FPS).astype(np.int64) + 40_000_000
    renders = []
    sub = 8  # render between frames so the simulator sees smooth motion
    for i in range(-1, frames * sub):
        s = i / sub
        m = np.float32([[1, 0, -size / 2 - vx * s], [0, 1, -size / 2 - vy * s]])
        renders.append(cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    times = [int(t[0] + i * 1e9 / FPS / sub) for i in range(-1, frames * sub)]
    times[0] = 0
    sim = EventSimulator(size, size, replace(SensorConfig(), leak_rate_hz=0.0, shot_noise_rate_hz=0.0), seed=seed)
    events = sim.simulate(zip(times, renders))
    gray = np.stack([(renders[1 + k * sub] * 255).round().astype(np.uint8) for k in range(frames)])
    meta = {"id": f"c{seed:03d}", "source": "synthetic", "lighting": lighting, "split": "train"}
    return ClipFrames(meta, res, events, t, gray, gray.copy(), np.arange(3, frames), 3)


@pytest.fixture(scope="module")
def scene() -> list[ClipFrames]:
    return [tiny_clip(s) for s in range(3)]


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and immune to a busy machine
    cfg = TrainConfig(steps=300, batch=8, crop=SIZE, lr=3e-3, warmup=100, eval_every=200, seed=0, val_frames=4)
    model, history = train(cfg, [scene], scene, tmp_path_factory.mktemp("train"), progress=False)
    return cfg, model, history


def test_overfits_tiny_set_well_above_mean_frame(scene, trained):
    cfg, model, history = trained
    rec = Reconstructor(model, {"train": {"window_ns": cfg.window_ns}})
    learned = mean_quality(cvae_rows(rec, scene, "cvae"))
    naive = mean_quality(mean_frame_rows(mean_training_frames(scene), scene))
    assert learned["n"] == naive["n"] == sum(len(c.frames) for c in scene)
    assert learned["ssim"] > naive["ssim"] + 0.25, (learned, naive)
    assert learned["psnr"] > naive["psnr"] + 3.0
    assert history["val_ssim"][-1] > history["val_ssim"][0] - 0.02


def test_loss_terms_behave_and_latent_is_used(scene, trained):
    cfg, model, history = trained
    first, last = history["recon_prior"][0], history["recon_prior"][-1]
    assert last < 0.6 * first
    kl = np.array(history["kl"])
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
    # the posterior still carries information about the frame (KL clearly above zero after warm-up)
    assert kl[-1] > 1e-3
    # no collapse to a constant image: outputs vary over pixels and between frames like the targets
    rec = Reconstructor(model)
    outs = [rec.reconstruct(c.events, int(c.t[k]) - cfg.window_ns, int(c.t[k]), SIZE, SIZE)
            for c in scene for k in c.frames[:4]]
    assert min(o.std() for o in outs) > 0.05
    assert np.mean([np.abs(a - b).mean() for a, b in zip(outs[:-1], outs[1:])]) > 0.02
    # a different posterior sample changes the training output: the decoder listens to z
    c = scene[0]
    k = int(c.frames[0])
    from microexp_ros.train.recon import window_voxel

    v = torch.from_numpy(window_voxel(c, k, cfg.window_ns, cfg.bins))[None]
    target = torch.from_numpy(c.gray[k] / 255.0).float()[None, None]
    model.train()
    a, b = model(v, target)["recon"], model(v, target)["recon"]
    model.eval()
    assert (a - b).abs().mean() > 1e-4


def test_inference_is_deterministic_and_survives_save_load(scene, trained, tmp_path):
    cfg, model, _ = trained
    path = save_model(tmp_path / "cvae.safetensors", model, cvae_config_record(model.cfg),
                      {"train": {"window_ns": cfg.window_ns}})
    c = scene[1]
    t1 = int(c.t[5])
    ref = Reconstructor(model).reconstruct(c.events, t1 - cfg.window_ns, t1, SIZE, SIZE)
    loaded = Reconstructor.from_file(path)
    a = loaded.reconstruct(c.events, t1 - cfg.window_ns, t1, SIZE, SIZE)
    b = loaded.reconstruct(c.events, t1 - cfg.window_ns, t1, SIZE, SIZE)
    assert a.dtype == np.float32 and a.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ref)
    q = loaded.quality(a, c.gray[5])
    assert set(q) == {"ssim", "psnr", "mse"} and q["ssim"] > 0.5
    # a longer window (time_sync's AU windows) is cut to the trailing window the model was trained on
    assert loaded.window_ns == cfg.window_ns
    np.testing.assert_array_equal(loaded.reconstruct(c.events, 0, t1, SIZE, SIZE), a)
    whole = loaded.reconstruct_voxels(loaded.voxel(c.events, 0, t1, SIZE, SIZE)[None])[0]
    assert np.abs(whole - a).max() > 1e-3


def test_any_input_size_gives_that_output_size():
    rec = Reconstructor(ReconCVAE(CVAEConfig()))
    clip = tiny_clip(7, frames=5)
    out = rec.reconstruct(clip.events, 0, int(clip.t[-1]), 37, 33)
    assert out.shape == (33, 37) and 0.0 <= out.min() <= out.max() <= 1.0


def test_keyframe_mode_requires_and_uses_the_keyframe():
    torch.manual_seed(0)
    rec = Reconstructor(ReconCVAE(CVAEConfig(keyframe=True)))
    clip = tiny_clip(8, frames=6)
    t1 = int(clip.t[5])
    with pytest.raises(ValueError, match="keyframe"):
        rec.reconstruct(clip.events, t1 - 33_000_000, t1, SIZE, SIZE)
    dark = rec.reconstruct(clip.events, t1 - 33_000_000, t1, SIZE, SIZE, keyframe=np.zeros((64, 64), np.uint8))
    bright = rec.reconstruct(clip.events, t1 - 33_000_000, t1, SIZE, SIZE,
                             keyframe=cv2.cvtColor(clip.gray[2], cv2.COLOR_GRAY2BGR))
    assert np.abs(dark - bright).max() > 0
    events_only = Reconstructor(ReconCVAE(CVAEConfig()))
    with pytest.raises(ValueError, match="events-only"):
        events_only.reconstruct(clip.events, 0, t1, SIZE, SIZE, keyframe=clip.gray[0])


@pytest.mark.parametrize("t0, t1", [(100, 100), (200, 100)])
def test_bad_window_raises(t0, t1):
    rec = Reconstructor(ReconCVAE(CVAEConfig()))
    with pytest.raises(ValueError, match="t1_ns > t0_ns"):
        rec.reconstruct(tiny_clip(9, frames=4).events, t0, t1, SIZE, SIZE)


def test_events_outside_the_requested_size_raise():
    rec = Reconstructor(ReconCVAE(CVAEConfig()))
    clip = tiny_clip(9, frames=4)
    with pytest.raises(ValueError, match="outside the 16x16 sensor"):
        rec.reconstruct(clip.events, 0, int(clip.t[-1]), 16, 16)


def test_missing_and_incompatible_weights_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        Reconstructor.from_file(tmp_path / "nope.safetensors")
    fire = save_model(tmp_path / "fire.safetensors", FireNet(FireNetConfig()), firenet_config_record(FireNetConfig()), {})
    with pytest.raises(WeightsError, match="recon-cvae"):
        Reconstructor.from_file(fire)
    wide = save_model(tmp_path / "wide.safetensors", ReconCVAE(CVAEConfig(width=8)), cvae_config_record(CVAEConfig(width=8)), {})
    side = json.loads(wide.with_suffix(".json").read_text())
    side["config"]["width"] = 16  # sidecar no longer fits its tensors
    wide.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(WeightsError, match="do not fit"):
        Reconstructor.from_file(wide)


def test_voxel_shape_is_checked():
    model = ReconCVAE(CVAEConfig())
    with pytest.raises(ValueError, match=r"voxel must be \[N, 5, H, W\]"):
        model.reconstruct(torch.zeros(1, 3, 16, 16))


def test_pools_take_turns_by_their_shares():
    """Equal shares: the (source, resolution) pools in order, as before shares existed; `video_share` gives the
    real-video-derived pools that share of the batches, split evenly, the others the rest."""
    clips = [ClipFrames({"id": f"{source}_{res}", "source": source}, res, np.zeros(0), np.zeros(1, np.int64),
                        np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.uint8), np.zeros(1, np.int64), 3)
             for source in ("synthetic", "video") for res in ("high", "low")]
    pools = training_pools(clips)
    assert [p[0].meta["id"] for p in pools] == ["synthetic_high", "synthetic_low", "video_high", "video_low"]

    def order(shares, n):
        sampler = Sampler(pools, 1, 1, 4, np.random.default_rng(0), shares)
        return [sampler._pick()[0].meta["id"] for _ in range(n)]

    assert pool_shares(pools) == [0.25] * 4
    assert order(pool_shares(pools), 8) == [p[0].meta["id"] for p in pools] * 2
    shares = pool_shares(pools, 0.75)
    assert shares == [0.125, 0.125, 0.375, 0.375]
    picked = order(shares, 800)
    assert [picked.count(p[0].meta["id"]) for p in pools] == [100, 100, 300, 300]
    video = np.cumsum([i.startswith("video") for i in picked])
    assert np.abs(video - 0.75 * np.arange(1, 801)).max() <= 1.0   # every stretch of the run keeps the share
    with pytest.raises(ValueError, match="video_share must be in"):
        TrainConfig(video_share=1.0)   # refused with the other options, before any data is loaded
    with pytest.raises(ValueError, match="needs both"):
        pool_shares(pools[:2], 0.5)
