"""`microexp train au`, `microexp eval au`, `microexp bench au`: the spiking Action Unit classifier."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table

SHIPPED = {"events SNN": "snn_events_default", "RGB SNN": "snn_rgb_default", "RGB CNN": "cnn_rgb_default"}


def register(group) -> None:
    train = group("train", "model training").add_parser(
        "au", help="train the AU classifier (SNN on events or RGB frames, or the reference CNN)")
    train.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.json)")
    train.add_argument("--out", type=Path, required=True, help="weights file (.safetensors); sidecar and curve PNG beside it")
    train.add_argument("--modality", choices=("events", "rgb"), default="events")
    train.add_argument("--arch", choices=("snn", "cnn"), default="snn")
    train.add_argument("--resolution", choices=("high", "low", "both"), default="both",
                       help="event sensor(s) the training windows come from (events only)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--bins", type=int, default=8, help="time bins T per window")
    train.add_argument("--size", type=int, default=64, help="input crop size (pixels, square)")
    train.add_argument("--window-ms", type=float, default=200.0)
    train.add_argument("--patience", type=int, default=6, help="early stopping: epochs without val improvement")
    train.add_argument("--copies", type=int, default=3, help="jittered windows per training clip")
    train.add_argument("--max-minutes", type=float, default=20.0, help="stop training after this wall time")
    train.add_argument("--threads", type=int, default=2)
    add_json_flag(train)
    train.set_defaults(func=run_train)

    ev = group("eval", "evaluation").add_parser(
        "au", help="AU accuracy / macro-F1: events vs RGB, per lighting and event resolution (test split)")
    ev.add_argument("--data", type=Path, help="dataset directory (default: the training data recorded in the events "
                    "model's sidecar; if absent, the error names the `microexp data generate` command that makes it)")
    ev.add_argument("--split", default="test")
    for label, stem in SHIPPED.items():
        flag = "--" + stem.replace("_default", "").replace("_", "-")
        ev.add_argument(flag, type=Path, dest=stem, help=f"{label} weights (default: shipped {stem})")
    ev.add_argument("--out-dir", type=Path, default=Path("runs/eval_au"), help="confusion-matrix PNGs")
    ev.add_argument("--video", type=Path, help="score a real video converted to events instead of a dataset")
    ev.add_argument("--openface-csv", type=Path, help="OpenFace 2.x CSV of --video: per-AU presence F1")
    ev.add_argument("--crop", help="x,y,w,h face box of --video (default: centred square)")
    ev.add_argument("--seconds", type=float, help="convert only the first seconds of --video")
    ev.add_argument("--threads", type=int, default=2)
    add_json_flag(ev)
    ev.set_defaults(func=run_eval)

    bench = group("bench", "benchmarks").add_parser("au", help="AU inference latency per window on CPU")
    bench.add_argument("--model", type=Path, help="events weights (default: shipped)")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--repeats", type=int, default=200)
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


def _command(args: argparse.Namespace, words: str) -> str:
    """The full command line equivalent to `args`, every option spelled out (defaults included)."""
    parts = ["microexp", *words.split()]
    for key, value in vars(args).items():
        if key in ("func", "group", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


def run_train(args: argparse.Namespace) -> int:
    from microexp_ros.train.au import TrainOptions, train

    opts = TrainOptions(
        data=str(args.data), out=str(args.out), modality=args.modality, arch=args.arch, resolution=args.resolution,
        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, bins=args.bins, size=args.size,
        window_ns=int(round(args.window_ms * 1e6)), patience=args.patience, copies=args.copies,
        max_minutes=args.max_minutes, threads=args.threads, command=_command(args, "train au"),
    )
    summary = train(opts)
    best = summary["metrics"]["best"]
    payload = {"weights": summary["weights"], "curve_png": summary["curve_png"], "best_epoch": best["epoch"],
               "val_accuracy": best["val_accuracy"], "train_accuracy": best["train_accuracy"],
               "train_s": summary["timing_s"]["train"], "encode_s": summary["timing_s"]["encode"],
               "stopped": summary["metrics"]["stopped"], "parameters": summary["parameters"]}
    text = (f"trained {args.arch} on {args.modality}: best epoch {best['epoch']}, val accuracy "
            f"{best['val_accuracy']:.1%} (train {best['train_accuracy']:.1%})\n"
            f"time: encode {payload['encode_s']} s, train {payload['train_s']} s ({summary['metrics']['stopped']})\n"
            f"wrote {summary['weights']} (+ .json sidecar) and {summary['curve_png']}")
    emit(args, payload, text)
    return 0


def _rows(args: argparse.Namespace):
    from microexp_ros.eval.au import Row
    from microexp_ros.models.au_inference import AUPredictor
    from microexp_ros.resources import share_path

    rows = []
    for label, stem in SHIPPED.items():
        path = getattr(args, stem) or share_path("models", f"{stem}.safetensors")
        predictor = AUPredictor.from_file(path)
        if predictor.modality == "events":
            rows += [Row(f"{label} high", predictor, "high"), Row(f"{label} low", predictor, "low")]
        else:
            rows.append(Row(label, predictor, "rgb"))
    return rows


def _training_data(predictor) -> Path:
    """The dataset an AU model was trained on, from its sidecar; FileNotFoundError with the command to make it."""
    data = predictor.meta.get("data", {})
    path = Path(data.get("path", ""))
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(
            f"the training data of {predictor.name} is not at '{path}'; recreate it with: "
            f"{data.get('command') or 'microexp data generate'} (writes {path}), or pass --data")
    return path


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from microexp_ros.data.dataset import load_manifest
    from microexp_ros.eval.au import format_results, plot_confusions, predict_clips, summarise

    torch.set_num_threads(args.threads)
    if args.video is not None:
        return _run_eval_video(args)
    rows = _rows(args)
    if args.data is None:
        args.data = _training_data(rows[0].predictor)
    manifest = load_manifest(args.data)
    entries = [c for c in manifest["clips"] if c["split"] == args.split]
    if not entries:
        print(f"error: dataset {args.data} has no '{args.split}' clips", file=sys.stderr)
        return 2
    preds = predict_clips(args.data, manifest, entries, rows)
    summary = summarise(preds, [r.name for r in rows])
    pngs = plot_confusions(summary, args.out_dir)
    events, rgb = summary["events SNN high"], summary["RGB SNN"]
    payload = {
        "events_accuracy": events["all"]["accuracy"], "events_macro_f1": events["all"]["macro_f1"],
        "events_low_accuracy": summary["events SNN low"]["all"]["accuracy"],
        "events_low_macro_f1": summary["events SNN low"]["all"]["macro_f1"],
        "rgb_accuracy": rgb["all"]["accuracy"], "rgb_macro_f1": rgb["all"]["macro_f1"],
        "cnn_rgb_accuracy": summary["RGB CNN"]["all"]["accuracy"],
        "cnn_rgb_macro_f1": summary["RGB CNN"]["all"]["macro_f1"],
        "dim_gap_points": 100.0 * (events["dim"]["accuracy"] - rgb["dim"]["accuracy"]),
        "split": args.split, "clips": len(entries), "data": str(args.data),
        "rows": {name: {k: v for k, v in data.items() if k != "confusion"} for name, data in summary.items()},
        "confusion_png": [str(p) for p in pngs],
    }
    text = (f"AU classification, single-label over {len(summary['RGB SNN']['confusion'])} classes (neutral + 12 AUs), "
            f"split '{args.split}' of {args.data}\n{format_results(summary)}\n\n"
            f"dim-light gap (events high - RGB SNN accuracy, dim+very_dim): {payload['dim_gap_points']:+.1f} points\n"
            f"confusion matrices: {args.out_dir}")
    emit(args, payload, text)
    return 0


def _run_eval_video(args: argparse.Namespace) -> int:
    from microexp_ros.eval.au import evaluate_video
    from microexp_ros.models.au_inference import AUPredictor

    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    if crop is not None and len(crop) != 4:
        raise ValueError(f"--crop needs x,y,w,h, got {args.crop!r}")
    predictor = AUPredictor.from_file(args.snn_events_default)
    result = evaluate_video(predictor, args.video, args.openface_csv, crop=crop, seconds=args.seconds)
    lines = [f"{result['video']}: {result['windows']} windows of {result['window_ms']:.0f} ms, "
             f"{result['events']} events on a {result['sensor'][0]}x{result['sensor'][1]} sensor, crop {result['crop']}"]
    if "presence_f1" in result:
        rows = [[au, f1, result["reference_positive_windows"][au]] for au, f1 in result["presence_f1"].items()]
        lines += [format_table(["AU", "presence F1", "OpenFace windows"], rows),
                  f"mean presence F1: {result['mean_presence_f1']:.3f}"]
    else:
        lines.append(format_table(["AU", "mean probability"], [[k, v] for k, v in result["mean_probability"].items()]))
    emit(args, result, "\n".join(lines))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from microexp_ros.bench.au import run

    result = run(args.model, repeats=args.repeats, threads=args.threads)
    table = format_table(["case", "p50 ms", "p99 ms", "per s", "x baseline"],
                         [[r["case"], r["p50_ms"], r["p99_ms"], r["per_s"], r["ratio_to_baseline"]]
                          for r in result["rows"]])
    text = (f"AU inference, batch 1, {result['threads']} threads, {result['repeats']} repeats, torch {result['torch']}\n"
            f"input {result['input']}; model {result['model']} ({result['parameters']} params), "
            f"baseline CNN {result['baseline_parameters']} params\n{table}")
    emit(args, result, text)
    return 0
