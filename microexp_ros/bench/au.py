"""AU latency benchmark figures.

In process: per-window latency of what the node runs (encode + SNN forward), at the shipped model's input size
with pinned threads, against the reference CNN on the same input in the same run (`run`).
End to end: the per-window latencies a collector measured while real node processes replayed a bag
(`e2e_summary`; the replay itself is `microexp_ros.bringup.demo.replay_graph`, driven by `microexp bench au`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microexp_ros.bench.timing import latencies_ms
from microexp_ros.models.au_inference import AUPredictor, build_au_model, select_window
from microexp_ros.models.weights import count_parameters


def bench_window() -> tuple[np.ndarray, int, int, tuple[int, int]]:
    """A real simulated window: AU12 clip, normal light, high-resolution sensor; (events, t0, t1, sensor size)."""
    from microexp_ros.sim.clip import ClipSpec, Geometry, make_clip
    from microexp_ros.sim.face import make_identities

    geometry = Geometry()
    identity = make_identities(1, seed=7)[0]
    data = make_clip(ClipSpec("bench", identity, "normal", 12, False, seed=7), geometry)
    entry = {"id": "bench", "label": 12, "aus": data.meta["aus"], "duration_ns": geometry.duration_ns}
    t0, t1 = select_window(entry)
    return data.events["high"], t0, t1, (geometry.high, geometry.high)


def run(model_path: str | Path | None = None, repeats: int = 200, threads: int = 2,
        flip_average: bool = False) -> dict[str, Any]:
    """Latency table rows and the headline keys infer_p50_ms / infer_p99_ms (encode + forward of one window;
    with `flip_average` the model runs it and its mirror image, a batch of two)."""
    torch.set_num_threads(threads)
    predictor = AUPredictor.from_file(model_path, flip_average=flip_average)
    if predictor.modality != "events":
        raise ValueError(f"the AU benchmark needs an events model, {predictor.name} is {predictor.modality}")
    events, t0, t1, sensor = bench_window()
    roi = (0, 0, *sensor)
    x = predictor.encode(events, t0, t1, roi, sensor)
    tensor = predictor.batch(x)   # what predict runs (two views with flip_average); the baseline gets it too
    cnn_config = {"arch": "cnn", "in_channels": predictor.channels, "bins": predictor.bins, "size": predictor.size}
    cnn = build_au_model(cnn_config).eval()

    def forward(model: Callable) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode():
                return model(tensor)
        return call

    used = predictor.model_for(tensor)  # traces the model (see AUPredictor) before the case names are made
    cases = {
        "encode_events (window -> histogram input)": lambda: predictor.encode(events, t0, t1, roi, sensor),
        "SNN forward, eager (snntorch steps in Python)": forward(predictor.model),
        f"SNN forward, {predictor.runner} (what predict runs)": forward(used),
        "SNN predict (encode + forward), the node's call": lambda: predictor.predict(events, t0, t1, roi, sensor),
        "baseline: reference CNN forward, same input": forward(cnn),
    }
    rows = []
    samples = {}
    for name, fn in cases.items():
        ms = latencies_ms(fn, repeats, warmup=5)
        samples[name] = ms
        rows.append({"case": name, "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
                     "per_s": 1e3 / float(np.median(ms))})
    baseline = rows[-1]["p50_ms"]
    for row in rows:
        row["ratio_to_baseline"] = row["p50_ms"] / baseline
    predict = samples["SNN predict (encode + forward), the node's call"]
    return {
        "infer_p50_ms": float(np.median(predict)),
        "infer_p99_ms": float(np.percentile(predict, 99)),
        "forward_p50_ms": rows[2]["p50_ms"],
        "eager_forward_p50_ms": rows[1]["p50_ms"],
        "runner": predictor.runner,
        "flip_average": flip_average,
        "threads": threads,
        "repeats": repeats,
        "input": f"[{tensor.shape[0]}, {predictor.bins}, {predictor.channels}, {predictor.size}, {predictor.size}] "
                 f"from {len(events)} events ({sensor[0]}x{sensor[1]} face region, {(t1 - t0) / 1e6:.0f} ms window)",
        "model": predictor.name,
        "parameters": count_parameters(predictor.model),
        "baseline_parameters": count_parameters(cnn),
        "torch": torch.__version__,
        "rows": rows,
    }


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"p50_ms": float(np.median(values)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max())}


def e2e_summary(runs: Sequence[Sequence[float]], target_ms: float = 15.0, cold_windows: int = 3) -> dict[str, Any]:
    """Pooled figures of several replays, each a list of per-window e2e ms in window order (NaN = a window
    whose end no later packet marked, e.g. the last ones of the bag: counted, not pooled).

    Also the first `cold_windows` windows of every run against the rest (start-up cost shows there) and the
    share of windows within `target_ms`.
    """
    if not runs:
        raise ValueError("e2e_summary needs at least one run")
    arrays = [np.asarray(run, dtype=np.float64) for run in runs]
    pooled = np.concatenate(arrays)
    measured = pooled[np.isfinite(pooled)]
    cold = np.concatenate([a[:cold_windows] for a in arrays])
    warm = np.concatenate([a[cold_windows:] for a in arrays])
    cold, warm = cold[np.isfinite(cold)], warm[np.isfinite(warm)]
    overall = _percentiles(measured)
    return {
        "e2e_p50_ms": overall["p50_ms"], "e2e_p99_ms": overall["p99_ms"], "e2e_max_ms": overall["max_ms"],
        "e2e_windows": int(measured.size), "e2e_unmeasured_windows": int(pooled.size - measured.size),
        "e2e_within_target": float(np.mean(measured <= target_ms)) if measured.size else None,
        "e2e_target_ms": target_ms,
        "e2e_cold": {"windows": int(cold.size), **_percentiles(cold)},
        "e2e_warm": {"windows": int(warm.size), **_percentiles(warm)},
        "e2e_runs_p50_ms": [_percentiles(a[np.isfinite(a)])["p50_ms"] for a in arrays],
        "e2e_runs_p99_ms": [_percentiles(a[np.isfinite(a)])["p99_ms"] for a in arrays],
    }


def stage_summary(runs: Sequence[dict[str, Sequence[float]]]) -> dict[str, dict[str, float | int | None]]:
    """Pooled p50/p99/max of each latency stage (`Collector.stages_after_run` of every replay); NaN (a stamp
    not seen) is counted as unmeasured, not pooled."""
    summary = {}
    for stage in (runs[0] if runs else {}):
        values = np.concatenate([np.asarray(run[stage], dtype=np.float64) for run in runs])
        measured = values[np.isfinite(values)]
        summary[stage] = {"windows": int(measured.size), "unmeasured": int(values.size - measured.size),
                          **_percentiles(measured)}
    return summary
