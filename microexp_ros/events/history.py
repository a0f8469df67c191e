"""The last stretch of an event stream that arrives as windows: for a model that reads a longer window than the
samples carry (a reconstruction CVAE trained on 600 ms, time_sync's samples of 200 ms)."""

from __future__ import annotations

import numpy as np

from microexp_ros.events.window import join, window_slice


class EventHistory:
    """Time-sorted events of the latest `span_ns` of a stream fed window by window.

    Windows may overlap (samples published at a hop shorter than their length): only the part after what is
    held is appended. A window that starts after the held end leaves a stretch with no events (no samples there,
    e.g. no camera frames, or samples lost). A window that ends before the held end (the stream went back in
    time: a replay restarted), holds other event records or comes from a sensor of another size (a replay of
    another camera) replaces the history. The history may hold a view of the last array given: pass arrays that
    are not reused afterwards.
    """

    def __init__(self, span_ns: int) -> None:
        if span_ns <= 0:
            raise ValueError(f"history span must be positive, got {span_ns} ns")
        self.span_ns = int(span_ns)
        self.events: np.ndarray | None = None
        self.sensor: tuple[int, int] | None = None
        self.start_ns = 0
        self.end_ns = 0

    def add(self, events: np.ndarray, t0_ns: int, t1_ns: int, sensor: tuple[int, int]) -> str | None:
        """Feed the window [t0_ns, t1_ns) with its time-sorted `events` from a sensor of (width, height); "gap"
        when it left a stretch of the span without events, "reset" when it replaced the history, else None."""
        t0_ns, t1_ns = int(t0_ns), int(t1_ns)
        if t1_ns <= t0_ns:
            raise ValueError(f"window must have t1 > t0, got t0={t0_ns} t1={t1_ns}")
        sensor = (int(sensor[0]), int(sensor[1]))
        rewound = self.events is not None and (t1_ns < self.end_ns or events.dtype != self.events.dtype
                                               or sensor != self.sensor)
        self.sensor = sensor
        joined = "reset" if rewound else None
        if self.events is None or rewound or t0_ns <= t1_ns - self.span_ns:   # the window alone is the history
            self.events, self.start_ns = events, t0_ns
        else:
            joined = "gap" if t0_ns > self.end_ns else None
            self.events = join([self.events, window_slice(events, max(t0_ns, self.end_ns), t1_ns)], events.dtype)
        self.end_ns = t1_ns
        self.start_ns = max(self.start_ns, self.end_ns - self.span_ns)
        self.events = window_slice(self.events, self.start_ns, self.end_ns)
        return joined

    @property
    def covered_ns(self) -> int:
        """How much of the span the history reaches back (since the stream's start or last reset)."""
        return self.end_ns - self.start_ns

    def latest(self) -> tuple[np.ndarray, int, int]:
        """(events, t0_ns, t1_ns) of the held stretch, at most `span_ns` ending at the last window's end."""
        if self.events is None:
            raise ValueError("the event history is empty: add a window first")
        return self.events, self.start_ns, self.end_ns
