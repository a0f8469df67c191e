"""`microexp bench dataplane`: the event rate the driver → time_sync path sustains without loss."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table
from microexp_ros.resources import real_data_dir


def register(group) -> None:
    parser = group("bench", "benchmarks").add_parser(
        "dataplane", help="Mev/s of the driver and time_sync stages, and the highest rate the two nodes carry "
                          "end to end without loss")
    parser.add_argument("--recording", type=Path, default=None,
                        help="event recording tiled into the benchmark stream "
                             "(default: event_camera_py/test_events_1.bag of the real recordings)")
    parser.add_argument("--events", type=int, default=4_000_000,
                        help="events in the stream (default: %(default)s)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                        help="end-to-end target rates in Mev/s, tried upwards until one loses events "
                             "(default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="stream duration played at each end-to-end rate (default: %(default)s)")
    parser.add_argument("--stage-density", type=float, default=30.0,
                        help="event rate (Mev/s) the stage stream is compressed to (default: %(default)s)")
    parser.add_argument("--packet-ms", type=float, default=1.0,
                        help="the driver's event_message_time_threshold in ms (default: %(default)s)")
    parser.add_argument("--reencode", action="store_true",
                        help="run the driver with forward_recorded_words:=false (the bag decoded and re-encoded "
                             "instead of its own words re-cut)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per stage; the median is reported")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.recording is None:
        args.recording = real_data_dir() / "event_camera_py" / "test_events_1.bag"
    from microexp_ros.bench.dataplane import run_dataplane_benchmark

    if not args.recording.exists():
        raise FileNotFoundError(f"recording not found: {args.recording} (pass --recording)")
    if args.events < 1000 or any(r <= 0 for r in args.rates) or not args.seconds > 0 or not args.packet_ms > 0:
        raise ValueError("--events must be >= 1000; --seconds, --packet-ms and every --rates "
                         "value > 0")
    result = run_dataplane_benchmark(args.recording, args.events, args.rates, args.seconds, args.repeats,
                                     args.stage_density, args.packet_ms, not args.reencode)
    stages = format_table(["stage", "wall Mev/s", "cpu Mev/s"],
                          [[name, r["wall_mevps"], r["cpu_mevps"]] for name, r in result["stages"].items()])
    sweep = format_table(
        ["target Mev/s", "achieved Mev/s", "windows", "events in windows", "drops", "lossless", "real time",
         "driver Mev/cpu-s", "time_sync Mev/cpu-s", "driver packets spliced", "windows spliced"],
        [[r["target_mevps"], r["achieved_mevps"], f"{r['windows_received']}/{r['windows_expected']}",
          f"{r['events_received']}/{r['events_expected']}",
          ", ".join(f"{k} {v}" for k, v in r["drops"].items()) or "0", r["lossless"], r["sustained"],
          r["driver_cpu_mevps"], r["time_sync_cpu_mevps"],
          f"{r['packets_spliced']}/{r['packets_spliced'] + r['packets_encoded']}",
          f"{r['windows_spliced']}/{r['windows_spliced'] + r['windows_reencoded']}"]
         for r in result["end_to_end"]])
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    text = (f"stages: {result['events']:,} events from {result['recording']} at "
            f"{result['stage_density_mevps']:g} Mev/s density\n\n{stages}\n\nend to end, "
            f"{result['packet_ms']:g} ms packets, driver "
            f"{'forwarding the bag words' if result['forward_words'] else 're-encoding'}:\n{sweep}\n\n"
            f"highest rate carried lossless and in real time (>= 80 % of the target delivered): "
            f"{result['max_sustained_mevps']:g} Mev/s (load average {load})")
    emit(args, result, text)
    return 0
