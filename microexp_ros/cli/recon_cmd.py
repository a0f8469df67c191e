"""`microexp train recon`, `microexp eval recon`, `microexp bench recon`: frame reconstruction from events."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table

DAVIS_SAMPLE = Path("event_vision_library") / "sample.aedat4"


def register(group) -> None:
    train = group("train", "model training").add_parser(
        "recon", help="train the reconstruction CVAE (or its keyframe mode, or the FireNet baseline)")
    train.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories (manifest.json)")
    train.add_argument("--model", choices=("cvae", "firenet"), default="cvae")
    train.add_argument("--keyframe", action="store_true", help="condition the CVAE on the last RGB keyframe too")
    train.add_argument("--out", type=Path, help="weights file (.safetensors); default models/<model>_default")
    train.add_argument("--workdir", type=Path, help="checkpoints, curves.png, history.json (default runs/<name>)")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--crop", type=int, default=128, help="training crop size in pixels (default: full frames)")
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--beta", type=float, default=0.01, help="KL weight after warm-up")
    train.add_argument("--warmup", type=int, default=1000, help="KL warm-up steps")
    train.add_argument("--window-ms", type=float, default=33.333333, help="event window before each frame")
    train.add_argument("--width", type=int, default=16, help="network width (channels at 1/2 resolution)")
    train.add_argument("--video-share", type=float, default=0.0,
                       help="share of batches from real-video-derived clips, split among their resolutions "
                            "(default 0: every (source, resolution) pool alike)")
    train.add_argument("--eval-every", type=int, default=500)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--no-progress", action="store_true")
    add_json_flag(train)
    train.set_defaults(func=run_train)

    ev = group("eval", "evaluation").add_parser(
        "recon", help="reconstruction quality (SSIM, PSNR, MSE) against baselines, per resolution and lighting")
    ev.add_argument("--data", type=Path, nargs="*", help="dataset directories (default: the training data of the weights)")
    ev.add_argument("--weights", type=Path, help="events-only CVAE (default: shipped)")
    ev.add_argument("--keyframe-weights", type=Path, help="keyframe CVAE (default: shipped, if present)")
    ev.add_argument("--firenet-weights", type=Path, help="FireNet baseline (default: shipped, if present)")
    ev.add_argument("--max-frames", type=int, help="frames scored per clip (evenly spaced); default all")
    ev.add_argument("--out-dir", type=Path, default=Path("runs/eval_recon"), help="where montage PNGs go")
    ev.add_argument("--video", type=Path, help="score a video (converted to events by the simulator)")
    ev.add_argument("--events", type=Path, help="score a real recording: events file (AEDAT4)")
    ev.add_argument("--frames-from", type=Path, help="intensity frames of --events (AEDAT4 with a frame stream)")
    ev.add_argument("--no-real", action="store_true", help="skip the DAVIS346 sample in the dataset evaluation")
    ev.add_argument("--threads", type=int, default=2)
    add_json_flag(ev)
    ev.set_defaults(func=run_eval)

    bench = group("bench", "benchmarks").add_parser("recon", help="reconstruction frames per second on CPU")
    bench.add_argument("--weights", type=Path, help="CVAE weights (default: shipped)")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--repeats", type=int, default=50)
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


_NOT_RECORDED = {"func", "group", "command", "json", "no_progress"}


def _command(args: argparse.Namespace) -> str:
    """The training command as it would be typed, rebuilt from the parsed arguments (so it is exact whether
    the CLI was run from a shell or called as `main([...])`)."""
    words = ["microexp", args.group, args.command]
    for key, value in vars(args).items():
        if key in _NOT_RECORDED or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _data_record(roots: list[Path]) -> list[dict]:
    from microexp_ros.data.dataset import load_manifest

    out = []
    for root in roots:
        m = load_manifest(root)
        out.append({"root": str(root), "seed": m.get("seed"), "command": m.get("command"),
                    "created": m.get("created"), "clips": len(m.get("clips", []))})
    return out


def run_train(args: argparse.Namespace) -> int:
    import torch

    from microexp_ros.models.weights import count_parameters, save_model
    from microexp_ros.train.recon import TrainConfig, load_split, model_config_record, train, training_pools

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(model=args.model, keyframe=args.keyframe, steps=args.steps, batch=args.batch, crop=args.crop,
                      lr=args.lr, beta=args.beta, warmup=args.warmup, window_ns=int(round(args.window_ms * 1e6)),
                      width=args.width, eval_every=args.eval_every, seed=args.seed, video_share=args.video_share)
    name = "firenet_default" if cfg.model == "firenet" else ("cvae_keyframe_default" if cfg.keyframe else "cvae_default")
    out = args.out or Path("models") / f"{name}.safetensors"
    workdir = args.workdir or Path("runs") / name
    kw = {"window_ns": cfg.window_ns, "keyframe_age": cfg.keyframe_age}
    pools = training_pools(load_split(args.data, "train", **kw))
    val = load_split(args.data, "val", **kw)
    data = _data_record(args.data)

    def meta(model, history: dict | None, step: int) -> dict:
        m = {"command": _command(args), "seed": cfg.seed, "data": data, "train": cfg.__dict__, "step": step,
             "parameters": count_parameters(model)}
        if history:
            m["metrics"] = {"val_ssim": history["val_ssim"][-1] if history["val_ssim"] else None,
                            "val_psnr": history["val_psnr"][-1] if history["val_psnr"] else None,
                            "val_protocol": f"prior mean, {cfg.val_frames} evenly spaced frames per val clip"}
            m["train_seconds"] = history["train_seconds"]
        return m

    def checkpoint(model, step: int) -> None:
        save_model(workdir / "checkpoint.safetensors", model, model_config_record(cfg, model), meta(model, None, step))

    model, history = train(cfg, pools, val, workdir, progress=not args.no_progress, save_checkpoint=checkpoint)
    save_model(out, model, model_config_record(cfg, model), meta(model, history, cfg.steps))
    payload = {"weights": str(out), "curves": str(workdir / "curves.png"), "steps": cfg.steps,
               "train_seconds": history["train_seconds"], "val_ssim": history["val_ssim"][-1] if history["val_ssim"] else None,
               "val_psnr": history["val_psnr"][-1] if history["val_psnr"] else None,
               "train_frames": {f"{p[0].meta.get('source', '?')}/{p[0].res}": sum(len(c.frames) for c in p) for p in pools}}
    emit(args, payload, format_table(["key", "value"], [[k, v] for k, v in payload.items()]))
    return 0


def _load_optional(path: Path | None, default: Path, loader):
    """Load explicit weights (errors propagate) or the shipped default when it exists (else None)."""
    if path is not None:
        return loader(path)
    return loader(default) if default.is_file() else None


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from microexp_ros.eval import recon as ev
    from microexp_ros.models.firenet import build_firenet
    from microexp_ros.models.recon_inference import Reconstructor, default_weights
    from microexp_ros.models.weights import load_model
    from microexp_ros.resources import share_path

    torch.set_num_threads(args.threads)
    cvae = Reconstructor.from_file(args.weights)
    key = _load_optional(args.keyframe_weights, default_weights(keyframe=True), Reconstructor.from_file)
    fire = _load_optional(args.firenet_weights, share_path("models", "firenet_default.safetensors"),
                          lambda p: load_model(p, build_firenet)[0])
    recs = {"cvae": cvae} | ({"cvae+keyframe": key} if key is not None else {})

    if args.events is not None or args.frames_from is not None:
        if args.events is None or args.frames_from is None:
            raise ValueError("--events and --frames-from go together")
        payload = {"recording": str(args.events), "scores": _score_aedat(ev, recs, args.events, args.frames_from)}
        emit(args, payload, _recording_table(payload["scores"]))
        return 0
    if args.video is not None:
        payload = {"video": str(args.video), "scores": ev.score_video(recs, args.video)}
        emit(args, payload, _recording_table(payload["scores"]))
        return 0

    from microexp_ros.train.recon import load_split

    roots = args.data or [Path(d["root"]) for d in cvae.meta.get("data", [])]
    if not roots:
        raise ValueError("no dataset: pass --data DIR (the weights record no training data)")
    train_cfg = cvae.meta.get("train", {})
    kw = {"window_ns": cvae.window_ns, "keyframe_age": int(train_cfg.get("keyframe_age", 3))}
    test = load_split(roots, "test", **kw)
    if not test:
        raise ValueError(f"the test split of {', '.join(map(str, roots))} has no usable frames")
    result = ev.evaluate_dataset(test, load_split(roots, "train", **kw), cvae, key, fire, args.max_frames, args.out_dir)
    davis = ev_real_path()
    if not args.no_real and davis is not None:
        result["davis346"] = _score_aedat(ev, recs, davis, davis)
    result["protocol"] = _protocol()
    result["data"] = [str(r) for r in roots]
    text = format_table(["source", "res", "method", "SSIM", "PSNR", "MSE", "frames"],
                        [[r["source"], r["res"], r["method"], r["ssim"], r["psnr"], r["mse"], r["n"]] for r in result["table"]])
    text += "\n\nper lighting:\n" + format_table(
        ["source", "res", "method", "lighting", "SSIM", "PSNR", "MSE", "frames"],
        [[r["source"], r["res"], r["method"], r["lighting"], r["ssim"], r["psnr"], r["mse"], r["n"]] for r in result["per_lighting"]])
    if "davis346" in result:
        text += "\n\nDAVIS346 sample (out of domain, no target):\n" + _recording_table(result["davis346"])
    emit(args, result, text)
    return 0


def ev_real_path() -> Path | None:
    """The DAVIS346 events+frames sample in the shared real recordings, when present."""
    from microexp_ros.resources import real_data_dir

    try:
        path = real_data_dir() / DAVIS_SAMPLE
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def _score_aedat(ev, recs, events_path: Path, frames_path: Path) -> dict:
    from microexp_ros.events.aedat4 import Aedat4File
    from microexp_ros.events.reader_protocol import read_all

    for p in (events_path, frames_path):
        if p.suffix.lower() != ".aedat4":
            raise ValueError(f"{p}: only AEDAT4 recordings are supported for --events/--frames-from")
    source = Aedat4File(events_path)
    (stream, chunk), = list(read_all(source).items())[:1]
    info = source.streams[stream]
    frames = list(Aedat4File(frames_path).frames())
    for f in frames:
        if f.pixels.shape[:2] != (info.height, info.width):
            raise ValueError(f"{frames_path}: frame size {f.pixels.shape[:2]} differs from the event sensor "
                             f"{info.height}x{info.width}")
    scores = ev.score_recording(recs, chunk.events, frames, info.width, info.height)
    return scores | {"frames": len(frames), "size": [info.width, info.height], "events": int(chunk.events.size)}


def _recording_table(scores: dict) -> str:
    rows = [[name, s["ssim"], s["psnr"], s["mse"], s["n"]] for name, s in scores.items() if isinstance(s, dict)]
    return format_table(["method", "SSIM", "PSNR", "MSE", "frames"], rows)


def _protocol() -> dict:
    import skimage
    import torch

    from microexp_ros.eval.image_metrics import PROTOCOL

    return {"metrics": PROTOCOL, "skimage": skimage.__version__, "torch": torch.__version__,
            "inference": "CVAE prior mean (deterministic), Reconstructor.reconstruct"}


def run_bench(args: argparse.Namespace) -> int:
    from microexp_ros.bench.recon import run_benchmark

    result = run_benchmark(threads=args.threads, repeats=args.repeats, weights=args.weights)
    rows = [[r["what"], r["size"], r["median_ms"], r["p99_ms"], r["fps"], r["speed_vs_firenet"]] for r in result["rows"]]
    text = format_table(["what", "size", "median ms", "p99 ms", "frames/s", "x FireNet"], rows)
    text += f"\n(torch threads={result['threads']}, batch 1, {result['repeats']} repeats, weights: {result['weights']})"
    emit(args, result, text)
    return 0

