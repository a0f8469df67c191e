"""`microexp demo`: the main job — the HRI graph on the embedded bag (or another), live AU lines, a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table
from microexp_ros.data.dataset import RESOLUTIONS

KEYS = ("au_precision", "au_recall", "timing_error_ms", "ssim", "psnr", "e2e_p50_ms", "e2e_p99_ms", "drops",
        "errors", "windows", "ground_truth_events")


def register(group) -> None:
    parser = group(None, "").add_parser(
        "demo", help="run the HRI graph on the embedded recording and write a report",
        description="Replays a bag (default: the embedded one) through the full HRI graph as separate "
                    "processes, prints one line per window, and writes metrics.json, au_timeline.png and "
                    "recon_montage.png to the report folder.")
    parser.add_argument("--report", type=Path, default=Path("report"), help="report folder (default: report)")
    parser.add_argument("--bag", default="", help="bag to replay (default: the embedded default bag)")
    parser.add_argument("--rate", default="", help="playback rate factor (default: replay config)")
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="high", help="event stream to use")
    parser.add_argument("--fuse-rgb", action="store_true",
                        help="au_classifier fuses the events model with the webcam CNN (launch argument au_fuse_rgb)")
    parser.add_argument("--quiet", action="store_true", help="no line per window")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from microexp_ros.bringup.demo import run_demo

    code, metrics = run_demo(args.report, args.bag, args.rate, args.resolution,
                             verbose=not args.quiet and not args.json, fuse_rgb=args.fuse_rgb)
    rows = [[key, metrics.get(key)] for key in KEYS]
    emit(args, metrics, format_table(["metric", "value"], rows) + f"\nreport: {args.report.resolve()}")
    return code
