"""Speed of the event simulator (simulated seconds per wall second) against a plain-numpy implementation.

The numpy reference runs the same pixel model vectorised over pixels, one internal substep at a time, with
the same per-pixel random streams, so it produces the very same events; it is also the test oracle for the
numba kernel. The scene is a smooth texture drifting and breathing in brightness, frames at 30 fps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from microexp_ros.events.array import empty_events
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig, interval_coefficients

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _uniform(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised splitmix64 step: (next states, uniforms in [0, 1))."""
    state = state + _GOLDEN
    z = (state ^ (state >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return state, (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def reference_step(sim: EventSimulator, frame: np.ndarray, t_ns: int) -> np.ndarray:
    """EventSimulator.step computed with numpy over pixels instead of the numba kernel (same events)."""
    if sim.time_ns is None:
        raise RuntimeError("reference_step called before reset(frame, t_ns)")
    t_ns = int(t_ns)
    if t_ns <= sim.time_ns:
        raise ValueError(f"frame times must increase: got t={t_ns} ns after t={sim.time_ns} ns")
    c = sim.config
    lin1, inten1 = sim._prepare(frame)
    lin0, inten0, t0 = sim._lin, sim._inten, sim.time_ns
    ref, lp_a, last, budget, seed = (a.copy() for a in sim._state)
    c_on, c_off, leak = sim.threshold_on, sim.threshold_off, sim._leak
    refr = int(c.refractory_ns)
    n_sub = max(1, math.ceil((t_ns - t0) * c.internal_rate_hz * 1e-9 - 1e-9))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def emit(times: np.ndarray, pix: np.ndarray, pol: np.ndarray) -> None:
        out.append((times.copy(), pix.copy(), pol.astype(np.uint8)))

    g0, g1, q0, q1 = interval_coefficients(c, inten0, inten1, t_ns - t0, n_sub)
    dl, dg, dq = lin1 - lin0, g1 - g0, q1 - q0
    for k in range(n_sub):
        ta = t0 + (t_ns - t0) * k // n_sub
        tb = t0 + (t_ns - t0) * (k + 1) // n_sub
        dt = float(tb - ta)
        alpha = (k + 1) / n_sub
        target = lin0 + dl * alpha
        lp_b = lp_a + (g0 + dg * alpha) * (target - lp_a) if c.cutoff_hz_bright > 0.0 else target
        rate_dt = (c.shot_noise_rate_hz * dt * 1e-9) * (q0 + dq * alpha)
        budget -= rate_dt
        if c.shot_noise_rate_hz > 0.0:
            pix = np.flatnonzero(budget <= 0.0)
            while pix.size:
                s = dt * (1.0 + budget[pix] / rate_dt[pix])
                te = ta + np.clip(np.floor(s + 0.5).astype(np.int64), 1, tb - ta)
                seed[pix], u = _uniform(seed[pix])
                ok = te - last[pix] >= refr
                emit(te[ok], pix[ok], u[ok] < 0.5)
                last[pix[ok]] = te[ok]
                seed[pix], u = _uniform(seed[pix])
                budget[pix] -= np.log(1.0 - u)
                pix = pix[budget[pix] <= 0.0]
        slope = (lp_b - lp_a) * (1.0 / dt) + leak
        base = lp_a - ref
        end = base + slope * dt
        inside = (-c_off < base) & (base < c_on) & (-c_off < end) & (end < c_on)
        pix = np.flatnonzero(~inside)
        s0 = np.zeros(pix.size)
        while pix.size:
            sl, bs, con, coff = slope[pix], base[pix], c_on[pix], c_off[pix]
            d = bs + sl * s0
            with np.errstate(divide="ignore", invalid="ignore"):
                sc = np.where((d >= con) | (d <= -coff), s0, np.where(
                    sl > 0, s0 + (con - d) / sl, np.where(sl < 0, s0 + (-coff - d) / sl, np.inf)))
            on = (d >= con) | ((d > -coff) & (sl > 0))
            ready = (last[pix] + refr - ta).astype(np.float64)
            deferred = ready > sc
            se = np.where(deferred, ready, sc)
            go = (sc <= dt) & (se <= dt)
            pix, s0, se, sl, con, coff, on, deferred = (
                a[go] for a in (pix, s0, se, sl, con, coff, on, deferred))
            de = base[pix] + sl * se
            on = np.where(deferred, de >= con, on)
            fire = ~deferred | (de >= con) | (de <= -coff)
            step = np.where(fire, np.where(on, con, -coff), 0.0)
            base[pix] -= step
            ref[pix] += step
            fp, fse = pix[fire], se[fire]
            te = ta + np.clip(np.floor(fse + 0.5).astype(np.int64), 1, tb - ta)
            te = np.maximum(te, last[fp] + refr)
            emit(te, fp, on[fire])
            last[fp] = te
            s0 = se
        ref -= leak * dt
        lp_a = lp_b
    sim._state = (ref, lp_a, last, budget, seed)
    sim._lin, sim._inten, sim._t = lin1, inten1, t_ns
    if not out:
        return empty_events()
    t = np.concatenate([o[0] for o in out])
    pix = np.concatenate([o[1] for o in out])
    pol = np.concatenate([o[2] for o in out])
    order = np.lexsort((pix, t))
    events = empty_events(t.size)
    events["t"], events["x"], events["y"], events["p"] = (
        t[order], pix[order] % sim.width, pix[order] // sim.width, pol[order])
    return events


def bench_scene(width: int, height: int, fps: float, seconds: float, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """(t_ns, frame) pairs: a smooth random texture drifting ~40 px/s and breathing +-20 % in brightness."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((height + 80, width + 80)).astype(np.float32), (0, 0), 4.0)
    tex = 0.2 + 0.8 * (tex - tex.min()) / (tex.max() - tex.min())
    frames = []
    for i in range(int(round(seconds * fps)) + 1):
        t = i / fps
        dx, dy = 40 + 35 * math.sin(2 * math.pi * 0.5 * t), 40 + 20 * math.cos(2 * math.pi * 0.3 * t)
        m = np.float32([[1, 0, -dx], [0, 1, -dy]])
        frame = cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_LINEAR)
        frames.append((int(round(t * 1e9)), frame * (1.0 + 0.2 * math.sin(2 * math.pi * 1.5 * t))))
    return frames


@dataclass
class SimBench:
    width: int
    height: int
    internal_rate_hz: float
    simulated_s: float
    wall_s: float
    cpu_s: float          # process CPU time, all threads: tells a loaded machine from a slow simulator
    threads: int
    events: int
    reference_simulated_s: float
    reference_wall_s: float
    reference_cpu_s: float

    @property
    def realtime_factor(self) -> float:
        return self.simulated_s / self.wall_s

    @property
    def reference_realtime_factor(self) -> float:
        return self.reference_simulated_s / self.reference_wall_s


def run_bench(width: int = 346, height: int = 260, internal_rate_hz: float = 1000.0, seconds: float = 2.0,
              reference_seconds: float = 0.2, fps: float = 30.0, seed: int = 0, threads: int = 1) -> SimBench:
    """Time the numba simulator over `seconds` and the numpy reference over `reference_seconds` (same scene)."""
    if seconds <= 0 or reference_seconds <= 0:
        raise ValueError(f"seconds and reference_seconds must be > 0, got {seconds} and {reference_seconds}")
    config = SensorConfig(internal_rate_hz=internal_rate_hz)
    frames = bench_scene(width, height, fps, seconds, seed)
    warm = EventSimulator(width, height, config, seed, threads)  # JIT compile / cache load outside the timing
    warm.simulate(frames[:2])
    sim = EventSimulator(width, height, config, seed, threads)
    start, cpu = time.perf_counter(), time.process_time()
    n_events = sim.simulate(frames).size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n_ref = max(2, int(round(reference_seconds * fps)) + 1)
    ref = EventSimulator(width, height, config, seed)
    start, ref_cpu = time.perf_counter(), time.process_time()
    ref.reset(frames[0][1], frames[0][0])
    for t_ns, frame in frames[1:n_ref]:
        reference_step(ref, frame, t_ns)
    ref_wall, ref_cpu = time.perf_counter() - start, time.process_time() - ref_cpu
    return SimBench(width, height, internal_rate_hz, frames[-1][0] * 1e-9, wall, cpu, threads,
                    n_events, frames[n_ref - 1][0] * 1e-9, ref_wall, ref_cpu)
