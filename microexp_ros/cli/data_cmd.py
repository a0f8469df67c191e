"""`microexp data generate | inspect | bag`: make synthetic datasets, look at them, turn clips into a rosbag2."""

from __future__ import annotations

import argparse
import collections
import shlex
import sys
import time
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit, format_table


def register(group) -> None:
    data = group("data", "synthetic datasets and bags")

    gen = data.add_parser("generate", help="write a synthetic micro-expression dataset (microexp-dataset/1)")
    gen.add_argument("out", type=Path, help="output directory (must not hold a dataset yet)")
    size = gen.add_mutually_exclusive_group()
    size.add_argument("--clips", type=int, help="number of clips (a balanced class x lighting grid)")
    from microexp_ros.data.dataset import PRESETS

    size.add_argument("--preset", choices=tuple(PRESETS), default=None,
                      help="; ".join(f"{name}: {p.clips} clips, {p.description}" for name, p in PRESETS.items())
                      + " (default: the default preset when --clips is not given)")
    gen.add_argument("--identities", type=int, help="number of identities (default: the preset's)")
    gen.add_argument("--seed", type=int, default=0, help="dataset seed; every clip's seed derives from it")
    gen.add_argument("--duration", type=float, default=1.0,
                     help="seconds per clip (default 1; longer clips serve models with windows near 1 s)")
    gen.add_argument("--workers", type=int, default=2, help="worker processes")
    add_json_flag(gen)
    gen.set_defaults(func=run_generate)

    ins = data.add_parser("inspect", help="statistics of a dataset, and a montage PNG of chosen clips")
    ins.add_argument("dataset", type=Path)
    ins.add_argument("--montage", type=Path, help="write a montage PNG (RGB frame, event frame, labels) here")
    ins.add_argument("--clip", action="append", dest="clip_ids",
                     help="clip id for the montage (repeatable; default: one clip per lighting condition)")
    add_json_flag(ins)
    ins.set_defaults(func=run_inspect)

    bag = data.add_parser("bag", help="write clips of a dataset as a rosbag2 MCAP bag (+ JSON sidecar)")
    bag.add_argument("dataset", type=Path)
    bag.add_argument("out", type=Path, help="bag directory to create (the sidecar is <out>.json)")
    bag.add_argument("--clips", nargs="+", dest="clip_ids", help="clip ids (default: all, in manifest order)")
    add_json_flag(bag)
    bag.set_defaults(func=run_bag)


def run_generate(args: argparse.Namespace) -> int:
    from microexp_ros.data.dataset import PRESETS, generate_dataset

    preset = PRESETS[args.preset or "default"]
    n_clips = args.clips if args.clips is not None else preset.clips
    n_ids = args.identities if args.identities is not None else preset.identities
    fixed = preset.plan if args.clips is None else ()
    size_arg = f"--clips {args.clips}" if args.clips is not None else f"--preset {args.preset or 'default'}"
    duration_arg = f" --duration {args.duration:g}" if args.duration != 1.0 else ""
    command = (f"microexp data generate {shlex.quote(str(args.out))} {size_arg} --identities {n_ids} "
               f"--seed {args.seed}{duration_arg} --workers {args.workers}")
    progress = None
    if not args.json:
        from tqdm import tqdm

        def progress(it, total):
            return tqdm(it, total=total, unit="clip", desc="generate", file=sys.stderr)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    manifest = generate_dataset(args.out, n_clips, args.seed, n_ids, workers=args.workers, fixed=fixed,
                                command=command, progress=progress, duration_ns=int(round(args.duration * 1e9)))
    seconds = time.perf_counter() - started
    # CPU time of this process and its (joined) workers: wall time on an otherwise idle machine is about
    # cpu_seconds / workers, whatever else was running during this measurement.
    cpu = _cpu_seconds() - cpu_started
    total_bytes = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    payload = {"clips": len(manifest["clips"]), "seconds": round(seconds, 2), "bytes": total_bytes,
               "seed": args.seed, "workers": args.workers, "identities": n_ids, "out": str(args.out),
               "seconds_per_clip": round(seconds / len(manifest["clips"]), 3), "cpu_seconds": round(cpu, 1),
               "cpu_seconds_per_clip": round(cpu / len(manifest["clips"]), 3)}
    text = (f"wrote {payload['clips']} clips ({n_ids} identities, seed {args.seed}) to {args.out} in "
            f"{seconds:.1f} s ({payload['seconds_per_clip']:.2f} s/clip, {args.workers} workers; "
            f"{cpu:.0f} CPU-s, {payload['cpu_seconds_per_clip']:.2f} CPU-s/clip), {total_bytes / 1e6:.1f} MB")
    emit(args, payload, text)
    return 0


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from microexp_ros.data.dataset import RESOLUTIONS, load_clip, load_manifest

    manifest = load_manifest(args.dataset)
    entries = manifest["clips"]
    per = {key: collections.Counter(str(c[key]) for c in entries) for key in ("split", "label", "lighting")}
    macro = sum(bool(c.get("macro")) for c in entries)
    counts = {r: np.array([c["n_events"][r] for c in entries if "n_events" in c]) for r in RESOLUTIONS}
    by_light = collections.defaultdict(list)
    for c in entries:
        if "n_events" in c:
            by_light[c["lighting"]].append(c["n_events"]["high"])
    identities = {s: sorted({c["identity"] for c in entries if c["split"] == s}) for s in ("train", "val", "test")}
    montage = None
    if args.montage:
        from microexp_ros.data.montage import default_montage_clips, write_montage

        chosen = args.clip_ids or default_montage_clips(entries)
        by_id = {c["id"]: c for c in entries}
        missing = [i for i in chosen if i not in by_id]
        if missing:
            raise ValueError(f"clip(s) {', '.join(missing)} not in {args.dataset}")
        write_montage([load_clip(args.dataset, by_id[i]) for i in chosen], args.montage, manifest)
        montage = str(args.montage)
    overlap = set(identities["train"]) & (set(identities["val"]) | set(identities["test"]))
    payload = {
        "clips": len(entries), "macro": macro, "per_split": dict(per["split"]), "per_label": dict(per["label"]),
        "per_lighting": dict(per["lighting"]),
        "identities_per_split": {s: len(v) for s, v in identities.items()},
        "identity_overlap": sorted(overlap),
        "events_per_clip": {r: {"mean": float(v.mean()), "min": int(v.min()), "max": int(v.max())}
                            for r, v in counts.items() if v.size},
        "events_high_mean_by_lighting": {k: float(np.mean(v)) for k, v in sorted(by_light.items())},
        "rgb": manifest["rgb"], "resolutions": manifest["resolutions"],
        "bytes": sum(p.stat().st_size for p in Path(args.dataset).rglob("*") if p.is_file()),
        "montage": montage,
    }
    lines = [f"{args.dataset}: {len(entries)} clips ({macro} macro), seed {manifest['seed']}, "
             f"{payload['bytes'] / 1e6:.1f} MB; rgb {manifest['rgb']['width']}x{manifest['rgb']['height']} "
             f"@ {manifest['rgb']['fps']} fps; events high {manifest['resolutions']['high']}, "
             f"low {manifest['resolutions']['low']}",
             format_table(["split", "clips", "identities"],
                          [[s, per["split"].get(s, 0), len(identities[s])] for s in ("train", "val", "test")]),
             format_table(["label", "clips"], [[k, v] for k, v in sorted(per["label"].items(), key=lambda kv: int(kv[0]))]),
             format_table(["lighting", "clips", "mean events (high)"],
                          [[k, per["lighting"][k], float(np.mean(by_light[k])) if by_light[k] else "-"]
                           for k in sorted(per["lighting"])])]
    if counts["high"].size:
        lines.append(format_table(["resolution", "mean events", "min", "max"],
                                  [[r, float(v.mean()), int(v.min()), int(v.max())] for r, v in counts.items()]))
    if overlap:
        lines.append(f"WARNING: identities in train and val/test: {', '.join(sorted(overlap))}")
    if montage:
        lines.append(f"montage: {montage}")
    emit(args, payload, "\n".join(lines))
    return 0


def run_bag(args: argparse.Namespace) -> int:
    from microexp_ros.data.clip_bag import write_clip_bag

    command = f"microexp data bag {shlex.quote(str(args.dataset))} {shlex.quote(str(args.out))}"
    if args.clip_ids:
        command += " --clips " + " ".join(args.clip_ids)
    sidecar = write_clip_bag(args.dataset, args.out, args.clip_ids, command=command)
    payload = {"out": str(args.out), "sidecar": str(args.out.with_suffix(".json")), "clips": len(sidecar["clips"]),
               "bytes": sidecar["bag_bytes"], "messages": sidecar["topics"]}
    text = "\n".join([f"wrote {payload['clips']} clips to {args.out} ({payload['bytes'] / 1e6:.2f} MB)",
                      format_table(["topic", "type", "messages"],
                                   [[t, v["type"], v["count"]] for t, v in sidecar["topics"].items()])])
    emit(args, payload, text)
    return 0
