"""AU classification evaluation on the identity-disjoint test split: the paper-shaped table (events vs RGB,
per lighting condition and per event resolution), confusion matrices, per-AU F1 of the multi-label view.

Each clip is classified on the window `select_window(clip)` (no jitter; neutral clips use their centre) by
`AUPredictor`, the same code the ROS node runs, so offline and online outputs agree for the same window;
optionally (`windows`) on the mean over it and the next windows the node sees, one RGB frame apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microexp_ros.data.dataset import sensor_size
from microexp_ros.eval.classification_metrics import (
    accuracy,
    chance_levels,
    confusion_matrix,
    macro_f1,
    multilabel_f1,
)
from microexp_ros.facs import MODEL_AUS, SINGLE_LABEL_CLASSES
from microexp_ros.models.au_inference import (AUPredictor, AUResult, WindowAverage, au_targets, fuse_probabilities,
                                              select_window)

DIM_LIGHTING = ("dim", "very_dim")
LIGHTING_ORDER = ("bright", "normal", "shadow", "flicker", "dim", "very_dim")
AU_THRESHOLD = 0.5
SAMPLE_STEP_NS = 33_333_333  # time_sync's samples follow the 30 fps RGB frames: the node's window spacing


@dataclass(frozen=True)
class Row:
    """One evaluated configuration: a model and the input it is fed (event resolution, or the webcam)."""

    name: str
    predictor: AUPredictor
    resolution: str  # "high" / "low" for events, "rgb" for frames


@dataclass
class Prediction:
    """One clip under one row: true and predicted class indices, multi-label truth, AU and class probabilities."""

    row: str
    clip_id: str
    lighting: str
    true: int
    pred: int
    multi_true: np.ndarray
    probabilities: np.ndarray
    class_probabilities: np.ndarray


def predict_clips(root: Path, manifest: Mapping, entries: Iterable[Mapping], rows: list[Row], windows: int = 1,
                  step_ns: int = SAMPLE_STEP_NS) -> list[Prediction]:
    """Run every row on every clip (each clip loaded once). With `windows` > 1 a clip's class and AU
    probabilities are the mean (`WindowAverage`, as the node applies with `average_windows`) over the protocol
    window and the `windows` - 1 windows ending `step_ns` apart after it (kept inside the clip): what the node
    publishes once the later windows have arrived. Targets are those of the protocol window."""
    from tqdm import tqdm

    from microexp_ros.data.dataset import load_clip

    if windows < 1 or step_ns <= 0:
        raise ValueError(f"need windows >= 1 and a positive window step, got {windows} and {step_ns} ns")
    out: list[Prediction] = []
    entries = list(entries)
    for entry in tqdm(entries, desc="evaluate", unit="clip", leave=False):
        clip = load_clip(root, entry)
        for row in rows:
            length = row.predictor.window_ns
            t0, t1 = select_window(entry, length)
            multi, label = au_targets(entry, t0, t1)
            au_mean, class_mean = WindowAverage(windows), WindowAverage(windows)
            for k in range(windows):
                start = min(t0 + k * step_ns, int(entry["duration_ns"]) - length)
                result = _predict_window(clip, manifest, row, start, start + length)
                probabilities, class_probabilities = (au_mean.update(result.probabilities),
                                                      class_mean.update(result.class_probabilities))
            pred = int(np.argmax(class_probabilities))
            out.append(Prediction(row.name, entry["id"], entry["lighting"], label, pred, multi, probabilities,
                                  class_probabilities))
    return out


def fused_predictions(preds: list[Prediction], members: tuple[str, ...], name: str) -> list[Prediction]:
    """The predictions of row `name`: the late fusion (`fuse_probabilities`, what au_classifier does with
    `fuse_rgb`) of the `members` rows' predictions of each clip. Every member must have predicted the clip."""
    by_row = {row: {p.clip_id: p for p in preds if p.row == row} for row in members}
    out = []
    for clip_id, first in by_row[members[0]].items():
        parts = [by_row[row].get(clip_id) for row in members]
        if any(part is None for part in parts):
            raise ValueError(f"clip {clip_id} has no prediction of row(s) "
                             f"{[row for row, part in zip(members, parts) if part is None]}")
        class_probabilities, probabilities = fuse_probabilities([p.class_probabilities for p in parts],
                                                                [p.probabilities for p in parts])
        out.append(Prediction(name, clip_id, first.lighting, first.true, int(np.argmax(class_probabilities)),
                              first.multi_true, probabilities, class_probabilities))
    return out


def _predict_window(clip, manifest: Mapping, row: Row, t0: int, t1: int) -> AUResult:
    """One row's prediction on the window [t0, t1) of a loaded clip (its whole sensor or webcam frame)."""
    if row.resolution == "rgb":
        h, w = clip.rgb.shape[1:3]
        return row.predictor.predict_frames(clip.rgb, clip.rgb_t, t0, t1, (0, 0, w, h))
    size = sensor_size(manifest, row.resolution)
    return row.predictor.predict(clip.events[row.resolution], t0, t1, (0, 0, *size), size)


def cell(preds: list[Prediction]) -> dict[str, Any]:
    """Accuracy, macro-F1, clip count and chance levels of a set of predictions."""
    t = [p.true for p in preds]
    y = [p.pred for p in preds]
    k = len(SINGLE_LABEL_CLASSES)
    return {"n": len(preds), "accuracy": accuracy(t, y), "macro_f1": macro_f1(t, y, k), "chance": chance_levels(t, k)}


def summarise(preds: list[Prediction], row_names: list[str]) -> dict[str, Any]:
    """Per row: overall cell, cells per lighting, confusion matrix, per-AU F1 (threshold 0.5)."""
    result: dict[str, Any] = {}
    for name in row_names:
        mine = [p for p in preds if p.row == name]
        lightings = [c for c in LIGHTING_ORDER if any(p.lighting == c for p in mine)]
        lightings += sorted({p.lighting for p in mine} - set(lightings))
        per_au = multilabel_f1(np.stack([p.multi_true for p in mine]),
                               np.stack([p.probabilities >= AU_THRESHOLD for p in mine]))
        result[name] = {
            "all": cell(mine),
            "dim": cell([p for p in mine if p.lighting in DIM_LIGHTING]),
            "lighting": {c: cell([p for p in mine if p.lighting == c]) for c in lightings},
            "confusion": confusion_matrix([p.true for p in mine], [p.pred for p in mine], len(SINGLE_LABEL_CLASSES)),
            "per_au_f1": {f"AU{au}": float(f) for au, f in zip(MODEL_AUS, per_au)},
            "mean_au_f1": float(np.nanmean(per_au)) if np.any(~np.isnan(per_au)) else float("nan"),
        }
    return result


def plot_confusions(summary: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """One confusion-matrix PNG per row (rows = true class, columns = predicted); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["neutral"] + [f"AU{a}" for a in MODEL_AUS]
    paths = []
    for row, data in summary.items():
        cm = np.asarray(data["confusion"])
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        ax.imshow(cm, cmap="Blues")
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true",
               title=f"{row}: acc {data['all']['accuracy']:.1%}, n={data['all']['n']}")
        fig.tight_layout()
        path = out_dir / f"confusion_{row.replace(' ', '_').replace('/', '-')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def format_results(summary: Mapping[str, Any]) -> str:
    """The paper-shaped text table: rows = model/input, columns = all, dim (dim+very_dim), each lighting."""
    from microexp_ros.cli.output import format_table

    lightings: list[str] = []
    for data in summary.values():
        lightings += [c for c in data["lighting"] if c not in lightings]
    headers = ["model / input", "all", "dim+very_dim"] + lightings
    rows = []
    for name, data in summary.items():
        cells = [data["all"], data["dim"]] + [data["lighting"].get(c, {"n": 0}) for c in lightings]
        rows.append([name] + [_fmt_cell(c) for c in cells])
    first = next(iter(summary.values()))
    chance = ["chance (uniform / majority)"] + [
        f"{c['chance']['uniform']:.1%} / {c['chance']['majority']:.1%}" if c["n"] else "-"
        for c in [first["all"], first["dim"]] + [first["lighting"].get(c, {"n": 0}) for c in lightings]
    ]
    rows.append(chance)
    table = format_table(headers, rows)
    au_rows = [[name] + [_fmt_f1(data["per_au_f1"][f"AU{a}"]) for a in MODEL_AUS] + [_fmt_f1(data["mean_au_f1"])]
               for name, data in summary.items()]
    au_table = format_table(["per-AU F1 (p >= 0.5)"] + [f"AU{a}" for a in MODEL_AUS] + ["mean"], au_rows)
    return f"cells: accuracy / macro-F1 (clips)\n{table}\n\n{au_table}"


def _fmt_cell(c: Mapping[str, Any]) -> str:
    if not c.get("n"):
        return "-"
    return f"{c['accuracy']:.1%} / {c['macro_f1']:.2f} ({c['n']})"


def _fmt_f1(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.2f}"


def evaluate_video(predictor: AUPredictor, video: Path, openface_csv: Path | None = None, *,
                   crop: tuple[int, int, int, int] | None = None, seconds: float | None = None,
                   size: int = 128) -> dict[str, Any]:
    """Run the events model on a real video converted to events (`sim.video.video_to_events`, a size x size
    sensor on the crop box), on windows of the model's length every half window. With an OpenFace CSV, score
    per-AU presence (AU present in a window if OpenFace marks it in a tracked frame inside it) by F1."""
    from microexp_ros.sim.video import read_openface_csv, video_to_events

    converted = video_to_events(video, size, size, crop=crop, seconds=seconds)
    step = predictor.window_ns // 2
    end = int(converted.frame_t[-1])
    starts = np.arange(0, end - predictor.window_ns + 1, step, dtype=np.int64)
    if starts.size == 0:
        raise ValueError(f"{video} spans {end / 1e6:.0f} ms, shorter than the {predictor.window_ns / 1e6:.0f} ms window")
    probs = np.stack([predictor.predict(converted.events, int(t0), int(t0) + predictor.window_ns, (0, 0, size, size),
                                        (size, size)).probabilities for t0 in starts])
    result: dict[str, Any] = {"video": str(video), "windows": int(starts.size), "crop": list(converted.crop),
                              "events": int(len(converted.events)), "sensor": [size, size],
                              "window_ms": predictor.window_ns / 1e6,
                              "mean_probability": {f"AU{a}": float(p) for a, p in zip(MODEL_AUS, probs.mean(0))}}
    if openface_csv is None:
        return result
    labels = read_openface_csv(openface_csv).for_frames(0, converted.frame_t)
    scored = [a for a in MODEL_AUS if a in labels.presence_aus]
    truth = np.zeros((starts.size, len(scored)), bool)
    for i, t0 in enumerate(starts):
        inside = (labels.t >= t0) & (labels.t < t0 + predictor.window_ns) & labels.success
        truth[i] = labels.presence[inside][:, [labels.presence_aus.index(a) for a in scored]].any(0)
    pred = probs[:, [MODEL_AUS.index(a) for a in scored]] >= AU_THRESHOLD
    f1 = multilabel_f1(truth, pred)
    result["presence_f1"] = {f"AU{a}": float(v) for a, v in zip(scored, f1)}
    result["mean_presence_f1"] = float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else float("nan")
    result["reference_positive_windows"] = {f"AU{a}": int(n) for a, n in zip(scored, truth.sum(0))}
    return result
