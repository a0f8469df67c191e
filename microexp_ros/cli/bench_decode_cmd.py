"""`microexp bench decode`: EVT3 decode rate against the evt3 (Rust) and expelliarmus (C) packages."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table
from microexp_ros.resources import real_data_dir



def register(group) -> None:
    parser = group("bench", "benchmarks").add_parser(
        "decode", help="EVT3 decode Mev/s: ours vs PyPI evt3 and expelliarmus, on a file and a large stream")
    parser.add_argument("--file", type=Path, default=None,
                        help="EVT3 .raw file to measure and to tile into the large stream "
                             "(default: expelliarmus/evt3_sample.raw of the real recordings)")
    parser.add_argument("--events", type=int, default=20_000_000,
                        help="size of the large tiled stream in events (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1280, help="sensor width (default: %(default)s)")
    parser.add_argument("--height", type=int, default=720, help="sensor height (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per decoder; the median is reported")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.file is None:
        args.file = real_data_dir() / "expelliarmus" / "evt3_sample.raw"
    from microexp_ros.bench.decode import DECODE_HEADERS, decode_table, run_decode_benchmark

    if not args.file.is_file():
        raise FileNotFoundError(f"input file not found: {args.file} (pass --file)")
    result = run_decode_benchmark(args.file, args.events, args.width, args.height, args.repeats)
    text = format_table(DECODE_HEADERS, decode_table(result))
    voxel = result["voxel"]
    text += (f"\n5-bin voxel grid on the large stream: {voxel['ours']['mevps']:.1f} Mev/s wall, "
             f"{voxel['ours']['cpu_mevps']:.1f} cpu; numpy baseline {voxel['numpy']['mevps']:.1f} wall, "
             f"{voxel['numpy']['cpu_mevps']:.1f} cpu (x{voxel['ratio_vs_numpy']['cpu_mevps']:.1f} by cpu); "
             f"median of {args.repeats} repeats")
    emit(args, result, text)
    return 0
