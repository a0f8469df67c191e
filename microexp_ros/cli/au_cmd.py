"""`microexp train au`, `microexp eval au`, `microexp bench au`: the spiking Action Unit classifier."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table
from microexp_ros.data.dataset import RESOLUTIONS

# The rows `eval au` scores: (row, shipped weights stem, input). Each event resolution has its own default model
# (trained on that sensor alone); a row whose model was trained on the other sensor's windows alone is left out
# (the shipped ensemble's members are high-resolution models, so it has no low row).
SHIPPED_ROWS = (("events SNN high", "snn_events_default", "high"),
                ("events SNN low", "snn_events_low_default", "low"),
                ("events SNN ensemble high", "snn_events_ensemble", "high"),
                ("events SNN ensemble low", "snn_events_ensemble", "low"),
                ("RGB SNN", "snn_rgb_default", "rgb"), ("RGB CNN", "cnn_rgb_default", "rgb"))
SHIPPED = {stem: [row for row, s, _ in SHIPPED_ROWS if s == stem] for _, stem, _ in SHIPPED_ROWS}
# The end-to-end latency's stages, split at DDS source timestamps (Collector.stages_after_run).
STAGES = {"sync": "closing packet -> time_sync publishes the sample",
          "classify": "-> au_classifier publishes (hop, decode, model)",
          "deliver": "-> received here"}


def register(group) -> None:
    train = group("train", "model training").add_parser(
        "au", help="train the AU classifier (SNN on events or RGB frames, or the reference CNN)")
    train.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.json)")
    train.add_argument("--out", type=Path, required=True, help="weights file (.safetensors); sidecar and curve PNG beside it")
    train.add_argument("--modality", choices=("events", "rgb"), default="events")
    train.add_argument("--arch", choices=("snn", "cnn"), default="snn")
    train.add_argument("--resolution", choices=(*RESOLUTIONS, "both"), default="both",
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
    train.add_argument("--jitter-ms", type=float, default=40.0,
                       help="each training window is shifted uniformly by up to this much from the protocol window")
    train.add_argument("--shift-px", type=int, default=0,
                       help="random translation of each training input by up to this many pixels (0 = none)")
    train.add_argument("--scale-jitter", type=float, default=0.0,
                       help="random stretch of each training input's width and height by factors in [1 - S, 1 + S] "
                            "(faces differ in shape; 0 = none, at most 0.3)")
    train.add_argument("--reverse-prob", type=float, default=0.0,
                       help="share of training windows played backwards (bins reversed, polarities swapped; events "
                            "only)")
    train.add_argument("--dark-prob", type=float, default=0.0,
                       help="share of training windows made to look darker: a random share of their events kept "
                            "and shot noise added (events, one sensor, 'polarity' or 'polarity_net' encoding)")
    train.add_argument("--flicker-prob", type=float, default=0.0,
                       help="share of training windows lit by mains flicker: they gain the flicker counts of a random "
                            "flicker-lit training window, mostly another person's (events, one sensor, 'polarity' "
                            "or 'polarity_net' encoding)")
    train.add_argument("--readout", choices=("spikes", "membrane"), default="spikes",
                       help="what the SNN's heads read: the hidden layer's spike rate, or the mean membrane of "
                            "non-spiking leaky integrators (snn only)")
    train.add_argument("--input-norm", choices=("none", "center"), default="none",
                       help="center: shift each window's input channels to zero mean over time and space before "
                            "the first layer (removes the uniform floor of noise or flicker; snn only)")
    train.add_argument("--channels", type=_widths, default=(16, 32, 64),
                       help="the snn's conv block widths, comma-separated (one stride-2 block each)")
    train.add_argument("--hidden", type=int, default=128, help="the snn's spiking hidden layer width")
    train.add_argument("--encoding", choices=("polarity", "polarity_net", "polarity_baf"), default="polarity",
                       help="events input: log counts per polarity; polarity_net adds the signed net count ON - OFF "
                            "(cancels mains flicker and symmetric noise); polarity_baf adds the counts of the "
                            "events a background-activity filter keeps (events with a neighbour firing within "
                            "3 ms: shot noise in the dark rarely has one; events only)")
    train.add_argument("--teacher", type=Path,
                       help="trained events model (e.g. an ensemble) reading the same input, distilled into this "
                            "one: its class distribution and per-AU probabilities join the targets")
    train.add_argument("--ema", type=float, default=0.0,
                       help="validate and save an exponential moving average of the weights with this decay per "
                            "step (e.g. 0.999; 0 = the weights themselves)")
    train.add_argument("--max-minutes", type=float, default=20.0, help="stop training after this wall time")
    train.add_argument("--threads", type=int, default=2)
    add_json_flag(train)
    train.set_defaults(func=run_train)

    ensemble = group("train", "model training").add_parser(
        "au-ensemble", help="combine trained events AU models into one whose logits are the mean of theirs",
        description="Members must share window, bins and size; each reads the leading channels of the widest "
                    "member encoding (every encoding starts with the 'polarity' channels). The sidecar records "
                    "each member's file, sha256, training command and seed.")
    ensemble.add_argument("members", type=Path, nargs="+", help="member weights files (.safetensors)")
    ensemble.add_argument("--out", type=Path, required=True, help="ensemble weights file (.safetensors)")
    add_json_flag(ensemble)
    ensemble.set_defaults(func=run_ensemble)

    ev = group("eval", "evaluation").add_parser(
        "au", help="AU accuracy / macro-F1: events vs RGB, per lighting and event resolution (test split)")
    ev.add_argument("--data", type=Path, help="dataset directory (default: the training data recorded in the events "
                    "model's sidecar; if absent, the error names the `microexp data generate` command that makes it)")
    ev.add_argument("--split", default="test")
    for stem, rows in SHIPPED.items():
        flag = "--" + stem.replace("_default", "").replace("_", "-")
        ev.add_argument(flag, type=Path, dest=stem, help=f"weights of the {' / '.join(rows)} row(s) (default: "
                                                        f"shipped {stem})")
    ev.add_argument("--windows", type=int, default=1,
                    help="score each clip on the mean probabilities of its protocol window and the next windows, "
                         "--window-step-ms apart (what au_classifier publishes with average_windows = this)")
    ev.add_argument("--window-step-ms", type=float, default=1000.0 / 30.0,
                    help="spacing of --windows (default: one 30 fps RGB frame, the spacing of time_sync's samples)")
    ev.add_argument("--flip-average", action="store_true",
                    help="every model also classifies each window mirrored left-right and the two views are fused "
                         "(au_classifier's flip_average)")
    ev.add_argument("--out-dir", type=Path, default=Path("runs/eval_au"), help="confusion-matrix PNGs")
    ev.add_argument("--video", type=Path, help="score a real video converted to events instead of a dataset")
    ev.add_argument("--openface-csv", type=Path, help="OpenFace 2.x CSV of --video: per-AU presence F1")
    ev.add_argument("--crop", help="x,y,w,h face box of --video (default: centred square)")
    ev.add_argument("--seconds", type=float, help="convert only the first seconds of --video")
    ev.add_argument("--threads", type=int, default=2)
    add_json_flag(ev)
    ev.set_defaults(func=run_eval)

    bench = group("bench", "benchmarks").add_parser(
        "au", help="AU latency per window: in-process inference, and end to end through real node processes",
        description="In process: encode + SNN forward on one real simulated window (--threads, --repeats). End "
                    "to end: the embedded bag (or --bag) replayed in real time --runs times through node "
                    "processes on a private ROS domain; each window's latency runs from the publication of "
                    "the first event packet past the window end (its DDS source timestamp) to the reception of "
                    "its /au_predictions message in this process (DDS reception timestamp): `microexp demo`'s "
                    "definition, timed by the middleware instead of Python callbacks.")
    bench.add_argument("--model", type=Path, help="events weights (default: shipped); the node uses them too")
    bench.add_argument("--threads", type=int, default=2, help="torch threads of the in-process measurement")
    bench.add_argument("--repeats", type=int, default=200, help="in-process calls per case")
    bench.add_argument("--runs", type=int, default=2, help="replays of the bag for the end-to-end figures")
    bench.add_argument("--graph", choices=("au", "hri"), default="au",
                       help="au: bag_player -> time_sync -> au_classifier, the path a robot behaviour waits on "
                            "(default); hri: the whole graph `microexp demo` runs")
    bench.add_argument("--node-threads", type=int,
                       help="torch threads of the au_classifier node (default: config/models.yaml)")
    bench.add_argument("--bag", default="", help="bag to replay (default: the embedded one)")
    bench.add_argument("--flip-average", action="store_true",
                       help="each window also runs mirrored (au_classifier's flip_average), in process and in the node")
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


def _widths(text: str) -> tuple[int, ...]:
    """A comma-separated list of layer widths, e.g. "16,32,64"."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 16,32,64, got {text!r}") from None


def _command(args: argparse.Namespace, words: str) -> str:
    """The full command line equivalent to `args`, every option spelled out (defaults included)."""
    parts = ["microexp", *words.split()]
    for key, value in vars(args).items():
        if key in ("func", "group", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts += [flag] if value is True else [flag, shlex.quote(text)]
    return " ".join(parts)


def run_train(args: argparse.Namespace) -> int:
    from microexp_ros.train.au import TrainOptions, train

    opts = TrainOptions(
        data=str(args.data), out=str(args.out), modality=args.modality, arch=args.arch, resolution=args.resolution,
        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, bins=args.bins, size=args.size,
        window_ns=int(round(args.window_ms * 1e6)), jitter_ns=int(round(args.jitter_ms * 1e6)),
        patience=args.patience, copies=args.copies, shift_px=args.shift_px, reverse_prob=args.reverse_prob,
        dark_prob=args.dark_prob, flicker_prob=args.flicker_prob, scale_jitter=args.scale_jitter,
        readout=args.readout, input_norm=args.input_norm, channels=args.channels, hidden=args.hidden,
        encoding=args.encoding,
        teacher=str(args.teacher) if args.teacher else "", ema=args.ema,
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

    predictors = {stem: AUPredictor.from_file(getattr(args, stem) or share_path("models", f"{stem}.safetensors"),
                                              flip_average=args.flip_average)
                  for stem in SHIPPED}
    return [Row(name, predictors[stem], source) for name, stem, source in SHIPPED_ROWS
            if not (source in RESOLUTIONS and predictors[stem].meta["config"].get("resolution") in RESOLUTIONS
                    and predictors[stem].meta["config"]["resolution"] != source)]


def _training_data(predictor) -> Path:
    """The dataset an AU model was trained on, from its sidecar; FileNotFoundError with the command to make it."""
    data = predictor.meta.get("data", {})
    path = Path(data.get("path", ""))
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(
            f"the training data of {predictor.name} is not at '{path}'; recreate it with: "
            f"{data.get('command') or 'microexp data generate'} (writes {path}), or pass --data")
    return path


def run_ensemble(args: argparse.Namespace) -> int:
    from microexp_ros.train.au import combine_ensemble

    command = " ".join(["microexp train au-ensemble", *map(shlex.quote, map(str, args.members)), "--out",
                        shlex.quote(str(args.out))])
    meta = combine_ensemble(args.members, args.out, command)
    payload = {"weights": str(args.out), "curve_png": meta["curve_png"],
               "members": [m["file"] for m in meta["members"]], "parameters": meta["parameters"]}
    text = f"wrote {args.out} (+ .json sidecar): {len(meta['members'])} members, {meta['parameters']} parameters"
    emit(args, payload, text)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from microexp_ros.data.dataset import load_manifest
    from microexp_ros.eval.au import format_results, fused_predictions, plot_confusions, predict_clips, summarise

    torch.set_num_threads(args.threads)
    if args.video is not None:
        return _run_eval_video(args)
    rows = _rows(args)
    if args.data is None:
        args.data = _training_data(rows[0].predictor)
    manifest = load_manifest(args.data)
    entries = [c for c in manifest["clips"] if c["split"] == args.split]
    if not entries:
        raise ValueError(f"dataset {args.data} has no '{args.split}' clips")
    preds = predict_clips(args.data, manifest, entries, rows, args.windows, int(round(args.window_step_ms * 1e6)))
    names = [r.name for r in rows]
    # A robot with both cameras: each events row fused with the webcam CNN (au_classifier's fuse_rgb), where
    # both read the same window (the node refuses other pairs).
    cnn = next(r for r in rows if r.name == "RGB CNN")
    for row in [r for r in rows if r.resolution != "rgb" and r.predictor.window_ns == cnn.predictor.window_ns]:
        label, resolution = row.name.rsplit(" ", 1)
        fused = f"{label} + RGB CNN {resolution}"
        preds += fused_predictions(preds, (row.name, cnn.name), fused)
        names.append(fused)
    summary = summarise(preds, names)
    fusion, ensemble_fusion = (summary.get(f"{label} + RGB CNN high", {}).get("all", {})
                               for label in ("events SNN", "events SNN ensemble"))
    pngs = plot_confusions(summary, args.out_dir)
    events, rgb = summary.get("events SNN high"), summary["RGB SNN"]

    def scored(row: str, key: str) -> float | None:
        """A row's overall figure; None where the row was not scored (a model trained for the other sensor)."""
        return summary[row]["all"][key] if row in summary else None

    payload = {
        "events_accuracy": scored("events SNN high", "accuracy"),
        "events_macro_f1": scored("events SNN high", "macro_f1"),
        "events_low_accuracy": scored("events SNN low", "accuracy"),
        "events_low_macro_f1": scored("events SNN low", "macro_f1"),
        "ensemble_accuracy": scored("events SNN ensemble high", "accuracy"),
        "ensemble_macro_f1": scored("events SNN ensemble high", "macro_f1"),
        "ensemble_low_accuracy": scored("events SNN ensemble low", "accuracy"),
        # None where the events model's window differs from the CNN's (no fused row then)
        "fusion_accuracy": fusion.get("accuracy"), "fusion_macro_f1": fusion.get("macro_f1"),
        "ensemble_fusion_accuracy": ensemble_fusion.get("accuracy"),
        "ensemble_fusion_macro_f1": ensemble_fusion.get("macro_f1"),
        "rgb_accuracy": rgb["all"]["accuracy"], "rgb_macro_f1": rgb["all"]["macro_f1"],
        "cnn_rgb_accuracy": summary["RGB CNN"]["all"]["accuracy"],
        "cnn_rgb_macro_f1": summary["RGB CNN"]["all"]["macro_f1"],
        "dim_gap_points": 100.0 * (events["dim"]["accuracy"] - rgb["dim"]["accuracy"]) if events else None,
        "split": args.split, "clips": len(entries), "data": str(args.data),
        "windows": args.windows, "window_step_ms": args.window_step_ms, "flip_average": args.flip_average,
        "rows": {name: {k: v for k, v in data.items() if k != "confusion"} for name, data in summary.items()},
        "confusion_png": [str(p) for p in pngs],
    }
    text = (f"AU classification, single-label over {len(summary['RGB SNN']['confusion'])} classes (neutral + 12 AUs), "
            f"split '{args.split}' of {args.data}"
            + (f"; probabilities averaged over {args.windows} windows {args.window_step_ms:g} ms apart"
               if args.windows > 1 else "") + ("; each window fused with its mirror image" if args.flip_average else "")
            + f"\n{format_results(summary)}\n\n"
            + (f"dim-light gap (events high - RGB SNN accuracy, dim+very_dim): {payload['dim_gap_points']:+.1f} "
               "points\n" if events else "")
            + f"confusion matrices: {args.out_dir}")
    emit(args, payload, text)
    return 0


def _run_eval_video(args: argparse.Namespace) -> int:
    from microexp_ros.eval.au import evaluate_video
    from microexp_ros.models.au_inference import AUPredictor

    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    if crop is not None and len(crop) != 4:
        raise ValueError(f"--crop needs x,y,w,h, got {args.crop!r}")
    predictor = AUPredictor.from_file(args.snn_events_default, flip_average=args.flip_average)
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


def _replay_latencies(args: argparse.Namespace) -> dict:
    """Replay the bag `args.runs` times through the chosen graph; per-run e2e lists and what the nodes reported."""
    import os
    import time

    from microexp_ros.bringup.demo import AU_PATH, replay_graph
    from microexp_ros.ros.dds import private_domain_id

    # The nodes and this process on a domain of their own: a demo or test graph elsewhere must not answer.
    os.environ["ROS_DOMAIN_ID"] = str(private_domain_id())
    parameters: dict[str, dict] = {}
    if args.node_threads is not None:
        parameters.setdefault("au_classifier", {})["threads"] = args.node_threads
    if args.model is not None:
        parameters.setdefault("au_classifier", {})["model_path"] = str(args.model.resolve())
    if args.flip_average:
        parameters.setdefault("au_classifier", {})["flip_average"] = True
    runs, stages, forward, codes, walls, counts = [], [], [], [], [], []
    lost, missed, errors, drops, cpu = 0, 0, {}, {}, 0.0
    for _ in range(args.runs):
        cpu -= time.process_time()
        run = replay_graph(args.bag, "", "high", verbose=False, nodes=AU_PATH if args.graph == "au" else None,
                           parameters=parameters, dds_stamps=True)
        cpu += time.process_time()
        collector = run.collector
        with collector.lock:
            predictions = sorted(collector.predictions, key=lambda p: p.window_end_ns)
            published = collector.counts.get("/time_sync", {}).get("out:samples", 0)
            played = collector.counts.get("/bag_player", {}).get("out:/event_camera/events", 0)
            counts.append({**collector.counts, "/collector": {"in:au_predictions": len(predictions),
                                                              "in:packets": len(collector.packet_stamps)}})
            missed += max(played - len(collector.packet_stamps), 0)
            for totals, by_node in ((errors, collector.errors), (drops, collector.drops)):
                for node, reasons in by_node.items():
                    for reason, n in reasons.items():
                        totals[f"{node}/{reason}"] = totals.get(f"{node}/{reason}", 0) + n
        runs.append(collector.e2e_after_run())
        stages.append(collector.stages_after_run())
        forward += [p.latency_ms for p in predictions]
        lost += max(published - len(predictions), 0)
        codes.append(run.code)
        walls.append(run.wall_s)
    return {"runs": runs, "stages": stages, "node_forward_ms": forward, "windows_lost": lost,
            "packets_missed": missed, "errors": errors, "drops": drops, "codes": codes, "wall_s": walls,
            "cpu_share": cpu / sum(walls), "counts": counts}


def run_bench(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from microexp_ros.bench.au import e2e_summary, run, stage_summary

    counts = {"--runs": args.runs, "--repeats": args.repeats, "--threads": args.threads,
              "--node-threads": 1 if args.node_threads is None else args.node_threads}
    bad = [f"{flag} {value}" for flag, value in counts.items() if value < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be at least 1")
    load_before = os.getloadavg()
    result = run(args.model, repeats=args.repeats, threads=args.threads, flip_average=args.flip_average)
    replay = _replay_latencies(args)
    load_after = os.getloadavg()
    result.update(e2e_summary(replay["runs"]))
    result["e2e_stages"] = stage_summary(replay["stages"])
    forward = np.asarray(replay["node_forward_ms"], dtype=np.float64)
    forward = forward[np.isfinite(forward)]
    graph = ("bag_player -> time_sync -> au_classifier" if args.graph == "au"
             else "the whole hri graph (as microexp demo)")
    result.update({
        "e2e_graph": graph, "e2e_runs": args.runs,
        "node_threads": args.node_threads if args.node_threads is not None else "config/models.yaml",
        "node_forward_p50_ms": float(np.median(forward)) if forward.size else None,
        "node_forward_p99_ms": float(np.percentile(forward, 99)) if forward.size else None,
        "windows_lost": replay["windows_lost"], "errors": replay["errors"], "drops": replay["drops"],
        "collector_packets_missed": replay["packets_missed"],
        "collector_cpu_share": replay["cpu_share"], "counts_by_run": replay["counts"],
        "graph_exit_codes": replay["codes"],
        "replay_wall_s": replay["wall_s"], "load_average_before": list(load_before),
        "load_average_after": list(load_after),
    })
    rows = [[r["case"], r["p50_ms"], r["p99_ms"], r["per_s"], r["ratio_to_baseline"]] for r in result["rows"]]
    rows.append(["in the node: SNN forward (what /au_predictions reports)", result["node_forward_p50_ms"],
                 result["node_forward_p99_ms"], "-", "-"])
    rows += [[f"end to end, {label} ({result[key]['windows']} windows)", result[key]["p50_ms"],
              result[key]["p99_ms"], "-", "-"]
             for label, key in (("first 3 windows of each run", "e2e_cold"), ("later windows", "e2e_warm"))]
    rows.append([f"end to end, all windows ({result['e2e_windows']})", result["e2e_p50_ms"], result["e2e_p99_ms"],
                 "-", "-"])
    rows += [[f"  stage: {STAGES[stage]} ({s['windows']} windows)", s["p50_ms"], s["p99_ms"], "-", "-"]
             for stage, s in result["e2e_stages"].items()]
    table = format_table(["case", "p50 ms", "p99 ms", "per s", "x baseline"], rows)
    within = result["e2e_within_target"]
    text = (f"AU latency, torch {result['torch']}; model {result['model']} ({result['parameters']} params), "
            f"baseline CNN {result['baseline_parameters']} params\n"
            f"in process: batch 1, {result['threads']} threads, {result['repeats']} repeats, input {result['input']}\n"
            f"end to end: {args.runs} real-time replay(s) of {args.bag or 'the embedded bag'} through {graph} "
            f"(separate processes, au_classifier threads: {result['node_threads']}); from the publication of "
            f"the first event packet past the window end to the reception of its /au_predictions here (DDS "
            f"timestamps)\n{table}\n"
            f"within {result['e2e_target_ms']:g} ms: {'-' if within is None else f'{within:.1%}'} of windows; "
            f"max {result['e2e_max_ms']} ms; unmeasured (no later packet) {result['e2e_unmeasured_windows']}, "
            f"lost (published by time_sync, no prediction here) {result['windows_lost']}, node errors "
            f"{sum(result['errors'].values())}, drops {result['drops'] or 0}; event packets this process missed "
            f"{result['collector_packets_missed']} (a missed closing packet makes its window look faster); this "
            f"process took {result['collector_cpu_share']:.0%} of a core while measuring\n"
            f"load average (1/5/15 min) before {'/'.join(f'{v:.2f}' for v in load_before)}, "
            f"after {'/'.join(f'{v:.2f}' for v in load_after)}")
    emit(args, result, text)
    measured_every_run = None not in result["e2e_runs_p50_ms"]
    ok = all(code == 0 for code in replay["codes"]) and not replay["errors"] and measured_every_run
    return 0 if ok else 1
