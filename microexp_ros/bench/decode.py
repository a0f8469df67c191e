"""EVT3 decode throughput, ours against the PyPI `evt3` (Rust) and `expelliarmus` (C) decoders, same run.

Two streams: a real recording (the .raw file's payload), and a large stream (default 20 M events) made by
tiling that recording's decoded events in time and re-encoding them with our EVT3 encoder. Every decoder gets
one untimed warm-up call (numba JIT, caches), then the repeats run interleaved so machine load hits all of them
alike; the figure is the median, by wall clock (the headline) and by thread CPU time (steadier when other
processes share the cores). Ours and evt3 decode from memory; expelliarmus can only read files, so its
time includes reading the (page-cached) file.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.evt3 import encode_evt3
from microexp_ros.events.raw_header import raw_encoding, read_raw

DEFAULT_SAMPLE = Path("expelliarmus") / "evt3_sample.raw"
DEFAULT_EVENTS = 20_000_000
_RAW_HEADER = b"% evt 3.0\n% end\n"


def load_evt3_payload(path: str | Path) -> bytes:
    """The EVT3 words of a .raw file (header skipped); ValueError if its header names another encoding."""
    header, payload = read_raw(path)
    encoding = raw_encoding(header)
    if encoding not in (None, "evt3"):
        raise ValueError(f"{path}: header says {encoding}, the decode benchmark measures EVT3")
    if not payload:
        raise ValueError(f"{path}: no event data after the header")
    return payload


def tiled_stream(events: np.ndarray, n_events: int) -> np.ndarray:
    """`n_events` events made by repeating `events` back to back in time (1 ms apart), in stream order."""
    if events.size == 0:
        raise ValueError("cannot tile an empty event stream")
    if n_events < 1:
        raise ValueError(f"the large stream needs at least one event, got {n_events}")
    t0 = int(events["t"][0])
    span = int(events["t"][-1]) - t0 + 1_000_000
    reps = -(-n_events // events.size)
    big = np.tile(events, reps)[:n_events]
    big["t"] = big["t"] - t0 + (np.arange(n_events, dtype=np.int64) // events.size) * span
    return big


def _rates(runs: dict[str, Callable[[], int]], repeats: int) -> dict[str, dict[str, float]]:
    """Per decoder: event count and median Mev/s over interleaved repeats (after one warm-up each), by wall
    clock and by the thread's CPU time (steadier on a shared machine; every decoder here is single-threaded)."""
    counts = {name: run() for name, run in runs.items()}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            run()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {
        name: {
            "events": counts[name],
            "mevps": counts[name] / float(np.median(wall[name])) / 1e6,
            "cpu_mevps": counts[name] / max(float(np.median(cpu[name])), 1e-9) / 1e6,
        }
        for name in runs
    }


def _decoders(payload: bytes, raw_path: Path, width: int, height: int) -> dict[str, Callable[[], int]]:
    import evt3
    from expelliarmus import Wizard

    wizard = Wizard(encoding="evt3")
    return {
        "ours": lambda: make_decoder("evt3", width, height).decode(payload).events.size,
        "evt3": lambda: len(evt3.decode_bytes(payload, width, height)),
        "expelliarmus": lambda: len(wizard.read(raw_path)),
    }


def measure_stream(payload: bytes, width: int, height: int, repeats: int, workdir: Path) -> dict[str, object]:
    """Rates of the three decoders on one EVT3 payload, and ours relative to each."""
    raw_path = workdir / "stream.raw"
    raw_path.write_bytes(_RAW_HEADER + payload)
    try:
        rates = _rates(_decoders(payload, raw_path, width, height), repeats)
    finally:
        raw_path.unlink()
    ours, ours_cpu = rates["ours"]["mevps"], rates["ours"]["cpu_mevps"]
    return {
        "bytes": len(payload),
        "events": rates["ours"]["events"],
        "events_evt3": rates["evt3"]["events"],
        "events_expelliarmus": rates["expelliarmus"]["events"],
        "ours_mevps": ours,
        "evt3_mevps": rates["evt3"]["mevps"],
        "expelliarmus_mevps": rates["expelliarmus"]["mevps"],
        "ratio_vs_evt3": ours / rates["evt3"]["mevps"],
        "ratio_vs_expelliarmus": ours / rates["expelliarmus"]["mevps"],
        "cpu_time": {
            "ours_mevps": ours_cpu,
            "evt3_mevps": rates["evt3"]["cpu_mevps"],
            "expelliarmus_mevps": rates["expelliarmus"]["cpu_mevps"],
            "ratio_vs_evt3": ours_cpu / rates["evt3"]["cpu_mevps"],
            "ratio_vs_expelliarmus": ours_cpu / rates["expelliarmus"]["cpu_mevps"],
        },
    }


def run_decode_benchmark(
    path: str | Path, n_events: int = DEFAULT_EVENTS, width: int = 1280, height: int = 720, repeats: int = 5
) -> dict[str, object]:
    """The full benchmark: the file's stream, the large tiled stream (headline figures) and the voxel rate."""
    from microexp_ros.bench.representations import voxel_rates

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    payload = load_evt3_payload(path)
    sample_events = make_decoder("evt3", width, height).decode(payload).events
    with tempfile.TemporaryDirectory(prefix="microexp_bench_decode_") as tmp:
        sample = measure_stream(payload, width, height, repeats, Path(tmp))
        large_events = tiled_stream(sample_events, n_events)
        large_payload = encode_evt3(large_events)
        large = measure_stream(large_payload, width, height, repeats, Path(tmp))
    voxel = voxel_rates(large_events, repeats=repeats)
    headline = ("ours_mevps", "evt3_mevps", "expelliarmus_mevps", "ratio_vs_evt3", "ratio_vs_expelliarmus")
    return {
        **{key: large[key] for key in headline},
        "voxel_mevps": voxel["ours"]["mevps"],
        "voxel": voxel,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "streams": {"file": {"path": str(path), **sample}, "large": {"source": "tiled file, re-encoded", **large}},
    }


def decode_table(result: dict[str, object]) -> list[list[object]]:
    """Rows per stream and clock: events, MB, Mev/s of ours, evt3, expelliarmus, and ours relative to each."""
    rows = []
    for name, s in result["streams"].items():  # type: ignore[union-attr]
        for clock, r in (("wall", s), ("cpu", s["cpu_time"])):
            rows.append([
                name, clock, s["events"], s["bytes"] / 1e6, r["ours_mevps"], r["evt3_mevps"],
                r["expelliarmus_mevps"], r["ratio_vs_evt3"], r["ratio_vs_expelliarmus"],
            ])
    return rows


DECODE_HEADERS = [
    "stream", "clock", "events", "MB", "ours Mev/s", "evt3 Mev/s", "expelliarmus Mev/s", "ours/evt3",
    "ours/expelliarmus",
]
