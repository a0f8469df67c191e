"""An event camera model that turns linear-luminance frames into DVS events (the ESIM / v2e pixel model).

Each pixel low-passes its log intensity (photoreceptor bandwidth proportional to brightness, as in v2e),
compares it with a memorised reference and emits an ON (OFF) event each time the difference reaches its own
threshold C+ (-C-), moving the reference by that threshold. Thresholds vary per pixel (Gaussian mismatch).
Between two input frames the log intensity is interpolated linearly and evaluated at an internal rate; events
inside an internal step get timestamps interpolated along the signal, so a change spanning several thresholds
gives several evenly spread events. A refractory period defers a crossing until the pixel may fire again
(it fires then if the signal is still beyond the threshold). Leak drifts the reference down so pixels emit
slow ON events in a static scene; shot noise is a Poisson process per pixel whose rate grows as the light
falls. Shot-noise events do not move the reference (they are read-out noise, not signal); all events of one
pixel respect the refractory period. Bandwidth and shot-noise rate are set from the intensity at both frames
and interpolated linearly in between, like the signal.

Units: frames are float [H, W] linear luminance with 1.0 = a normally lit face; times are int ns.
Per-pixel randomness comes from per-pixel splitmix64 streams seeded from `seed`, so output depends only on
seed and input (not on call chunking of the pixels or threads).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import cv2
import numba
import numpy as np

from microexp_ros.events.array import empty_events

BLOCKS = 32  # parallel work units (contiguous pixel ranges)


@dataclass(frozen=True)
class SensorConfig:
    """Pixel model parameters; defaults are v2e's (SensorsINI/v2e v2e_args.py) unless noted.

    threshold_*: contrast thresholds in log_e units; threshold_sigma: per-pixel Gaussian mismatch of both.
    refractory_ns: minimum time between two events of one pixel (v2e 0.5 ms).
    leak_rate_hz: ON leak events per pixel per second in a static scene (v2e "noisy" preset 0.1 Hz), with
    per-pixel jitter leak_jitter_fraction.
    shot_noise_rate_hz: shot-noise events per pixel per second at intensity 1.0; the rate scales as
    1 / max(intensity, dark_intensity), so dim light (0.05) gives 20x, very dim (0.01) 100x (cf. v2e "noisy" 5 Hz).
    cutoff_hz_bright: photoreceptor 3 dB bandwidth at intensity 1.0 (v2e 300 Hz); it scales with
    max(intensity, dark_intensity), so a dim pixel is slower. 0 disables the low-pass (ideal pixel).
    log_eps: offset inside log(intensity + log_eps) (ESIM), keeps black pixels finite.
    internal_rate_hz: rate at which the interpolated signal is evaluated between input frames.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03
    threshold_min: float = 0.01
    refractory_ns: int = 500_000
    leak_rate_hz: float = 0.1
    leak_jitter_fraction: float = 0.1
    shot_noise_rate_hz: float = 0.1
    dark_intensity: float = 0.005
    cutoff_hz_bright: float = 300.0
    log_eps: float = 1e-3
    internal_rate_hz: float = 1000.0

    def __post_init__(self) -> None:
        positive = ("threshold_on", "threshold_off", "threshold_min", "dark_intensity", "log_eps",
                    "internal_rate_hz")
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"SensorConfig.{f.name} must be a finite number, got {value!r}")
            if value < 0 or (f.name in positive and value == 0):
                need = "> 0" if f.name in positive else ">= 0"
                raise ValueError(f"SensorConfig.{f.name} must be {need}, got {value!r}")


# ---------------------------------------------------------------------------------------------------------
# numba kernel


@numba.njit(inline="always")
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """One splitmix64 step: (next state, uniform in [0, 1))."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def _substep_tables(t0, t1, n_sub, shot_hz):
    """Per-substep constants shared by all pixels: edges, interpolation weight, 1/dt, shot-noise scale."""
    bounds = np.empty(n_sub + 1, np.int64)
    for k in range(n_sub + 1):
        bounds[k] = t0 + (t1 - t0) * k // n_sub
    alphas = np.empty(n_sub)
    inv_dt = np.empty(n_sub)
    shot_dt = np.empty(n_sub)
    for k in range(n_sub):
        dt = float(bounds[k + 1] - bounds[k])
        alphas[k] = (k + 1) / n_sub
        inv_dt[k] = 1.0 / dt
        shot_dt[k] = shot_hz * dt * 1e-9
    return bounds, alphas, inv_dt, shot_dt


@numba.njit(cache=True, parallel=True)
def _simulate_interval(lin0, lin1, gain0, gain1, inv0, inv1, t0, t1, n_sub, state, new_state, c_on, c_off,
                       leak, refractory, filtered, shot_hz, out_t, out_i, out_p, out_k, n_blocks):
    """Advance every pixel from the frame at t0 to the frame at t1 (see _interval_coefficients for the inputs).

    lin*: input log intensity; gain*: low-pass update weight per substep; inv*: 1 / intensity (shot-noise
    scale), each at both frames and interpolated linearly in between. state = (ref, lp, last, budget, rng) is
    read and new_state written, so the caller can retry with bigger buffers when a block overflows. leak is
    in log units per ns. Pixels are cut into n_blocks contiguous blocks run in parallel; block j writes its
    events pixel-major from out_*[j * cap] (cap = out_t.size // n_blocks) with their substep in out_k, and
    returns its event count in counts[j], or -1 when its share of the buffers was too small.
    """
    tables = _substep_tables(t0, t1, n_sub, shot_hz)
    counts = np.empty(n_blocks, np.int64)
    cap = out_t.size // n_blocks
    n_pix = lin0.size
    for j in numba.prange(n_blocks):
        counts[j] = _simulate_pixels(j * n_pix // n_blocks, (j + 1) * n_pix // n_blocks, lin0, lin1, gain0,
                                     gain1, inv0, inv1, n_sub, tables, state, new_state, c_on, c_off, leak,
                                     refractory, filtered, shot_hz, out_t, out_i, out_p, out_k, j * cap, cap)
    return counts


@numba.njit(cache=True)
def _simulate_pixels(lo, hi, lin0, lin1, gain0, gain1, inv0, inv1, n_sub, tables, state, new_state, c_on,
                     c_off, leak, refractory, filtered, shot_hz, out_t, out_i, out_p, out_k, start, capacity):
    """The pixel model for pixels lo..hi-1; events go to out_*[start:start + capacity]; returns count or -1.

    Each pixel runs through all substeps with its state in registers; a substep where the signal stays
    inside the threshold band and no shot noise is due (the usual case) costs a few multiply-adds, and only
    the others take the event loop (_pixel_step).
    """
    bounds, alphas, inv_dt, shot_dt = tables
    ref, lp, last, budget, rng = state
    new_ref, new_lp, new_last, new_budget, new_rng = new_state
    n = 0
    for i in range(lo, hi):
        new_last[i], new_rng[i] = last[i], rng[i]
        r, lp_a, b = ref[i], lp[i], budget[i]
        con, coff, lk = c_on[i], c_off[i], leak[i]
        l0, g0, q0 = lin0[i], gain0[i], inv0[i]
        dl, dg, dq = lin1[i] - l0, gain1[i] - g0, inv1[i] - q0
        for k in range(n_sub):
            dt = float(bounds[k + 1] - bounds[k])
            alpha = alphas[k]
            target = l0 + dl * alpha
            lp_b = lp_a + (g0 + dg * alpha) * (target - lp_a) if filtered else target
            rate_dt = shot_dt[k] * (q0 + dq * alpha)  # expected shot events in this step
            b -= rate_dt
            # d(s) = lp(s) - ref(s) is linear within the step: inside the band at both ends = no crossing
            base = lp_a - r
            end = base + ((lp_b - lp_a) * inv_dt[k] + lk) * dt
            if not (-coff < base < con and -coff < end < con and b > 0.0):
                new_ref[i], new_budget[i] = r, b
                n = _pixel_step(i, k, bounds[k], bounds[k + 1], lp_a, lp_b, rate_dt, inv_dt[k], new_state, con,
                                coff, lk, refractory, shot_hz, out_t, out_i, out_p, out_k, start, capacity, n)
                if n < 0:
                    return -1
                r, b = new_ref[i], new_budget[i]
            r -= lk * dt
            lp_a = lp_b
        new_ref[i], new_lp[i], new_budget[i] = r, lp_a, b
    return n


@numba.njit(cache=True)
def _pixel_step(i, k, ta, tb, lp_a, lp_b, rate_dt, inv_dt, st, con, coff, lk, refractory, shot_hz,
                out_t, out_i, out_p, out_k, start, capacity, n):
    """Events of pixel i in substep k (ta, tb]: shot noise, then threshold crossings; returns n or -1 (full).

    Reads and updates the pixel's reference, last event time, noise hazard and random stream in st; the
    reference leak of the step is applied by the caller afterwards.
    """
    ref, _, last, budget, rng = st
    r, last_i, b, seed = ref[i], last[i], budget[i], rng[i]
    dt = float(tb - ta)
    # shot noise first, so later signal events respect the refractory period after it
    if shot_hz > 0.0:
        while b <= 0.0:
            s = dt * (1.0 + b / rate_dt)
            te = ta + max(1, min(int(s + 0.5), tb - ta))
            seed, u = _uniform(seed)
            if te - last_i >= refractory:
                if n == capacity:
                    return -1
                out_t[start + n] = te
                out_i[start + n] = i
                out_p[start + n] = 1 if u < 0.5 else 0
                out_k[start + n] = k
                n += 1
                last_i = te
            seed, u = _uniform(seed)
            b -= math.log(1.0 - u)
    # signal: d(s) = lp(s) - ref(s), linear in s within the step (ref drifts by the leak)
    slope = (lp_b - lp_a) * inv_dt + lk
    base = lp_a - r
    s0 = 0.0
    while True:
        d = base + slope * s0
        if d >= con:
            sc, pol = s0, 1
        elif d <= -coff:
            sc, pol = s0, 0
        elif slope > 0.0:
            sc, pol = s0 + (con - d) / slope, 1
        elif slope < 0.0:
            sc, pol = s0 + (-coff - d) / slope, 0
        else:
            break
        if sc > dt:
            break
        ready = float(last_i + refractory - ta)
        se = sc
        if ready > sc:  # refractory: the crossing waits; fire only if still beyond a threshold then
            se = ready
            if se > dt:
                break
            de = base + slope * se
            if de >= con:
                pol = 1
            elif de <= -coff:
                pol = 0
            else:  # the signal came back inside the band meanwhile
                s0 = se
                continue
        if pol == 1:
            base -= con
            r += con
        else:
            base += coff
            r -= coff
        te = ta + max(1, min(int(se + 0.5), tb - ta))
        if te - last_i < refractory:  # rounding to integer ns never beats the refractory period
            te = last_i + refractory
        if n == capacity:
            return -1
        out_t[start + n] = te
        out_i[start + n] = i
        out_p[start + n] = pol
        out_k[start + n] = k
        n += 1
        last_i = te
        s0 = se
    ref[i], last[i], budget[i], rng[i] = r, last_i, b, seed
    return n


@numba.njit(cache=True)
def _time_order(t: np.ndarray, k: np.ndarray, counts: np.ndarray, cap: int, n_sub: int) -> np.ndarray:
    """Indices into the block-laid-out kernel buffers that sort the events by time.

    Buckets by substep in block (= pixel) order, O(n), then sorts each bucket stably by time, so events at
    the same ns keep pixel order and the output does not depend on threads.
    """
    n = 0
    for j in range(counts.size):
        n += counts[j]
    start = np.zeros(n_sub + 1, np.int64)
    for j in range(counts.size):
        for e in range(j * cap, j * cap + counts[j]):
            start[k[e] + 1] += 1
    for b in range(n_sub):
        start[b + 1] += start[b]
    pos = start[:n_sub].copy()
    order = np.empty(n, np.int64)
    for j in range(counts.size):
        for e in range(j * cap, j * cap + counts[j]):
            order[pos[k[e]]] = e
            pos[k[e]] += 1
    for b in range(n_sub):
        lo, hi = start[b], start[b + 1]
        if hi - lo > 1:
            seg = order[lo:hi].copy()
            order[lo:hi] = seg[np.argsort(t[seg], kind="mergesort")]
    return order


@numba.njit(cache=True)
def _exp_draws(rng: np.ndarray) -> np.ndarray:
    """One Exp(1) draw per pixel from its own stream (advancing the streams in place)."""
    out = np.empty(rng.size)
    for i in range(rng.size):
        rng[i], u = _uniform(rng[i])
        out[i] = -math.log(1.0 - u)
    return out


# ---------------------------------------------------------------------------------------------------------


class EventSimulator:
    """A width x height event sensor fed with linear-luminance frames at increasing timestamps."""

    def __init__(self, width: int, height: int, config: SensorConfig = SensorConfig(), seed: int = 0,
                 threads: int = 1) -> None:
        """threads: numba threads for the pixel loop. 1 by default: datasets are generated by parallel
        processes and the ROS graph shares the cores, where more threads only wait on each other. The events
        do not depend on it."""
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"sensor size must be positive, got width={width} height={height}")
        if not 1 <= int(threads) <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"threads must be in 1..{numba.config.NUMBA_NUM_THREADS}, got {threads}")
        self.threads = int(threads)
        if not isinstance(config, SensorConfig):
            raise ValueError(f"config must be a SensorConfig, got {type(config).__name__}")
        self.width, self.height, self.config, self.seed = int(width), int(height), config, int(seed)
        n = self.width * self.height
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.width, self.height]))
        c = config
        self.threshold_on = np.maximum(rng.normal(c.threshold_on, c.threshold_sigma, n), c.threshold_min)
        self.threshold_off = np.maximum(rng.normal(c.threshold_off, c.threshold_sigma, n), c.threshold_min)
        jitter = np.maximum(rng.normal(1.0, c.leak_jitter_fraction, n), 0.0)
        self.leak_rate_hz = c.leak_rate_hz * jitter
        self._leak = self.leak_rate_hz * self.threshold_on * 1e-9
        self._leak_phase = rng.random(n)
        self._rng_seed = rng.integers(0, 2**63, n, dtype=np.uint64)
        self._t: int | None = None

    @property
    def time_ns(self) -> int | None:
        """Time of the last frame given (None before reset)."""
        return self._t

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate a frame, area-resample it to the sensor size; return flat log intensity and intensity
        (the latter floored at dark_intensity: the dark current keeps a black pixel alive)."""
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"frame must be a 2-D [H, W] luminance array, got shape {frame.shape}")
        if frame.size == 0 or not np.issubdtype(frame.dtype, np.number):
            raise ValueError(f"frame must be a non-empty numeric array, got dtype {frame.dtype} shape {frame.shape}")
        frame = frame.astype(np.float32, copy=False)
        if not np.isfinite(frame).all():
            raise ValueError("frame contains NaN or infinite luminance values")
        if float(frame.min()) < 0.0:
            raise ValueError(f"frame luminance must be >= 0 (linear units), got min {float(frame.min())}")
        if frame.shape != (self.height, self.width):
            frame = resample(frame, self.width, self.height)
        inten = frame.astype(np.float64).ravel()
        return np.log(inten + self.config.log_eps), np.maximum(inten, self.config.dark_intensity)

    def reset(self, frame: np.ndarray, t_ns: int) -> None:
        """Start from `frame` at t_ns: settled photoreceptors, references at the signal, no events."""
        lin, inten = self._prepare(frame)
        self._lin, self._inten, self._t = lin, inten, int(t_ns)
        leaky = self.leak_rate_hz > 0
        # random leak phase so leak events of a uniform scene are not synchronised
        ref = lin - np.where(leaky, self._leak_phase * self.threshold_on, 0.0)
        last = np.full(lin.size, np.iinfo(np.int64).min // 2, np.int64)
        rng = self._rng_seed.copy()
        budget = _exp_draws(rng)  # shot-noise hazard left before each pixel's next shot event
        self._state = (ref, lin.copy(), last, budget, rng)
        self._spare = tuple(np.empty_like(a) for a in self._state)
        # contiguous pixel blocks simulated in parallel; a fixed count keeps the buffer layout thread-independent
        self._blocks = min(BLOCKS, lin.size)
        self._capacity = self._blocks * max(1024, lin.size // self._blocks)

    def step(self, frame: np.ndarray, t_ns: int) -> np.ndarray:
        """Events in (t_prev, t_ns] for the luminance moving linearly (in log) to `frame`; t-sorted."""
        if self._t is None:
            raise RuntimeError("EventSimulator.step called before reset(frame, t_ns)")
        t_ns = int(t_ns)
        if t_ns <= self._t:
            raise ValueError(f"frame times must increase: got t={t_ns} ns after t={self._t} ns")
        lin, inten = self._prepare(frame)
        c = self.config
        n_sub = max(1, math.ceil((t_ns - self._t) * c.internal_rate_hz * 1e-9 - 1e-9))
        coeffs = interval_coefficients(c, self._inten, inten, t_ns - self._t, n_sub)
        while True:  # the kernel writes new state into spare buffers, so a full event buffer just retries
            out_t = np.empty(self._capacity, np.int64)
            out_i = np.empty(self._capacity, np.int64)
            out_p = np.empty(self._capacity, np.uint8)
            out_k = np.empty(self._capacity, np.int32)
            outer_threads = numba.get_num_threads()
            numba.set_num_threads(self.threads)
            try:
                counts = _simulate_interval(
                    self._lin, lin, *coeffs, self._t, t_ns, n_sub, self._state, self._spare,
                    self.threshold_on, self.threshold_off, self._leak, int(c.refractory_ns),
                    c.cutoff_hz_bright > 0.0, float(c.shot_noise_rate_hz), out_t, out_i, out_p, out_k,
                    self._blocks)
            finally:
                numba.set_num_threads(outer_threads)
            if (counts >= 0).all():
                break
            self._capacity *= 4
        self._state, self._spare = self._spare, self._state
        self._lin, self._inten, self._t = lin, inten, t_ns
        order = _time_order(out_t, out_k, counts, self._capacity // self._blocks, n_sub)
        events = empty_events(order.size)
        events["t"] = out_t[order]
        idx = out_i[order]
        events["x"] = idx % self.width
        events["y"] = idx // self.width
        events["p"] = out_p[order]
        return events

    def simulate(self, frames: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
        """All events of a (t_ns, frame) sequence: reset on the first frame, step through the rest; t-sorted."""
        chunks = []
        first = True
        for t_ns, frame in frames:
            if first:
                self.reset(frame, t_ns)
                first = False
            else:
                chunks.append(self.step(frame, t_ns))
        if first:
            raise ValueError("simulate needs at least one (t_ns, frame) pair")
        return np.concatenate(chunks) if chunks else empty_events()


def interval_coefficients(config: SensorConfig, inten0: np.ndarray, inten1: np.ndarray, span_ns: int,
                          n_sub: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel low-pass weights and shot-noise scales at both frames of an interval, for the kernel.

    The low-pass weight of one substep is x / (1 + x) with x = 2 pi f_c dt (implicit Euler, stable for any
    step) and f_c = cutoff_hz_bright x intensity; the shot-noise scale is 1 / intensity. Both are computed at
    the two frames and interpolated linearly over the substeps, like the intensity itself.
    """
    x = 2.0 * math.pi * config.cutoff_hz_bright * (span_ns / n_sub) * 1e-9
    g0, g1 = x * inten0, x * inten1
    return g0 / (1.0 + g0), g1 / (1.0 + g1), 1.0 / inten0, 1.0 / inten1


def resample(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-resample a float frame to width x height (area averaging down, bilinear up)."""
    h, w = frame.shape[:2]
    down = width <= w and height <= h
    return cv2.resize(frame, (int(width), int(height)), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)


__all__ = ["EventSimulator", "SensorConfig", "interval_coefficients", "resample"]
