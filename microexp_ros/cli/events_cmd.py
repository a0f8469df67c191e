"""`microexp events info`: what an event file or bag holds; `microexp bench representations`: their speed."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Any

from microexp_ros.cli.output import add_json_flag, emit, format_table


def register(group) -> None:
    info = group("events", "event files and bags").add_parser(
        "info", help="encoding, sensor size, duration, event/trigger counts and drops of an event file or bag")
    info.add_argument("path", type=Path, help=".raw, .aedat4, .bin, rosbag2 directory/.db3/.mcap or ROS 1 .bag")
    _add_geometry_args(info)
    info.add_argument("--topic", action="append", dest="topics", help="bag topic to read (repeatable; default all)")
    add_json_flag(info)
    info.set_defaults(func=run_info)

    bench = group("bench", "benchmarks").add_parser(
        "representations", help="Mev/s of each event representation on a real recording, vs a numpy baseline")
    bench.add_argument("path", type=Path, help="event file or bag (its first stream is used)")
    _add_geometry_args(bench)
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per representation (median is reported)")
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


def _add_geometry_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, help="sensor width, for files that do not store it (.raw, .bin)")
    parser.add_argument("--height", type=int, help="sensor height, for files that do not store it (.raw, .bin)")
    parser.add_argument("--encoding", help="encoding of a .raw file whose header does not name it (evt3, evt2)")


def run_info(args: argparse.Namespace) -> int:
    from microexp_ros.events.reader import open_events
    from microexp_ros.events.reader_protocol import summarize

    source = open_events(args.path, args.width, args.height, args.encoding, args.topics)
    stats = summarize(source)
    extra = _extra(source)
    streams = list(stats.values())
    drops: collections.Counter[str] = collections.Counter()
    for s in streams:
        drops.update(s["drops"])
    payload: dict[str, Any] = {
        "path": str(args.path),
        "format": source.format,
        **{key: _common(streams, key) for key in ("encoding", "width", "height")},
        "events": sum(s["events"] for s in streams),
        "on": sum(s["on"] for s in streams),
        "off": sum(s["off"] for s in streams),
        "triggers": sum(s["triggers"] for s in streams),
        "duration_s": max(s["duration_s"] for s in streams),
        "drops": dict(drops),
        "streams": stats,
        **extra,
    }
    rows = [[name, s["encoding"], f"{s['width']}x{s['height']}", f"{s['duration_s']:.4f}", s["events"], s["on"],
             s["off"], s["triggers"], ", ".join(f"{k}={v}" for k, v in sorted(s["drops"].items())) or "-"]
            for name, s in stats.items()]
    text = f"{args.path} ({source.format})\n" + format_table(
        ["stream", "encoding", "size", "duration_s", "events", "on", "off", "triggers", "dropped"], rows)
    if extra:
        text += "\n" + ", ".join(f"{k}: {v}" for k, v in extra.items())
    emit(args, payload, text)
    return 0


def _common(streams: list[dict[str, Any]], key: str) -> Any:
    """The value all streams share for `key`, or None where they differ."""
    values = {s[key] for s in streams}
    return values.pop() if len(values) == 1 else None


def _extra(source) -> dict[str, Any]:
    """Format-specific facts: bag message counts, AEDAT4 frame count."""
    if hasattr(source, "message_counts"):
        return {"messages": dict(source.message_counts)}
    if hasattr(source, "frames"):
        return {"frames": sum(1 for _ in source.frames())}
    return {}


def run_bench(args: argparse.Namespace) -> int:
    from microexp_ros.bench.representations import representation_table
    from microexp_ros.events.reader import open_events
    from microexp_ros.events.reader_protocol import read_all

    source = open_events(args.path, args.width, args.height, args.encoding)
    name = next(iter(source.streams))
    events = read_all(source)[name].events
    if events.size == 0:
        raise ValueError(f"stream {name} has no events to benchmark on")
    rows = representation_table(events, args.repeats)
    payload = {"path": str(args.path), "stream": name, "events": int(events.size), "repeats": args.repeats,
               "results": rows, "voxel_mevps": next(r["mevps"] for r in rows if r["representation"] == "voxel_grid")}
    text = f"{args.path} [{name}]: {events.size} events, median of {args.repeats} runs\n" + format_table(
        ["representation", "Mev/s (wall)", "Mev/s (CPU)", "x numpy voxel (wall)"],
        [[r["representation"], r["mevps"], r["cpu_mevps"], r["ratio_to_baseline"]] for r in rows])
    emit(args, payload, text)
    return 0
