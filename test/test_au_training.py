"""AU training on a tiny simulated dataset in the dataset-contract format: windows, targets, the training
command end to end (weights + sidecar + curve), and the trained model through AUPredictor.

`write_tiny_dataset` / the `au_dataset` fixture are also used by test_au_eval.py. The dataset uses a small
geometry (64 px high-res face, 32 px low-res, 48 px webcam, 700 ms clips) and is rendered once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from microexp_ros.facs import MODEL_AUS, SINGLE_LABEL_CLASSES
from microexp_ros.models.au_inference import BAF_DT_NS, AUPredictor, au_targets, select_window
from microexp_ros.models.weights import read_sidecar

LABELS = (0, 12, 4)
SPLITS = {"train": ("id000", "id001"), "val": ("id002",), "test": ("id003",)}
LIGHTINGS = ("normal", "dim", "bright")


def write_tiny_dataset(root: Path) -> Path:
    """Render the clips with the simulator and write them with the dataset writer (contract layout)."""
    from microexp_ros.data.dataset import write_clip, write_manifest
    from microexp_ros.sim.clip import ClipSpec, Geometry, make_clip
    from microexp_ros.sim.face import make_identities

    if (root / "manifest.json").is_file():
        return root
    geometry = Geometry(high=64, low=32, rgb=48, duration_ns=700_000_000)
    identities = make_identities(4, seed=5)
    clips = []
    k = 0
    for split, names in SPLITS.items():
        for name in names:
            identity = identities[int(name[2:])]
            for i, label in enumerate(LABELS):
                clip_id = f"c{k:05d}"
                lighting = LIGHTINGS[(i + k) % len(LIGHTINGS)]
                data = make_clip(ClipSpec(clip_id, identity, lighting, label, False, seed=100 + k), geometry)
                write_clip(root, f"clips/{clip_id}", data.events, data.rgb, data.rgb_t, data.gray)
                aus = [{key: a[key] for key in ("au", "intensity", "onset_ns", "apex_ns", "offset_ns", "role")}
                       for a in data.meta["aus"]]
                clips.append({"id": clip_id, "dir": f"clips/{clip_id}", "split": split, "identity": name,
                              "lighting": lighting, "source": "synthetic", "label": label, "aus": aus,
                              "macro": False, "duration_ns": geometry.duration_ns})
                k += 1
    manifest = {
        "format": "microexp-dataset/1", "seed": 5, "command": "test/test_au_training.py::write_tiny_dataset", "created": "2026-01-01T00:00:00Z",
        "rgb": {"width": geometry.rgb, "height": geometry.rgb, "fps": geometry.fps},
        "resolutions": {"high": {"width": geometry.high, "height": geometry.high},
                        "low": {"width": geometry.low, "height": geometry.low}},
        "clips": clips,
    }
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="session")
def au_dataset(tmp_path_factory) -> Path:
    """The tiny dataset, rendered once per session (shared with test_au_eval.py through the base temp dir)."""
    return write_tiny_dataset(tmp_path_factory.getbasetemp() / "au_tiny_dataset")


def entry(label: int, onset: int = 100_000_000, apex: int = 180_000_000, offset: int = 260_000_000,
          duration: int = 400_000_000) -> dict:
    aus = [] if label == 0 else [{"au": label, "intensity": 2.0, "onset_ns": onset, "apex_ns": apex,
                                  "offset_ns": offset, "role": "main"}]
    return {"id": "x", "label": label, "aus": aus, "duration_ns": duration}


def test_window_covers_onset_to_apex_and_stays_inside_the_clip():
    t0, t1 = select_window(entry(12), 200_000_000)
    assert t1 - t0 == 200_000_000 and t0 <= 100_000_000 and t1 >= 180_000_000
    # A rise longer than the window: the window ends at the apex.
    assert select_window(entry(12, onset=10_000_000, apex=350_000_000, offset=390_000_000), 200_000_000) == (
        150_000_000, 350_000_000)
    # Near the start the window is clamped to the clip.
    assert select_window(entry(4, onset=0, apex=40_000_000, offset=90_000_000), 200_000_000)[0] == 0
    # Neutral: the centre without rng, a reproducible random window with one.
    assert select_window(entry(0), 200_000_000) == (100_000_000, 300_000_000)
    draws = {select_window(entry(0), 200_000_000, np.random.default_rng(s)) for s in range(20)}
    assert len(draws) > 1 and all(0 <= a and b <= 400_000_000 for a, b in draws)
    jittered = [select_window(entry(12), 200_000_000, np.random.default_rng(s), 30_000_000) for s in range(20)]
    assert len(set(jittered)) > 1 and all(b - a == 200_000_000 for a, b in jittered)
    with pytest.raises(ValueError, match="window length"):
        select_window(entry(12), 500_000_000)
    with pytest.raises(ValueError, match="lists no such AU"):
        select_window({"id": "bad", "label": 12, "aus": [], "duration_ns": 400_000_000})


def test_targets_mark_aus_overlapping_the_window():
    clip = entry(12)
    clip["aus"].append({"au": 45, "intensity": 1.0, "onset_ns": 320_000_000, "apex_ns": 340_000_000,
                        "offset_ns": 360_000_000, "role": "distractor"})
    multi, label = au_targets(clip, 100_000_000, 300_000_000)
    assert SINGLE_LABEL_CLASSES[label] == 12
    assert multi[MODEL_AUS.index(12)] == 1 and multi.sum() == 1  # the blink is outside this window
    multi, _ = au_targets(clip, 200_000_000, 400_000_000)
    assert multi[MODEL_AUS.index(45)] == 1 and multi[MODEL_AUS.index(12)] == 1


@pytest.mark.parametrize("modality,arch,encoding", [("events", "snn", "polarity"), ("events", "snn", "polarity_net"),
                                                    ("events", "snn", "polarity_baf"), ("rgb", "cnn", "polarity")])
def test_train_command_fits_the_tiny_set_and_writes_loadable_weights(au_dataset, tmp_path, modality, arch, encoding):
    from microexp_ros.cli import main

    out = tmp_path / f"{arch}_{modality}.safetensors"
    argv = ["train", "au", "--data", str(au_dataset), "--out", str(out), "--modality", modality, "--arch", arch,
            "--epochs", "25", "--patience", "25", "--size", "32", "--bins", "6", "--copies", "2", "--seed", "3",
            "--batch-size", "8", "--lr", "3e-3", "--threads", "1", "--encoding", encoding, "--json"]
    narrow = encoding == "polarity_net"  # one run with other snn widths than the defaults
    argv += ["--channels", "8,16,32", "--hidden", "48"] if narrow else []
    assert main(argv) == 0
    record = read_sidecar(out)
    meta = record["meta"]
    assert meta["seed"] == 3 and "--seed 3" in meta["command"] and meta["data"]["clips"]["train"] == 6
    history = meta["metrics"]["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert max(h["train_accuracy"] for h in history) == 1.0
    assert out.with_name(out.stem + "_curve.png").stat().st_size > 1000
    assert record["config"]["modality"] == modality and record["config"]["arch"] == arch
    if modality == "events":
        assert record["config"]["encoding"] == encoding and "--encoding " + encoding in meta["command"]
        assert record["config"].get("baf_dt_ns") == (BAF_DT_NS if encoding == "polarity_baf" else None)
        widths = ([8, 16, 32], 48) if narrow else ([16, 32, 64], 128)
        assert (record["config"]["channels"], record["config"]["hidden"]) == widths
        assert f"--channels {','.join(map(str, widths[0]))} --hidden {widths[1]}" in meta["command"]

    # The saved model is the best-validation one, and predicts deterministically through AUPredictor.
    predictor = AUPredictor.from_file(out)
    from microexp_ros.data.dataset import load_clip, load_manifest

    manifest = load_manifest(au_dataset)
    clip_entry = next(c for c in manifest["clips"] if c["split"] == "train" and c["label"] == 12)
    clip = load_clip(au_dataset, clip_entry)
    t0, t1 = select_window(clip_entry, predictor.window_ns)
    if modality == "events":
        size = (manifest["resolutions"]["high"]["width"], manifest["resolutions"]["high"]["height"])
        run = lambda: predictor.predict(clip.events["high"], t0, t1, (0, 0, *size), size)  # noqa: E731
    else:
        h, w = clip.rgb.shape[1:3]
        run = lambda: predictor.predict_frames(clip.rgb, clip.rgb_t, t0, t1, (0, 0, w, h))  # noqa: E731
    first, second = run(), run()
    assert np.array_equal(first.probabilities, second.probabilities) and first.label == second.label
    assert json.loads(out.with_suffix(".json").read_text())["meta"]["metrics"]["best"]["epoch"] >= 1


def test_training_rejects_bad_options(au_dataset, tmp_path):
    from microexp_ros.train.au import TrainOptions

    with pytest.raises(ValueError, match="modality"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), modality="audio")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), epochs=0)
    with pytest.raises(ValueError, match="shift_px"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), shift_px=32)
    with pytest.raises(ValueError, match="readout"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), arch="cnn", readout="membrane")
    with pytest.raises(ValueError, match="encoding"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), modality="rgb",
                     encoding="polarity_net")
    with pytest.raises(ValueError, match="the cnn has fixed ones"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), arch="cnn", hidden=256)
    with pytest.raises(ValueError, match="channels and hidden must be positive"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), channels=(16, 0, 64))
    with pytest.raises(ValueError, match="not 'polarity_baf'"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), encoding="polarity_baf",
                     reverse_prob=0.5)
    with pytest.raises(ValueError, match="one sensor"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), dark_prob=0.5)
    with pytest.raises(ValueError, match="encoding 'polarity' or 'polarity_net' only"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), resolution="high", dark_prob=0.5,
                     encoding="polarity_baf")


def test_shift_translates_each_input_and_fills_the_border_with_zeros():
    from microexp_ros.train.au import shift_inputs

    x = torch.rand(64, 8, 2, 16, 16) + 1.0   # no zeros inside
    shifted = shift_inputs(x, 3, torch.Generator().manual_seed(1))
    assert shifted.shape == x.shape and torch.equal(shift_inputs(x, 0, None), x)
    moves = set()
    for before, after in zip(x, shifted):
        rows = (after[0, 0] != 0).any(1).nonzero().flatten()
        cols = (after[0, 0] != 0).any(0).nonzero().flatten()
        dy = int(rows[0]) if rows[0] > 0 else int(rows[-1]) - 15   # >0: moved down, <=0: moved up
        dx = int(cols[0]) if cols[0] > 0 else int(cols[-1]) - 15
        assert abs(dy) <= 3 and abs(dx) <= 3
        src = before[..., max(-dy, 0):16 - max(dy, 0), max(-dx, 0):16 - max(dx, 0)]
        assert torch.equal(after[..., max(dy, 0):16 - max(-dy, 0), max(dx, 0):16 - max(-dx, 0)], src)
        moves.add((dy, dx))
    assert len(moves) > 10   # each input its own translation


def test_flickered_windows_gain_the_counts_of_a_flicker_floor():
    from microexp_ros.train.au import WindowSet, flicker_floors, flickered

    g = torch.Generator().manual_seed(5)
    counts = torch.poisson(torch.full((6, 4, 2, 8, 8), 2.0), generator=g)
    counts[3:] += 30.0   # windows 3-5 are flicker-lit: a high floor in every bin
    data = WindowSet(torch.log1p(counts).half(), torch.zeros(6, 12), torch.zeros(6, dtype=torch.long),
                     ["normal"] * 3 + ["flicker"] * 3)
    floors = flicker_floors(data)
    assert floors.shape == (3, 2, 8, 8) and torch.allclose(floors, counts[3:].mean(1), atol=0.01)
    quiet = torch.zeros(400, 4, 2, 8, 8)   # no events of their own
    lit = torch.expm1(flickered(quiet, floors, g)).round()
    assert abs(float(lit.mean()) - float(floors.mean())) < 0.2   # Poisson counts with a floor's mean
    net = flickered(torch.cat([quiet[:4], torch.zeros(4, 4, 1, 8, 8)], 2), floors, g)
    on_off = torch.expm1(net[:, :, :2]).round()
    expect = torch.sign(on_off[:, :, 1] - on_off[:, :, 0]) * torch.log1p((on_off[:, :, 1] - on_off[:, :, 0]).abs())
    assert torch.allclose(net[:, :, 2], expect, atol=1e-5)   # the net channel follows the new counts
    with pytest.raises(ValueError, match="needs flicker-lit training windows"):
        flicker_floors(WindowSet(data.x[:3], data.multi[:3], data.label[:3], ["normal"] * 3))


def test_flicker_prob_is_checked(au_dataset, tmp_path):
    from microexp_ros.train.au import TrainOptions

    out = str(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="flicker_prob must be in"):
        TrainOptions(data=str(au_dataset), out=out, resolution="high", flicker_prob=1.5)
    with pytest.raises(ValueError, match="one sensor"):
        TrainOptions(data=str(au_dataset), out=out, flicker_prob=0.3)


def test_scale_jitter_stretches_each_input_about_its_centre():
    from microexp_ros.train.au import scaled_inputs

    x = torch.zeros(32, 4, 2, 32, 32)
    x[..., 8:24, 8:24] = 1.0   # a centred 16x16 square in every bin and channel
    stretched = scaled_inputs(x, 0.2, torch.Generator().manual_seed(3))
    assert stretched.shape == x.shape and torch.equal(scaled_inputs(x, 0.0, None), x)
    sizes = set()
    for planes in stretched:
        assert torch.allclose(planes, planes[0, 0].expand_as(planes))   # one stretch for the whole window
        inside = planes[0, 0] > 0.5
        width, height = int(inside[16].sum()), int(inside[:, 16].sum())
        assert 16 * 0.8 - 1 <= width <= 16 * 1.2 + 1 and 16 * 0.8 - 1 <= height <= 16 * 1.2 + 1
        cols = inside.any(0).nonzero().flatten()
        assert abs((int(cols[0]) + int(cols[-1])) / 2 - 15.5) <= 0.5   # about the centre
        sizes.add((width, height))
    assert len(sizes) > 5   # each input its own factors, width and height apart


def test_scale_jitter_is_range_checked(au_dataset, tmp_path):
    from microexp_ros.train.au import TrainOptions

    with pytest.raises(ValueError, match="scale_jitter must be in"):
        TrainOptions(data=str(au_dataset), out=str(tmp_path / "m.safetensors"), scale_jitter=0.5)


def test_darkened_windows_keep_a_share_of_their_events_and_gain_shot_noise():
    from microexp_ros.train.au import DARK_KEEP_MIN, DARK_NOISE_HZ, dark_noise_per_cell, darkened

    # 2x2 sensor pixels per cell, 50 ms bins: the very_dim floor's geometry
    noise = dark_noise_per_cell((128, 128), 64, 200_000_000, 4)
    assert noise == pytest.approx(DARK_NOISE_HZ * 4 * 0.05)
    with pytest.raises(ValueError, match="whole sensor pixels"):
        dark_noise_per_cell((48, 48), 64, 200_000_000, 4)
    generator = torch.Generator().manual_seed(0)
    counts = torch.expm1(darkened(torch.zeros(400, 4, 2, 16, 16), noise, generator))
    assert torch.allclose(counts, counts.round(), atol=1e-4) and counts.min() > -1e-4   # still counts
    per_window = counts.mean((1, 2, 3, 4))
    assert per_window.mean() == pytest.approx(noise / 2, rel=0.1)               # rate uniform in [0, noise]
    assert per_window.min() < 0.1 * noise and per_window.max() > 0.9 * noise    # each window its own rate
    kept = torch.expm1(darkened(torch.log1p(torch.full((400, 4, 2, 8, 8), 20.0)), 0.0, generator)).round()
    share = kept.mean((1, 2, 3, 4)) / 20
    assert share.mean() == pytest.approx((1 + DARK_KEEP_MIN) / 2, rel=0.05)
    assert DARK_KEEP_MIN - 0.05 < share.min() < DARK_KEEP_MIN + 0.1 and share.max() <= 1.0
    assert torch.all(kept <= 20)                                                 # thinning never adds events


def test_darkened_net_channel_is_the_net_count_of_the_darkened_polarities():
    from microexp_ros.events.array import synthetic_events
    from microexp_ros.models.au_inference import encode_events
    from microexp_ros.train.au import darkened

    events = synthetic_events(32, 32, 0, 200_000_000, count=3000, seed=5)
    x = torch.from_numpy(encode_events(events, 0, 200_000_000, (0, 0, 32, 32), (32, 32), size=16, bins=4,
                                       encoding="polarity_net"))[None]
    dark = darkened(x, 2.0, torch.Generator().manual_seed(0))
    assert dark.shape == x.shape and not torch.equal(dark[:, :, :2], x[:, :, :2])
    counts = torch.expm1(dark[:, :, :2]).round()
    net = counts[:, :, 1] - counts[:, :, 0]
    assert torch.allclose(dark[:, :, 2], torch.sign(net) * torch.log1p(net.abs()), atol=1e-5)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_distillation_loss_terms():
    from microexp_ros.train.au import DISTILL_TEMPERATURE, _loss

    torch.manual_seed(0)
    au, cls = torch.randn(5, len(MODEL_AUS)), torch.randn(5, len(SINGLE_LABEL_CLASSES))
    multi, label = (torch.rand(5, len(MODEL_AUS)) > 0.5).float(), torch.randint(0, len(SINGLE_LABEL_CLASSES), (5,))
    hard = _loss(au, cls, multi, label)
    # A teacher that agrees with the student adds no KL, only the BCE to its own (sigmoid) probabilities.
    same = _loss(au, cls, multi, label, (au, cls))
    assert torch.isclose(same - hard, torch.nn.functional.binary_cross_entropy_with_logits(au, torch.sigmoid(au)))
    other = torch.randn(5, len(SINGLE_LABEL_CLASSES))
    extra = _loss(au, cls, multi, label, (au, other)) - same
    t = DISTILL_TEMPERATURE
    p_teacher = torch.softmax(other / t, 1)
    kl = (p_teacher * (torch.log(p_teacher) - torch.log_softmax(cls / t, 1))).sum(1).mean()
    assert torch.isclose(extra, t * t * kl, atol=1e-6) and extra > 0


def test_ema_update_averages_weights_and_batchnorm_statistics_only():
    from microexp_ros.models.au_inference import build_au_model
    from microexp_ros.train.au import TrainOptions, ema_update

    config = {"arch": "snn", "modality": "events", "in_channels": 2, "bins": 3, "size": 16}
    torch.manual_seed(0)
    model, averaged = build_au_model(config), build_au_model(config)
    model(torch.rand(2, 3, 2, 16, 16))   # a training-mode pass: BatchNorm statistics move, neuron state fills
    before = {k: v.clone() for k, v in averaged.state_dict().items()}
    ema_update(averaged, model, 0.75)
    after, current = averaged.state_dict(), model.state_dict()
    for name, _ in model.named_parameters():
        assert torch.allclose(after[name], 0.75 * before[name] + 0.25 * current[name]), name
    bn = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert bn and all(torch.allclose(after[k], 0.75 * before[k] + 0.25 * current[k]) for k in bn)
    assert not torch.equal(after[bn[0]], before[bn[0]])   # the statistics really moved
    others = [k for k in after if k not in bn and k not in dict(model.named_parameters())]
    assert all(torch.equal(after[k], before[k]) for k in others)   # counters and neuron state untouched
    with pytest.raises(ValueError, match=r"ema .* must be in \[0, 1\)"):
        TrainOptions(data="d", out="o.safetensors", ema=1.0)


def test_train_command_distils_a_teacher_reading_the_same_input(au_dataset, tmp_path, capsys):
    from microexp_ros.cli import main

    common = ["--data", str(au_dataset), "--modality", "events", "--epochs", "3", "--size", "32", "--bins", "6",
              "--copies", "1", "--threads", "1", "--seed", "3", "--json"]
    teacher = tmp_path / "teacher.safetensors"
    assert main(["train", "au", "--out", str(teacher), "--encoding", "polarity_net", *common]) == 0
    student = tmp_path / "student.safetensors"
    assert main(["train", "au", "--out", str(student), "--encoding", "polarity_net", "--teacher", str(teacher),
                 *common]) == 0
    meta = read_sidecar(student)["meta"]
    assert meta["teacher"] == {"path": str(teacher), "sha256": read_sidecar(teacher)["sha256"]}
    assert f"--teacher {teacher}" in meta["command"] and AUPredictor.from_file(student).channels == 3
    capsys.readouterr()
    # A teacher fed another encoding cannot supply targets for this input.
    assert main(["train", "au", "--out", str(tmp_path / "bad.safetensors"), "--teacher", str(teacher), *common]) == 2
    assert "does not read the student's input" in capsys.readouterr().err


def test_train_command_runs_the_window_augmentations(au_dataset, tmp_path, capsys):
    from microexp_ros.cli import main

    common = ["--data", str(au_dataset), "--modality", "events", "--resolution", "high", "--epochs", "2", "--size",
              "32", "--bins", "4", "--copies", "1", "--threads", "1", "--seed", "3", "--json"]
    out = tmp_path / "augmented.safetensors"
    assert main(["train", "au", "--out", str(out), "--dark-prob", "0.5", "--scale-jitter", "0.1", "--shift-px", "2",
                 *common]) == 0
    command = read_sidecar(out)["meta"]["command"]
    assert "--dark-prob 0.5" in command and "--scale-jitter 0.1" in command and "--flicker-prob 0.0" in command
    capsys.readouterr()
    # The tiny set has no flicker-lit clip to take the flicker from: refused, saying so.
    assert main(["train", "au", "--out", str(tmp_path / "f.safetensors"), "--flicker-prob", "0.3", *common]) == 2
    assert "needs flicker-lit training windows" in capsys.readouterr().err


def test_teacher_whose_sidecar_predates_the_encoding_key_reads_the_polarity_input(tmp_path):
    from microexp_ros.models.au_inference import DEFAULT_WINDOW_NS, build_au_model
    from microexp_ros.models.weights import save_model
    from microexp_ros.train.au import load_teacher

    old = {"arch": "snn", "modality": "events", "in_channels": 2, "bins": 4, "size": 32}  # no window_ns, no encoding
    path = save_model(tmp_path / "old.safetensors", build_au_model(old), old, {})
    student = {**old, "encoding": "polarity", "window_ns": DEFAULT_WINDOW_NS, "resolution": "both", "readout": "spikes"}
    _, sha = load_teacher(str(path), student)
    assert sha == read_sidecar(path)["sha256"]
    with pytest.raises(ValueError, match=r"\(teacher, student\) \{'in_channels': \(2, 3\), "
                                         r"'encoding': \('polarity', 'polarity_net'\)\}"):
        load_teacher(str(path), {**student, "in_channels": 3, "encoding": "polarity_net"})
