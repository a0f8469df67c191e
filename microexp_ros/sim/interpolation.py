"""Raising a video's frame rate by optical flow, so fast small motions give plausible event timing.

Events come from brightness changes at each pixel; between two 15-30 fps frames a moving edge jumps several
pixels, and plain cross-fading would make every pixel on its path change at once. Instead, Farneback flow is
computed both ways per frame pair and intermediate frames are warped along it (the linear flow combination of
Super-SloMo, without its learned refinement), so an edge sweeps across the pixels in between.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

MAX_SEGMENTS_PER_PAIR = 64  # bound for scene cuts, where "motion" is meaningless and huge


def _to_u8(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Display-encode a pair of linear frames with one common scale (flow needs 8-bit, gamma-like input)."""
    scale = max(float(np.percentile(a, 99.5)), float(np.percentile(b, 99.5)), 1e-6)
    enc = [np.clip(np.sqrt(np.clip(f / scale, 0.0, 1.0)) * 255.0, 0, 255).astype(np.uint8) for f in (a, b)]
    return enc[0], enc[1]


def pair_flow(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense Farneback flow a->b and b->a (float32 [H, W, 2], pixels) between two linear frames."""
    ua, ub = _to_u8(a, b)
    params = dict(pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    return (cv2.calcOpticalFlowFarneback(ua, ub, None, **params),
            cv2.calcOpticalFlowFarneback(ub, ua, None, **params))


def _warp(frame: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """frame sampled at x + flow(x) (backward warp, bilinear, replicated border)."""
    maps = grid + flow
    return cv2.remap(frame, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def pixel_grid(height: int, width: int) -> np.ndarray:
    """float32 [H, W, 2] of each pixel's (x, y): the identity map for cv2.remap."""
    return np.dstack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))


def interpolate(a: np.ndarray, b: np.ndarray, flow_ab: np.ndarray, flow_ba: np.ndarray, alpha: float,
                grid: np.ndarray | None = None) -> np.ndarray:
    """The frame a fraction alpha of the way from a to b, warped along the flow and blended."""
    if grid is None:
        grid = pixel_grid(*a.shape)
    # flow from the intermediate frame back to a and on to b (Jiang et al. 2018, eq. 4)
    f_ta = -(1.0 - alpha) * alpha * flow_ab + alpha * alpha * flow_ba
    f_tb = (1.0 - alpha) ** 2 * flow_ab - alpha * (1.0 - alpha) * flow_ba
    out = (1.0 - alpha) * _warp(a, f_ta.astype(np.float32), grid) + alpha * _warp(b, f_tb.astype(np.float32), grid)
    return out.astype(np.float32)


def iter_upsampled(frames: Iterable[tuple[int, np.ndarray]], target_rate_hz: float,
                   max_motion_px: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(t_ns, frame) pairs at >= target_rate_hz: the input frames plus flow-interpolated ones in between.

    With max_motion_px, a pair whose 99th-percentile flow exceeds it gets more intermediates, so motion per
    output frame stays about that small (v2e's auto timestamp resolution), up to MAX_SEGMENTS_PER_PAIR.
    Lazy, so long videos do not need every intermediate frame in memory.
    """
    if not target_rate_hz > 0:
        raise ValueError(f"target_rate_hz must be > 0, got {target_rate_hz}")
    if max_motion_px is not None and not max_motion_px > 0:
        raise ValueError(f"max_motion_px must be > 0, got {max_motion_px}")
    prev: tuple[int, np.ndarray] | None = None
    for t_ns, frame in frames:
        t_ns, frame = int(t_ns), np.asarray(frame, dtype=np.float32)
        if frame.ndim != 2:
            raise ValueError(f"frames must be 2-D [H, W] luminance, got shape {frame.shape}")
        if prev is None:
            yield t_ns, frame
            prev = (t_ns, frame)
            continue
        t0, f0 = prev
        if t_ns <= t0:
            raise ValueError(f"frame times must increase: got t={t_ns} ns after t={t0} ns")
        if frame.shape != f0.shape:
            raise ValueError(f"frame shape changed from {f0.shape} to {frame.shape}")
        segments = math.ceil((t_ns - t0) * target_rate_hz * 1e-9 - 1e-9)
        if segments > 1 or max_motion_px is not None:
            flow_ab, flow_ba = pair_flow(f0, frame)
            if max_motion_px is not None:
                motion = float(np.percentile(np.hypot(flow_ab[..., 0], flow_ab[..., 1]), 99))
                segments = max(segments, math.ceil(motion / max_motion_px))
            segments = min(segments, MAX_SEGMENTS_PER_PAIR)
            grid = pixel_grid(*frame.shape)
            for j in range(1, segments):
                yield t0 + (t_ns - t0) * j // segments, interpolate(f0, frame, flow_ab, flow_ba, j / segments, grid)
        yield t_ns, frame
        prev = (t_ns, frame)


def upsample_frames(frames: np.ndarray, times: np.ndarray, target_rate_hz: float,
                    max_motion_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Array form of iter_upsampled: frames [N, H, W] at times [N] ns -> (frames [M, H, W], times [M])."""
    frames, times = np.asarray(frames), np.asarray(times)
    if frames.ndim != 3 or times.ndim != 1 or len(frames) != len(times) or len(frames) == 0:
        raise ValueError(f"need frames [N, H, W] and times [N] with N > 0, got {frames.shape} and {times.shape}")
    out = list(iter_upsampled(zip(times.tolist(), frames), target_rate_hz, max_motion_px))
    return np.stack([f for _, f in out]), np.array([t for t, _ in out], dtype=np.int64)
