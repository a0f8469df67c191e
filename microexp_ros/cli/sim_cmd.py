"""`microexp bench sim` (simulator speed) and `microexp data convert-video` (real video -> labelled clip)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table


def register(group) -> None:
    bench = group("bench", "benchmarks").add_parser(
        "sim", help="event simulator speed (simulated s per wall s) vs a plain-numpy implementation")
    bench.add_argument("--width", type=int, default=346, help="sensor width (default: %(default)s)")
    bench.add_argument("--height", type=int, default=260, help="sensor height (default: %(default)s)")
    bench.add_argument("--rate", type=float, default=1000.0, help="internal rate in Hz (default: %(default)s)")
    bench.add_argument("--threads", type=int, default=1, help="numba threads for the kernel (default: %(default)s)")
    bench.add_argument("--seconds", type=float, default=2.0, help="simulated seconds, numba (default: %(default)s)")
    bench.add_argument("--reference-seconds", type=float, default=0.2,
                       help="simulated seconds for the slow numpy reference (default: %(default)s)")
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)

    conv = group("data", "synthetic datasets and bags").add_parser(
        "convert-video", help="simulate events from a real face video and write it as dataset clips (one, or "
                              "one per --chunk)")
    conv.add_argument("video", type=Path, help="input video (anything OpenCV decodes)")
    conv.add_argument("out", type=Path, help="dataset directory (created, or appended to if it matches)")
    conv.add_argument("--width", type=int, default=128, help="high-resolution sensor width (default: %(default)s)")
    conv.add_argument("--height", type=int, default=128, help="high-resolution sensor height (default: %(default)s)")
    conv.add_argument("--low-width", type=int, default=48, help="low-resolution sensor width (default: %(default)s)")
    conv.add_argument("--low-height", type=int, default=48, help="low-resolution sensor height (default: %(default)s)")
    conv.add_argument("--crop", type=_crop,
                      help="face box x,y,w,h in video pixels, or 'face': a --face-width box of the sensor aspect "
                           "centred on the face detected in each clip's first frame (default: the largest centred "
                           "box of the sensor aspect)")
    conv.add_argument("--face-width", type=int, default=300,
                      help="with --crop face: box width in video pixels (default: %(default)s)")
    conv.add_argument("--openface-csv", type=Path, help="OpenFace 2.x CSV of this video: per-frame AU labels")
    conv.add_argument("--seconds", type=float, help="length to convert (default: the whole video)")
    conv.add_argument("--chunk", type=float,
                      help="write one clip per CHUNK seconds of the converted length instead of one clip")
    conv.add_argument("--stride", type=float, help="with --chunk: seconds between clip starts (default: --chunk)")
    conv.add_argument("--start", type=float, default=0.0, help="start time in s (default: %(default)s)")
    conv.add_argument("--seed", type=int, default=0,
                      help="simulator seed; chunk i uses seed + i (default: %(default)s)")
    conv.add_argument("--brightness", type=float, default=1.0,
                      help="scale of the linear luminance, e.g. 0.05 for a dim-light version (default: %(default)s)")
    conv.add_argument("--lighting", default="normal",
                      choices=("bright", "normal", "dim", "very_dim", "flicker", "shadow"),
                      help="manifest lighting tag (default: %(default)s)")
    conv.add_argument("--split", default="test", choices=("train", "val", "test"),
                      help="manifest split (default: %(default)s)")
    conv.add_argument("--identity", help="manifest identity (default: the video's file name)")
    conv.add_argument("--clip-id", help="clip id; with --chunk the prefix of <prefix>_<start ms> "
                                        "(default: v_<video stem>_<start ms>)")
    add_json_flag(conv)
    conv.set_defaults(func=run_convert)


def _crop(text: str) -> tuple[int, int, int, int] | str:
    if text == "face":
        return text
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must be 'face' or x,y,w,h integers, got {text!r}") from None
    return x, y, w, h


def run_bench(args: argparse.Namespace) -> int:
    from microexp_ros.bench.sim import run_bench as measure

    r = measure(args.width, args.height, args.rate, args.seconds, args.reference_seconds, threads=args.threads)
    ratio = r.realtime_factor / r.reference_realtime_factor
    payload = {"width": r.width, "height": r.height, "internal_rate_hz": r.internal_rate_hz,
               "realtime_factor": r.realtime_factor, "events_per_s": r.events / r.simulated_s,
               "simulated_s": r.simulated_s, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "threads": r.threads,
               "reference_realtime_factor": r.reference_realtime_factor,
               "reference_simulated_s": r.reference_simulated_s, "reference_wall_s": r.reference_wall_s,
               "reference_cpu_s": r.reference_cpu_s, "speedup_vs_numpy": ratio}
    rows = [["numba kernel", f"{r.width}x{r.height}", r.internal_rate_hz, r.threads, r.simulated_s,
             r.realtime_factor, r.simulated_s / r.cpu_s, r.events / r.simulated_s, ratio],
            ["numpy reference", f"{r.width}x{r.height}", r.internal_rate_hz, 1, r.reference_simulated_s,
             r.reference_realtime_factor, r.reference_simulated_s / r.reference_cpu_s, "-", 1.0]]
    text = format_table(["implementation", "resolution", "internal Hz", "threads", "simulated s",
                         "realtime factor", "per CPU-s", "events/s", "x numpy"], rows)
    text += ("\nrealtime factor = simulated seconds per wall second (target >= 1.0 at 346x260, 1 kHz); "
             "per CPU-s = simulated seconds per second of process CPU time (all threads)")
    emit(args, payload, text)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from microexp_ros.sim.video import (chunk_starts, face_crop, read_openface_csv, read_video, video_duration_s,
                                        video_to_events, write_video_clip)

    if not args.video.is_file():
        raise FileNotFoundError(f"video not found: {args.video}")
    command = "microexp " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prefix = args.clip_id or f"v_{args.video.stem}"
    labels = read_openface_csv(args.openface_csv) if args.openface_csv is not None else None
    if args.chunk is None:
        clips = [(args.clip_id or f"{prefix}_{int(round(args.start * 1000))}", args.start, args.seconds)]
    else:
        starts = chunk_starts(video_duration_s(args.video), args.start, args.seconds, args.chunk, args.stride)
        clips = [(f"{prefix}_{int(round(s * 1000))}", s, args.chunk) for s in starts]
    detector = None
    if args.crop == "face":
        from microexp_ros.face.detector import FaceDetector

        detector = FaceDetector()
    reports = []
    for i, (clip_id, start, seconds) in enumerate(clips):
        crop = args.crop
        if crop == "face":
            first = read_video(args.video, seconds=1e-3, start_s=start)[0][0]
            crop_h = int(round(args.face_width * args.height / args.width))
            crop = face_crop(first, args.face_width, crop_h, detector)
        converted = video_to_events(args.video, args.width, args.height, crop=crop, seconds=seconds,
                                    start_s=start, seed=args.seed + i, brightness=args.brightness,
                                    extra_resolutions={"low": (args.low_width, args.low_height)})
        clip_labels = None
        if labels is not None:
            clip_labels = labels.for_frames(int(round(start * 1e9)), converted.frame_t)
        entry = write_video_clip(
            args.out, converted, "low", clip_id=clip_id, identity=args.identity or args.video.stem,
            split=args.split, lighting=args.lighting, seed=args.seed + i, video=args.video.name,
            labels=clip_labels, command=command)
        reports.append({"clip": entry["id"], "start_s": start, "frames": int(converted.frame_t.size),
                        "events_high": int(converted.events.size),
                        "events_low": int(converted.extra["low"].size), "label": entry["label"],
                        "aus": len(entry["aus"]), "crop": list(converted.crop)})
    text = format_table(["clip", "start s", "frames", "events high", "events low", "label", "AU episodes", "crop"],
                        [[r["clip"], r["start_s"], r["frames"], r["events_high"], r["events_low"], r["label"],
                          r["aus"], ",".join(map(str, r["crop"]))] for r in reports])
    emit(args, {"out": str(args.out), "clips": reports}, text)
    return 0
