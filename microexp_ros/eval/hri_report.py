"""Scoring a run of the HRI graph against ground truth: AU detection, timing, latency; and its report figures.

Everything here works on plain records (no ROS), so the demo's collector and the tests share one definition:
- a ground-truth event is one AU of one clip, active from onset to offset (host time, ns);
- a predicted episode is a run of consecutive windows in which the AU is active (window ends, ns);
- a ground-truth event is detected when an episode of the same AU overlaps [onset - tol, offset + tol];
  an episode that overlaps no ground-truth event of its AU is a false positive;
- the timing error of a detection is |episode start - onset|, in ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microexp_ros.facs import AU_NAMES


@dataclass(frozen=True)
class GroundTruthEvent:
    clip_id: str
    au: int
    onset_ns: int
    apex_ns: int
    offset_ns: int
    lighting: str = ""


@dataclass(frozen=True)
class WindowPrediction:
    window_end_ns: int
    probabilities: dict[int, float]
    active: frozenset[int]
    latency_ms: float = float("nan")
    e2e_ms: float = float("nan")


@dataclass
class AUScore:
    au: int
    detected: int = 0
    missed: int = 0
    false_positives: int = 0
    timing_errors_ms: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        predicted = self.detected + self.false_positives
        return self.detected / predicted if predicted else float("nan")

    @property
    def recall(self) -> float:
        total = self.detected + self.missed
        return self.detected / total if total else float("nan")


def episodes(predictions: Sequence[WindowPrediction], au: int) -> list[tuple[int, int]]:
    """(first, last) window ends of each run of consecutive windows in which `au` is active."""
    runs: list[tuple[int, int]] = []
    start = last = None
    for p in sorted(predictions, key=lambda p: p.window_end_ns):
        if au in p.active:
            start = p.window_end_ns if start is None else start
            last = p.window_end_ns
        elif start is not None:
            runs.append((start, last))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs


def score(events: Iterable[GroundTruthEvent], predictions: Sequence[WindowPrediction],
          tolerance_ms: float = 100.0) -> dict[int, AUScore]:
    """Per-AU detection counts and timing errors (definitions in the module docstring)."""
    tol = int(tolerance_ms * 1e6)
    events = list(events)
    aus = {e.au for e in events} | {au for p in predictions for au in p.active}
    scores = {au: AUScore(au) for au in sorted(aus)}
    for au, result in scores.items():
        runs = episodes(predictions, au)
        matched_runs: set[int] = set()
        for event in (e for e in events if e.au == au):
            hits = [i for i, (a, b) in enumerate(runs) if a <= event.offset_ns + tol and b >= event.onset_ns - tol]
            if hits:
                result.detected += 1
                matched_runs.update(hits)
                result.timing_errors_ms.append(abs(runs[hits[0]][0] - event.onset_ns) / 1e6)
            else:
                result.missed += 1
        result.false_positives = len(runs) - len(matched_runs)
    return scores


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def summary(scores: dict[int, AUScore], predictions: Sequence[WindowPrediction], ssim: Sequence[float],
            psnr: Sequence[float], drops: dict[str, int]) -> dict:
    """The metrics JSON of a run: per-AU precision/recall, timing, SSIM/PSNR, latency percentiles, drops."""
    detected = sum(s.detected for s in scores.values())
    predicted = detected + sum(s.false_positives for s in scores.values())
    total = detected + sum(s.missed for s in scores.values())
    timing = [t for s in scores.values() for t in s.timing_errors_ms]
    e2e = np.array([p.e2e_ms for p in predictions if np.isfinite(p.e2e_ms)])
    latency = np.array([p.latency_ms for p in predictions if np.isfinite(p.latency_ms)])

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q)) if values.size else None

    return {
        "au_precision": _nan_to_none(detected / predicted) if predicted else None,
        "au_recall": _nan_to_none(detected / total) if total else None,
        "per_au": {f"AU{au}": {"name": AU_NAMES.get(au, "?"), "precision": _nan_to_none(s.precision),
                               "recall": _nan_to_none(s.recall), "detected": s.detected, "missed": s.missed,
                               "false_positives": s.false_positives} for au, s in scores.items()},
        "timing_error_ms": float(np.mean(timing)) if timing else None,
        "ssim": float(np.mean(ssim)) if len(ssim) else None,
        "psnr": float(np.mean(psnr)) if len(psnr) else None,
        "quality_frames": len(ssim),
        "windows": len(predictions),
        "infer_p50_ms": pct(latency, 50), "infer_p99_ms": pct(latency, 99),
        "e2e_p50_ms": pct(e2e, 50), "e2e_p99_ms": pct(e2e, 99),
        "drops": int(sum(drops.values())),
        "drops_by_reason": dict(drops),
    }


def plot_timeline(path: Path, events: Sequence[GroundTruthEvent], predictions: Sequence[WindowPrediction],
                  t0_ns: int) -> None:
    """AU timeline: ground-truth intervals shaded, predicted probability as a line, active windows marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aus = sorted({e.au for e in events} | {au for p in predictions for au in p.active})
    fig, axes = plt.subplots(max(len(aus), 1), 1, figsize=(11, 1.2 + 1.1 * max(len(aus), 1)), sharex=True,
                             squeeze=False)
    times = np.array([(p.window_end_ns - t0_ns) / 1e9 for p in predictions])
    for ax, au in zip(axes[:, 0], aus):
        for e in (e for e in events if e.au == au):
            ax.axvspan((e.onset_ns - t0_ns) / 1e9, (e.offset_ns - t0_ns) / 1e9, color="tab:green", alpha=0.25)
        probs = np.array([p.probabilities.get(au, np.nan) for p in predictions])
        ax.plot(times, probs, color="tab:blue", lw=1)
        active = np.array([au in p.active for p in predictions], bool)
        ax.plot(times[active], np.full(active.sum(), 1.05), "|", color="tab:red", ms=8)
        ax.set_ylim(-0.05, 1.15)
        ax.set_ylabel(f"AU{au}", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xlabel("time since start of replay (s)")
    axes[0, 0].set_title("AU timeline: ground truth (green), probability (blue), active (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_montage(path: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray | None]], columns: int = 6) -> None:
    """Reconstructions (top of each cell) above their references (bottom; black where none), as one PNG."""
    import cv2

    if not pairs:
        raise ValueError("no reconstructed frames to put in a montage")
    h, w = pairs[0][0].shape[:2]
    cells = []
    for recon, reference in pairs:
        ref = np.zeros((h, w), np.uint8) if reference is None else cv2.resize(reference, (w, h))
        cells.append(np.vstack([cv2.resize(recon, (w, h)), ref]))
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.hstack(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    cv2.imwrite(str(path), np.vstack(rows))
