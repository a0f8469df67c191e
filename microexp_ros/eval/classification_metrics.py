"""Classification metrics of the reporting protocol (metrics-protocol.md): accuracy, macro-F1, confusion
matrices, per-label F1 for multi-label outputs, and chance levels, all on integer class indices / 0-1 arrays.

Macro-F1 averages over the classes present in the ground truth or the predictions of the evaluated set (a
class absent from both has no defined F1 and is left out, as in scikit-learn with labels=present classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_labels(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    return t, p


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of exact matches (NaN for an empty set)."""
    t, p = _as_labels(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """[num_classes, num_classes] int64 counts, rows = true class, columns = predicted class."""
    t, p = _as_labels(y_true, y_pred)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}), got {min(t.min(), p.min())}..{max(t.max(), p.max())}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def per_class_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """F1 of each class (NaN where the class is in neither the truth nor the predictions)."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    return _f1(tp, cm.sum(0) - tp, cm.sum(1) - tp)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> float:
    """Unweighted mean F1 over the classes that occur (NaN for an empty set)."""
    f1 = per_class_f1(y_true, y_pred, num_classes)
    return float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else float("nan")


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 per label column of 0/1 arrays [N, L] (NaN for a label never present nor predicted)."""
    t, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"multi-label arrays must be [N, L] of equal shape, got {t.shape} and {p.shape}")
    tp = (t & p).sum(0).astype(np.float64)
    return _f1(tp, (~t & p).sum(0), (t & ~p).sum(0))


def chance_levels(y_true: Sequence[int], num_classes: int) -> dict[str, float]:
    """Chance accuracy of a uniform guess over the classes and of always predicting the most frequent class."""
    t = np.asarray(y_true, dtype=np.int64)
    majority = float(np.bincount(t, minlength=num_classes).max() / t.size) if t.size else float("nan")
    return {"uniform": 1.0 / num_classes, "majority": majority}
