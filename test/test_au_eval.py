"""AU evaluation: the classification metrics on hand-worked cases, and `microexp eval au` on a tiny simulated
dataset with trained weights, checking that offline evaluation equals the predictor's online call."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from microexp_ros.eval.classification_metrics import (
    accuracy,
    chance_levels,
    confusion_matrix,
    macro_f1,
    multilabel_f1,
    per_class_f1,
)
from test_au_training import au_dataset  # noqa: F401  (session fixture shared with the training tests)


def test_metrics_on_a_worked_example():
    t = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    assert accuracy(t, p) == pytest.approx(4 / 6)
    cm = confusion_matrix(t, p, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 1 fp 0 fn 1 -> 2/3; class 3 unseen.
    f1 = per_class_f1(t, p, 4)
    assert f1[:3] == pytest.approx([0.5, 0.8, 2 / 3]) and math.isnan(f1[3])
    assert macro_f1(t, p, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert chance_levels(t, 4) == {"uniform": 0.25, "majority": pytest.approx(1 / 3)}
    ml = multilabel_f1(np.array([[1, 0, 0], [1, 1, 0]]), np.array([[1, 1, 0], [0, 1, 0]]))
    assert ml[:2] == pytest.approx([2 / 3, 2 / 3]) and math.isnan(ml[2])
    with pytest.raises(ValueError, match="class indices must be in"):
        confusion_matrix([0, 5], [0, 1], 4)
    with pytest.raises(ValueError, match="equal length"):
        accuracy([0, 1], [0])


@pytest.fixture(scope="module")
def trained_models(au_dataset, tmp_path_factory):  # noqa: F811
    """Small events SNN, RGB SNN and RGB CNN trained with the training command on the tiny dataset."""
    from microexp_ros.cli import main

    out = tmp_path_factory.mktemp("au_models")
    paths = {}
    for stem, modality, arch, encoding in (("snn_events", "events", "snn", "polarity"),
                                           ("snn_events_net", "events", "snn", "polarity_net"),
                                           ("snn_rgb", "rgb", "snn", "polarity"),
                                           ("cnn_rgb", "rgb", "cnn", "polarity")):
        paths[stem] = out / f"{stem}.safetensors"
        assert main(["train", "au", "--data", str(au_dataset), "--out", str(paths[stem]), "--modality", modality,
                     "--arch", arch, "--epochs", "4", "--size", "32", "--bins", "6", "--copies", "1",
                     "--encoding", encoding, "--threads", "1", "--json"]) == 0
    paths["snn_events_ensemble"] = out / "snn_events_ensemble.safetensors"
    assert main(["train", "au-ensemble", str(paths["snn_events"]), str(paths["snn_events_net"]), "--out",
                 str(paths["snn_events_ensemble"])]) == 0
    return paths


def test_eval_command_table_and_json(au_dataset, trained_models, tmp_path, capsys):  # noqa: F811
    from microexp_ros.cli import main

    argv = ["eval", "au", "--data", str(au_dataset), "--snn-events", str(trained_models["snn_events"]),
            "--snn-events-low", str(trained_models["snn_events_net"]),
            "--snn-events-ensemble", str(trained_models["snn_events_ensemble"]),
            "--snn-rgb", str(trained_models["snn_rgb"]), "--cnn-rgb", str(trained_models["cnn_rgb"]),
            "--out-dir", str(tmp_path / "png"), "--threads", "1"]
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("events_accuracy", "events_macro_f1", "rgb_accuracy", "rgb_macro_f1", "dim_gap_points",
                "ensemble_accuracy", "ensemble_macro_f1", "fusion_accuracy", "fusion_macro_f1",
                "ensemble_fusion_accuracy", "ensemble_fusion_macro_f1"):
        assert key in payload
    assert payload["clips"] == 3 and payload["windows"] == 1
    rows = payload["rows"]
    events_rows = {"events SNN high", "events SNN low", "events SNN ensemble high", "events SNN ensemble low"}
    assert set(rows) == events_rows | {"RGB SNN", "RGB CNN"} | {
        f"{r.rsplit(' ', 1)[0]} + RGB CNN {r.rsplit(' ', 1)[1]}" for r in events_rows}
    assert payload["ensemble_accuracy"] == rows["events SNN ensemble high"]["all"]["accuracy"]
    assert payload["fusion_accuracy"] == rows["events SNN + RGB CNN high"]["all"]["accuracy"]
    for row in rows.values():
        assert row["all"]["n"] == 3 and 0.0 <= row["all"]["accuracy"] <= 1.0
        assert sum(c["n"] for c in row["lighting"].values()) == 3
        assert row["all"]["chance"]["uniform"] == pytest.approx(1 / 13)
    dim = rows["events SNN high"]["dim"]["accuracy"] - rows["RGB SNN"]["dim"]["accuracy"]
    assert payload["dim_gap_points"] == pytest.approx(100 * dim)
    assert len(payload["confusion_png"]) == 10 and all((tmp_path / "png").glob("confusion_*.png"))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "events SNN high" in text and "per-AU F1" in text and "chance" in text
    assert main(argv + ["--windows", "2"]) == 0
    assert "probabilities averaged over 2 windows 33.3333 ms apart" in capsys.readouterr().out
    assert main(argv + ["--flip-average"]) == 0
    assert "each window fused with its mirror image" in capsys.readouterr().out
    assert payload["flip_average"] is False


def test_flip_average_reaches_every_rows_predictor(trained_models):  # noqa: F811
    from argparse import Namespace

    from microexp_ros.cli.au_cmd import SHIPPED, _rows

    stems = {"snn_events_default": "snn_events", "snn_events_low_default": "snn_events_net",
             "snn_events_ensemble": "snn_events_ensemble", "snn_rgb_default": "snn_rgb",
             "cnn_rgb_default": "cnn_rgb"}
    assert set(stems) == set(SHIPPED)
    for flip in (False, True):
        rows = _rows(Namespace(flip_average=flip, **{s: trained_models[k] for s, k in stems.items()}))
        assert [row.predictor.flip_average for row in rows] == [flip] * len(rows)


def test_eval_fuses_only_pairs_reading_one_window(au_dataset, trained_models, tmp_path, capsys):  # noqa: F811
    """An events model with another window than the webcam CNN gets no fused row (au_classifier refuses to
    fuse such a pair) and its fusion keys are null; the ensemble, with the CNN's window, keeps its rows."""
    from microexp_ros.cli import main
    from microexp_ros.models.au_inference import build_au_model
    from microexp_ros.models.weights import read_sidecar, save_model

    config = {**read_sidecar(trained_models["snn_events"])["config"], "window_ns": 150_000_000}
    other = save_model(tmp_path / "snn_150ms.safetensors", build_au_model(config), config, {})
    capsys.readouterr()
    assert main(["eval", "au", "--data", str(au_dataset), "--snn-events", str(other),
                 "--snn-events-low", str(trained_models["snn_events"]),
                 "--snn-events-ensemble", str(trained_models["snn_events_ensemble"]),
                 "--snn-rgb", str(trained_models["snn_rgb"]), "--cnn-rgb", str(trained_models["cnn_rgb"]),
                 "--out-dir", str(tmp_path / "png"), "--threads", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["fusion_accuracy"] is None and payload["fusion_macro_f1"] is None
    assert "events SNN + RGB CNN high" not in payload["rows"] and "events SNN high" in payload["rows"]
    assert payload["ensemble_fusion_accuracy"] == \
        payload["rows"]["events SNN ensemble + RGB CNN high"]["all"]["accuracy"]


def test_eval_scores_a_model_only_on_its_own_sensor(au_dataset, trained_models, tmp_path, capsys):  # noqa: F811
    """A model trained on one event sensor's windows alone gets no row for the other sensor (the shipped
    ensemble's members are high-resolution models); its keys are null and the table still prints."""
    from microexp_ros.cli import main
    from microexp_ros.models.au_inference import build_au_model
    from microexp_ros.models.weights import read_sidecar, save_model

    def trained_on(resolution: str):
        config = {**read_sidecar(trained_models["snn_events"])["config"], "resolution": resolution}
        return save_model(tmp_path / f"{resolution}.safetensors", build_au_model(config), config, {})

    argv = ["eval", "au", "--data", str(au_dataset), "--snn-events", str(trained_on("low")),
            "--snn-events-low", str(trained_models["snn_events_net"]), "--snn-events-ensemble", str(trained_on("high")),
            "--snn-rgb", str(trained_models["snn_rgb"]), "--cnn-rgb", str(trained_models["cnn_rgb"]),
            "--out-dir", str(tmp_path / "png"), "--threads", "1"]
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"events SNN ensemble high", "events SNN low"} <= set(payload["rows"])
    assert not {"events SNN high", "events SNN ensemble low", "events SNN + RGB CNN high"} & set(payload["rows"])
    assert payload["ensemble_low_accuracy"] is None and payload["events_accuracy"] is None
    assert payload["dim_gap_points"] is None and payload["ensemble_accuracy"] is not None
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "events SNN ensemble high" in text and "dim-light gap" not in text


def test_offline_evaluation_equals_the_online_predictor(au_dataset, trained_models):  # noqa: F811
    from microexp_ros.data.dataset import load_clip, load_manifest
    from microexp_ros.eval.au import Row, predict_clips
    from microexp_ros.facs import SINGLE_LABEL_CLASSES
    from microexp_ros.models.au_inference import AUPredictor, select_window

    torch.set_num_threads(1)
    predictor = AUPredictor.from_file(trained_models["snn_events"])
    manifest = load_manifest(au_dataset)
    entries = [c for c in manifest["clips"] if c["split"] == "test"]
    preds = predict_clips(au_dataset, manifest, entries, [Row("ev", predictor, "low")])
    size = (manifest["resolutions"]["low"]["width"], manifest["resolutions"]["low"]["height"])
    for entry, pred in zip(entries, preds):
        clip = load_clip(au_dataset, entry)
        t0, t1 = select_window(entry, predictor.window_ns)
        online = predictor.predict(clip.events["low"], t0, t1, (0, 0, *size), size)
        assert np.array_equal(online.probabilities, pred.probabilities)
        assert SINGLE_LABEL_CLASSES[pred.pred] == online.label
    # Two windows, 33 ms apart: the mean of the node's two predictions (the later one kept inside the clip).
    # The shipped model on the high-resolution events: the 4-epoch model's output barely depends on its input.
    shipped, step = AUPredictor.from_file(), 33_333_333
    size = (manifest["resolutions"]["high"]["width"], manifest["resolutions"]["high"]["height"])
    averaged = predict_clips(au_dataset, manifest, entries, [Row("ev", shipped, "high")], windows=2, step_ns=step)
    changed = 0
    for entry, pred in zip(entries, averaged):
        clip = load_clip(au_dataset, entry)
        t0, t1 = select_window(entry, shipped.window_ns)
        later = min(t0 + step, int(entry["duration_ns"]) - shipped.window_ns)
        results = [shipped.predict(clip.events["high"], a, a + shipped.window_ns, (0, 0, *size), size)
                   for a in (t0, later)]
        np.testing.assert_allclose(pred.probabilities, np.mean([r.probabilities for r in results], axis=0), atol=1e-7)
        assert pred.pred == int(np.argmax(np.mean([r.class_probabilities for r in results], axis=0)))
        changed += not np.allclose(pred.probabilities, results[0].probabilities, atol=1e-3)
    assert changed > 0
    with pytest.raises(ValueError, match="windows >= 1"):
        predict_clips(au_dataset, manifest, entries, [Row("ev", predictor, "low")], windows=0)


def test_fused_rows_are_the_fusion_of_each_clips_member_predictions(au_dataset, trained_models):  # noqa: F811
    """`fused_predictions` (the eval's `+ RGB CNN` rows) equals `fuse` of the two models' window results,
    the call au_classifier makes with fuse_rgb."""
    from microexp_ros.data.dataset import load_clip, load_manifest
    from microexp_ros.eval.au import Row, fused_predictions, predict_clips
    from microexp_ros.models.au_inference import AUPredictor, fuse, select_window

    torch.set_num_threads(1)
    events, rgb = AUPredictor.from_file(), AUPredictor.from_file(trained_models["cnn_rgb"])
    manifest = load_manifest(au_dataset)
    entries = [c for c in manifest["clips"] if c["split"] == "test"]
    preds = predict_clips(au_dataset, manifest, entries, [Row("ev", events, "high"), Row("rgb", rgb, "rgb")])
    fused = fused_predictions(preds, ("ev", "rgb"), "both")
    size = (manifest["resolutions"]["high"]["width"], manifest["resolutions"]["high"]["height"])
    for entry, pred in zip(entries, fused):
        clip = load_clip(au_dataset, entry)
        t0, t1 = select_window(entry, events.window_ns)
        parts = [events.predict(clip.events["high"], t0, t1, (0, 0, *size), size),
                 rgb.predict_frames(clip.rgb, clip.rgb_t, t0, t1, (0, 0, clip.rgb.shape[2], clip.rgb.shape[1]))]
        want = fuse(parts)
        assert (pred.row, pred.clip_id) == ("both", entry["id"])
        np.testing.assert_allclose(pred.probabilities, want.probabilities, atol=1e-7)
        np.testing.assert_allclose(pred.class_probabilities, want.class_probabilities, atol=1e-7)
        assert pred.pred == int(np.argmax(want.class_probabilities))
    with pytest.raises(ValueError, match="no prediction of row"):
        fused_predictions(preds[:-1], ("ev", "rgb"), "both")


def test_eval_rejects_a_missing_weights_file(au_dataset, tmp_path, capsys):  # noqa: F811
    from microexp_ros.cli import main

    missing = tmp_path / "none.safetensors"
    assert main(["eval", "au", "--data", str(au_dataset), "--snn-events", str(missing)]) == 2
    assert capsys.readouterr().err == f"microexp eval au: error: weights file not found: {missing}\n"


def test_shipped_weights_load_and_the_events_model_runs_on_a_generated_window():
    from microexp_ros.bench.au import bench_window
    from microexp_ros.facs import SINGLE_LABEL_CLASSES
    from microexp_ros.models.au_inference import AUPredictor
    from microexp_ros.models.shipped import DEFAULT_LOW_EVENTS_MODEL
    from microexp_ros.resources import share_path

    torch.set_num_threads(1)
    predictor = AUPredictor.from_file()  # the shipped default events model (high-resolution sensors)
    low = AUPredictor.from_file(share_path("models", DEFAULT_LOW_EVENTS_MODEL))
    assert predictor.modality == "events" and predictor.meta["data"]["clips"]["train"] > 0
    assert (predictor.meta["config"]["resolution"], low.meta["config"]["resolution"]) == ("high", "low")
    # Provenance: the training command and seed of each model, or of each member of an ensemble.
    for made in predictor.meta.get("members", [predictor.meta]) + [low.meta]:
        assert made["command"].startswith("microexp train au ") and f"--seed {made['seed']} " in made["command"]
    events, t0, t1, sensor = bench_window()  # a simulated AU12 clip at the default geometry
    first = predictor.predict(events, t0, t1, (0, 0, *sensor), sensor)
    second = predictor.predict(events, t0, t1, (0, 0, *sensor), sensor)
    assert np.array_equal(first.probabilities, second.probabilities) and first.label == second.label
    assert first.label in SINGLE_LABEL_CLASSES and np.all((first.probabilities >= 0) & (first.probabilities <= 1))
    for stem in ("snn_rgb_default", "cnn_rgb_default"):
        assert AUPredictor.from_file(share_path("models", f"{stem}.safetensors")).modality == "rgb"
    ensemble = AUPredictor.from_file(share_path("models", "snn_events_ensemble.safetensors"))
    assert ensemble.meta["config"]["arch"] == "ensemble" and len(ensemble.meta["members"]) == 2
    assert all(m["command"].startswith("microexp train au ") and f"--seed {m['seed']} " in m["command"]
               for m in ensemble.meta["members"])
    assert ensemble.predict(events, t0, t1, (0, 0, *sensor), sensor).label in SINGLE_LABEL_CLASSES


def test_eval_video_scores_presence_against_openface(real_data, capsys):
    """Real video (OpenFace sample, testing only) converted to events, scored against OpenFace's own output."""
    from microexp_ros.cli import main

    video = real_data / "openface_samples" / "default.wmv"
    csv = real_data / "openface_au_reference" / "default.csv"
    capsys.readouterr()
    assert main(["eval", "au", "--video", str(video), "--openface-csv", str(csv), "--crop", "100,60,300,300",
                 "--seconds", "2", "--threads", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    # 2 s at 15 fps: frames up to 1.933 s; 200 ms windows every 100 ms.
    assert payload["windows"] == 18 and payload["events"] > 0
    assert set(payload["presence_f1"]) == {"AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU12", "AU15", "AU17", "AU20",
                                           "AU25", "AU45"}
    values = [v for v in payload["presence_f1"].values() if v is not None]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert payload["reference_positive_windows"]["AU1"] == 18  # OpenFace marks AU1 in every frame of this span
    assert main(["eval", "au", "--video", str(video), "--crop", "1,2,3"]) == 2
    assert "microexp eval au: error: --crop needs x,y,w,h" in capsys.readouterr().err
