"""Latency sampling shared by the benchmarks, so every table's ms figures are measured the same way."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def latencies_ms(fn: Callable[[], object], repeats: int, warmup: int) -> np.ndarray:
    """Wall-clock ms of `repeats` calls of `fn`, after `warmup` untimed calls (lazy init, caches, JIT)."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - start) * 1e3
    return out
