"""Evaluation of reconstruction: baselines, grouping, the recurrent FireNet baseline, montages, and the real
DAVIS346 recording with intensity frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microexp_ros.eval.image_metrics import frame_quality
from microexp_ros.eval.recon import (
    evaluate_dataset,
    firenet_rows,
    group,
    integration_rows,
    mean_frame_rows,
    mean_training_frames,
    score_recording,
)
from microexp_ros.models.cvae import CVAEConfig, ReconCVAE
from microexp_ros.models.firenet import FireNet, FireNetConfig
from microexp_ros.models.recon_inference import Reconstructor
from microexp_ros.train.recon import TrainConfig, train
from test_cvae import SIZE, tiny_clip


@pytest.fixture(scope="module")
def clips():
    return {"train": [tiny_clip(s, lighting="normal") for s in (0, 1)],
            "test": [tiny_clip(5, lighting="dim"), tiny_clip(6, lighting="normal", res="low")]}


def test_mean_frame_baseline_scores_the_mean_of_training_frames(clips):
    means = mean_training_frames(clips["train"])
    assert set(means) == {"synthetic/high"}
    expected = np.concatenate([c.gray for c in clips["train"]]).mean(0) / 255.0
    np.testing.assert_allclose(means["synthetic/high"], expected, atol=1e-9)
    rows = mean_frame_rows(means, clips["train"][:1])
    c = clips["train"][0]
    assert [r["k"] for r in rows] == list(c.frames)
    assert rows[0]["ssim"] == pytest.approx(frame_quality(means["synthetic/high"], c.gray[c.frames[0]])["ssim"])


def test_event_integration_from_the_first_frame_tracks_the_motion(clips):
    c = clips["train"][0]
    start = {"synthetic/high": c.gray[0] / 255.0}  # integrate from the true initial frame instead of the mean
    integ = integration_rows(start, [c])
    held = mean_frame_rows(start, [c])  # the same start frame with no events added
    assert [r["k"] for r in integ] == [r["k"] for r in held]
    # adding the simulator's events moves the image towards the later frames
    assert np.mean([r["mse"] for r in integ]) < 0.7 * np.mean([r["mse"] for r in held])
    assert all(r["method"] == "event integration" for r in integ)


def test_missing_resolution_for_mean_frame_raises(clips):
    means = mean_training_frames(clips["train"])
    with pytest.raises(ValueError, match="no mean training frame"):
        mean_frame_rows(means, clips["test"][1:])


def test_firenet_trains_and_is_scored_over_whole_clips(clips, tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = TrainConfig(model="firenet", steps=15, batch=2, crop=SIZE, seq_len=3, eval_every=15, lr=5e-3)
    torch.manual_seed(cfg.seed)
    before = firenet_rows(FireNet(FireNetConfig()), clips["train"])  # the initial weights train() starts from
    model, history = train(cfg, [clips["train"]], [], tmp_path, progress=False)
    after = firenet_rows(model, clips["train"])
    assert np.mean([r["mse"] for r in after]) < 0.8 * np.mean([r["mse"] for r in before])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    rows = firenet_rows(model, clips["train"][:1], max_frames=3)
    assert [r["k"] for r in rows] == [3, 9, 15] and all(0 <= r["ssim"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="keyframe"):
        TrainConfig(model="firenet", keyframe=True)


def test_dataset_table_rows_and_montage(clips, tmp_path):
    cvae = Reconstructor(ReconCVAE(CVAEConfig()))
    key = Reconstructor(ReconCVAE(CVAEConfig(keyframe=True)))
    train_all = clips["train"] + [tiny_clip(2, res="low")]
    out = evaluate_dataset(clips["test"], train_all, cvae, key, FireNet(FireNetConfig()), max_frames=2,
                           montage_dir=tmp_path)
    methods = {r["method"] for r in out["table"]}
    assert methods == {"cvae", "cvae+keyframe", "firenet", "mean frame", "event integration"}
    assert {(r["res"], r["lighting"]) for r in out["per_lighting"]} == {("high", "dim"), ("low", "normal")}
    assert all(r["n"] == 2 for r in out["table"])
    assert out["ssim_synthetic_high"] is not None and out["ssim_high"] is None  # no real-video clips here
    assert (tmp_path / "montage_cvae.png").is_file() and (tmp_path / "montage_cvae_keyframe.png").is_file()


def test_group_means_per_key():
    rows = [{"m": "a", "ssim": 0.5, "psnr": 20.0, "mse": 0.01}, {"m": "a", "ssim": 0.7, "psnr": 22.0, "mse": 0.03},
            {"m": "b", "ssim": 0.1, "psnr": 10.0, "mse": 0.1}]
    g = group(rows, ("m",))
    assert g[0] == {"m": "a", "ssim": pytest.approx(0.6), "psnr": pytest.approx(21.0), "mse": pytest.approx(0.02), "n": 2}
    assert g[1]["n"] == 1


def test_davis346_recording_frames_are_scored(real_data):
    from microexp_ros.events.aedat4 import Aedat4File
    from microexp_ros.events.reader_protocol import read_all

    path = real_data / "event_vision_library" / "sample.aedat4"
    source = Aedat4File(path)
    (chunk,) = read_all(source).values()
    frames = list(source.frames())
    assert len(frames) == 4 and frames[0].pixels.shape == (260, 346)
    windows = {"cvae_40ms": 40_000_000, "cvae_600ms": 600_000_000}
    recs = {name: Reconstructor(ReconCVAE(CVAEConfig()), {"train": {"window_ns": w}}) for name, w in windows.items()}
    scores = score_recording(recs, chunk.events, frames, 346, 260)
    t = chunk.events["t"]
    for name, w in windows.items():   # frame k+1 from the model's own window ending there, what the file holds of it
        assert scores[name]["n"] == 3
        assert scores[name]["events_per_window"] == [int(((t >= b.t - w) & (t < b.t)).sum()) for b in frames[1:]]
    # the recording starts 4 ms after its first frame: a 600 ms window holds all of it up to the frame
    assert scores["cvae_600ms"]["events_per_window"] == [int((t < b.t).sum()) for b in frames[1:]]
    assert scores["cvae_600ms"]["events_per_window"][-1] > scores["cvae_40ms"]["events_per_window"][-1]
    # the static street barely changes between APS frames: the previous frame is a strong baseline
    assert scores["previous frame"]["ssim"] > 0.8
    with pytest.raises(ValueError, match="at least 2"):
        score_recording(recs, chunk.events, frames[:1], 346, 260)


def _write_dataset(root, clip_specs) -> None:
    """A tiny dataset in the microexp-dataset/1 contract: two resolutions of the same drifting scene."""
    import json

    clips = []
    for cid, split, seed, lighting in clip_specs:
        high, low = tiny_clip(seed, lighting=lighting), tiny_clip(seed, lighting=lighting, size=24)
        d = root / "clips" / cid
        d.mkdir(parents=True)
        np.save(d / "events_high.npy", high.events)
        np.save(d / "events_low.npy", low.events)
        np.save(d / "rgb.npy", np.repeat(high.gray[..., None], 3, axis=3))
        np.save(d / "rgb_t.npy", high.t)
        np.save(d / "gray_high.npy", high.gray)
        np.save(d / "gray_low.npy", low.gray)
        clips.append({"id": cid, "dir": f"clips/{cid}", "split": split, "identity": f"id{seed:03d}",
                      "lighting": lighting, "source": "video", "label": 0,
                      "aus": [], "macro": False, "duration_ns": int(high.t[-1]) + 20_000_000})
    manifest = {"format": "microexp-dataset/1", "seed": 0, "command": "test fixture", "created": "2026-01-01T00:00:00Z",
                "rgb": {"width": SIZE, "height": SIZE, "fps": 30.0},
                "resolutions": {"high": {"width": SIZE, "height": SIZE}, "low": {"width": 24, "height": 24}},
                "clips": clips}
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_cli_train_then_eval_on_a_dataset_directory(tmp_path, capsys):
    pytest.importorskip("microexp_ros.data.dataset", reason="dataset reader (synthetic-data engineer) not landed")
    import json

    from microexp_ros.cli import main

    data = tmp_path / "data"
    _write_dataset(data, [("c0", "train", 0, "normal"), ("c1", "train", 1, "dim"), ("c2", "val", 2, "normal"),
                          ("c3", "test", 3, "dim")])
    weights = tmp_path / "w.safetensors"
    assert main(["train", "recon", "--data", str(data), "--out", str(weights), "--workdir", str(tmp_path / "run"),
                 "--steps", "20", "--batch", "4", "--crop", "24", "--eval-every", "10", "--threads", "1",
                 "--no-progress", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["train_frames"] == {"video/high": 26, "video/low": 26}
    side = json.loads(weights.with_suffix(".json").read_text())
    assert side["meta"]["seed"] == 0 and "train recon" in side["meta"]["command"]
    assert side["meta"]["data"][0]["clips"] == 4
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "checkpoint.safetensors").is_file()
    assert main(["eval", "recon", "--data", str(data), "--weights", str(weights), "--out-dir", str(tmp_path / "ev"),
                 "--no-real", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames_high"] == result["frames_low"] == 13
    assert 0.0 < result["ssim_high"] < 1.0 and result["psnr_low"] > 0
    assert {r["method"] for r in result["table"]} >= {"cvae", "mean frame", "event integration"}


def test_video_is_converted_and_every_frame_with_a_full_window_scored(real_data):
    from microexp_ros.eval.recon import score_video

    recs = {"cvae": Reconstructor(ReconCVAE(CVAEConfig())),
            "cvae+keyframe": Reconstructor(ReconCVAE(CVAEConfig(keyframe=True)))}
    out = score_video(recs, real_data / "pyfeat" / "single_face.mp4", 48, 48, seconds=0.4)
    assert out["frames"] == 12 and out["fps"] == pytest.approx(30.0, rel=1e-3)
    assert out["events"] > 1000  # a talking face moves
    # frames 3..11 have a keyframe 3 frames earlier and a full 33 ms window before them
    assert out["cvae"]["n"] == out["cvae+keyframe"]["n"] == 9
    assert 0.0 < out["cvae"]["ssim"] < 1.0


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from microexp_ros.cli import main

    assert main(["eval", "recon", "--weights", str(tmp_path / "none.safetensors"), "--no-real"]) == 2
    assert "error: weights file not found" in capsys.readouterr().err
    assert main(["eval", "recon", "--events", str(tmp_path / "x.aedat4")]) == 2
    assert "--events and --frames-from go together" in capsys.readouterr().err
