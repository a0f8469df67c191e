"""Throughput of the event representations, in millions of events per second, against a numpy baseline.

The baseline is the straightforward two-np.bincount voxel grid; the ratio shows what the numba kernel buys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from microexp_ros.events.frame import event_frame
from microexp_ros.events.histogram import polarity_histograms
from microexp_ros.events.time_surface import time_surface
from microexp_ros.events.voxel import voxel_grid

VOXEL_BINS = 5


def _geometry(events: np.ndarray) -> tuple[int, int, int, int]:
    """Sensor size covering the events and the window [first t, last t] they span."""
    if events.size == 0:
        raise ValueError("cannot benchmark on an empty event array")
    t = events["t"]
    return int(events["x"].max()) + 1, int(events["y"].max()) + 1, int(t.min()), int(t.max()) + 1


def _mevps(run: Callable[[], object], n_events: int, repeats: int, cpu_time: bool = False) -> float:
    """Median Mev/s of `repeats` timed calls after one untimed warm-up call (JIT compile, caches).

    Wall-clock by default; cpu_time=True uses this process's CPU time, which other loads on a shared machine
    disturb less (every representation here runs on one thread).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    clock = time.process_time if cpu_time else time.perf_counter
    run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return n_events / max(float(np.median(times)), 1e-9) / 1e6


def numpy_voxel_grid(events: np.ndarray, width: int, height: int, bins: int, t0: int, t1: int) -> np.ndarray:
    """The baseline: the same voxel grid as voxel_grid, built with two weighted np.bincount calls."""
    t = events["t"]
    ev = events[(t >= t0) & (t < t1)]
    tn = (ev["t"] - t0) * ((bins - 1) / (t1 - t0))
    b = tn.astype(np.intp)
    frac = tn - b
    signed = ev["p"] * 2.0 - 1.0
    flat = b * (height * width) + ev["y"].astype(np.intp) * width + ev["x"]
    size = (bins + 1) * height * width
    grid = np.bincount(flat, weights=signed * (1.0 - frac), minlength=size)
    grid += np.bincount(flat + height * width, weights=signed * frac, minlength=size)
    return grid[: bins * height * width].astype(np.float32).reshape(bins, height, width)


def voxel_rates(events: np.ndarray, repeats: int = 5) -> dict[str, dict[str, float]]:
    """voxel_grid and the numpy baseline (5 bins, the events' span and extent) measured in one run: Mev/s by
    wall clock and by CPU time, and ours / numpy by each."""
    width, height, t0, t1 = _geometry(events)
    runs = {"ours": lambda: voxel_grid(events, width, height, VOXEL_BINS, t0, t1),
            "numpy": lambda: numpy_voxel_grid(events, width, height, VOXEL_BINS, t0, t1)}
    out = {name: {"mevps": _mevps(run, events.size, repeats),
                  "cpu_mevps": _mevps(run, events.size, repeats, cpu_time=True)} for name, run in runs.items()}
    out["ratio_vs_numpy"] = {clock: out["ours"][clock] / out["numpy"][clock] for clock in ("mevps", "cpu_mevps")}
    return out


def representation_table(events: np.ndarray, repeats: int = 5) -> list[dict[str, float | str]]:
    """One row per representation: wall and CPU Mev/s, and the wall ratio to the numpy voxel baseline."""
    width, height, t0, t1 = _geometry(events)
    runs: dict[str, Callable[[], object]] = {
        "voxel_numpy_baseline": lambda: numpy_voxel_grid(events, width, height, VOXEL_BINS, t0, t1),
        "voxel_grid": lambda: voxel_grid(events, width, height, VOXEL_BINS, t0, t1),
        "polarity_histograms": lambda: polarity_histograms(events, width, height, VOXEL_BINS, t0, t1),
        "event_frame": lambda: event_frame(events, width, height),
        "time_surface": lambda: time_surface(events, width, height, t1, (t1 - t0) / 4),
    }
    rows = [
        {"representation": name, "mevps": _mevps(run, events.size, repeats),
         "cpu_mevps": _mevps(run, events.size, repeats, cpu_time=True)}
        for name, run in runs.items()
    ]
    for row in rows:
        row["ratio_to_baseline"] = row["mevps"] / rows[0]["mevps"]
    return rows
