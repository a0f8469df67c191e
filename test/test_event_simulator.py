"""The event camera model against analytic cases: threshold counts, noise rates, refractory, bandwidth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from microexp_ros.bench.sim import bench_scene, reference_step
from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig
from microexp_ros.sim.source import SimulatedEventSource, sensor_luminance
from microexp_ros.sim.video import bgr_to_linear

MS = 1_000_000
IDEAL = SensorConfig(threshold_sigma=0.0, refractory_ns=0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0,
                     cutoff_hz_bright=0.0)


def _per_pixel(events: np.ndarray, width: int, height: int, polarity: int | None = None) -> np.ndarray:
    ev = events if polarity is None else events[events["p"] == polarity]
    idx = ev["y"].astype(np.int64) * width + ev["x"]
    return np.bincount(idx, minlength=width * height).reshape(height, width)


def _log_steps(width: int, height: int) -> np.ndarray:
    """Log-intensity steps 0.05..1.3 across the image, kept away from integer multiples of the thresholds."""
    steps = np.linspace(0.05, 1.3, width * height).reshape(height, width)
    return steps


def _stepped(base: float, log_step: np.ndarray, eps: float) -> np.ndarray:
    """Intensity whose log(I + eps) differs from log(base + eps) by exactly log_step."""
    return (base + eps) * np.exp(log_step) - eps


def test_step_gives_floor_of_log_step_over_threshold_per_pixel() -> None:
    w, h = 16, 8
    config = SensorConfig(threshold_sigma=0.03, refractory_ns=0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0,
                          cutoff_hz_bright=0.0)
    sim = EventSimulator(w, h, config, seed=3)
    steps = _log_steps(w, h)
    sim.reset(np.ones((h, w)), 0)
    events = sim.step(_stepped(1.0, steps, config.log_eps), 1 * MS)
    ratio = steps / sim.threshold_on.reshape(h, w)
    clear = np.abs(ratio - np.round(ratio)) > 1e-6
    expected = np.floor(ratio)
    assert np.array_equal(_per_pixel(events, w, h)[clear], expected[clear])
    assert events["p"].all()
    assert expected.max() >= 5 and expected.min() == 0


def test_multiple_events_are_spread_linearly_within_the_step() -> None:
    sim = EventSimulator(1, 1, IDEAL)
    sim.reset(np.ones((1, 1)), 10 * MS)
    delta = 0.9  # 4 crossings of C = 0.2 along a linear 1 ms ramp
    events = sim.step(_stepped(1.0, np.full((1, 1), delta), IDEAL.log_eps), 11 * MS)
    expected = 10 * MS + np.round(np.arange(1, 5) * 0.2 / delta * MS)
    assert np.abs(events["t"] - expected).max() <= 1


def test_on_off_symmetry_for_up_and_down_steps() -> None:
    w, h = 16, 8
    steps = _log_steps(w, h)
    eps = IDEAL.log_eps
    up, down = EventSimulator(w, h, IDEAL), EventSimulator(w, h, IDEAL)
    base = np.full((h, w), 0.5)
    up.reset(base, 0)
    down.reset(base, 0)
    ev_up = up.step(_stepped(0.5, steps, eps), MS)
    ev_down = down.step(_stepped(0.5, -steps, eps), MS)
    assert ev_up["p"].all() and not ev_down["p"].any()
    assert np.array_equal(_per_pixel(ev_up, w, h), _per_pixel(ev_down, w, h))
    assert np.abs(np.sort(ev_up["t"]) - np.sort(ev_down["t"])).max() <= 1  # same crossing times (+-1 ns rounding)


def test_static_scene_without_noise_gives_no_events() -> None:
    config = SensorConfig(leak_rate_hz=0.0, shot_noise_rate_hz=0.0)  # mismatch, low-pass, refractory on
    sim = EventSimulator(40, 30, config, seed=1)
    frame = np.random.default_rng(0).uniform(0.01, 2.0, (30, 40))
    events = sim.simulate((i * 33 * MS, frame) for i in range(31))
    assert events.size == 0


def test_leak_rate_in_a_static_scene() -> None:
    rate, seconds, w, h = 2.0, 3.0, 32, 32
    config = SensorConfig(leak_rate_hz=rate, leak_jitter_fraction=0.0, shot_noise_rate_hz=0.0)
    sim = EventSimulator(w, h, config, seed=2)
    frame = np.full((h, w), 0.7)
    events = sim.simulate((int(i * 0.1e9), frame) for i in range(int(seconds * 10) + 1))
    assert events["p"].all()  # leak drifts the reference down: ON events only
    expected = rate * seconds * w * h
    # deterministic drift from a random phase: each pixel fires floor or ceil of rate * seconds
    assert abs(events.size - expected) <= w * h * 0.1
    counts = _per_pixel(events, w, h)
    assert counts.min() >= math.floor(rate * seconds) - 1 and counts.max() <= math.ceil(rate * seconds) + 1


def test_shot_noise_rate_and_its_growth_in_the_dark() -> None:
    rate, seconds, w, h = 1.0, 4.0, 32, 32
    config = SensorConfig(leak_rate_hz=0.0, shot_noise_rate_hz=rate, refractory_ns=0)
    counts = {}
    for brightness in (1.0, 0.1):
        sim = EventSimulator(w, h, config, seed=4)
        frame = np.full((h, w), brightness)
        events = sim.simulate((int(i * 0.05e9), frame) for i in range(int(seconds * 20) + 1))
        counts[brightness] = events.size
        expected = rate / brightness * seconds * w * h
        assert abs(events.size - expected) <= 4 * math.sqrt(expected)  # Poisson, 4 sigma
        on = int(events["p"].sum())
        assert abs(on - events.size / 2) <= 4 * math.sqrt(events.size / 4)
    assert counts[0.1] > 8 * counts[1.0]


def test_refractory_period_is_respected_per_pixel() -> None:
    refractory = 2 * MS
    config = SensorConfig(refractory_ns=refractory, shot_noise_rate_hz=5.0, leak_rate_hz=1.0)
    frames = bench_scene(48, 32, fps=30.0, seconds=0.5)
    events = EventSimulator(48, 32, config, seed=5).simulate(frames)
    assert events.size > 1000
    order = np.lexsort((events["t"], events["y"], events["x"]))
    ev = events[order]
    same_pixel = (ev["x"][1:] == ev["x"][:-1]) & (ev["y"][1:] == ev["y"][:-1])
    gaps = np.diff(ev["t"])[same_pixel]
    assert gaps.min() >= refractory
    # the same scene without refractory fires pixels faster than that
    free = EventSimulator(48, 32, SensorConfig(refractory_ns=0), seed=5).simulate(frames)
    free = free[np.lexsort((free["t"], free["y"], free["x"]))]
    same = (free["x"][1:] == free["x"][:-1]) & (free["y"][1:] == free["y"][:-1])
    assert np.diff(free["t"])[same].min() < refractory


def test_dim_pixels_respond_slower_than_bright_ones() -> None:
    config = SensorConfig(threshold_sigma=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0, refractory_ns=0)
    w, h = 8, 2  # row 0 bright, row 1 dim, same log step
    before = np.array([[1.0] * w, [0.02] * w])
    sim = EventSimulator(w, h, config)
    sim.reset(before, 0)
    frames = [(1_000, before * math.e)] + [(k * MS, before * math.e) for k in range(1, 301)]
    events = np.concatenate([sim.step(f, t) for t, f in frames])
    first = {row: events["t"][events["y"] == row].min() for row in (0, 1)}
    # bright: 300 Hz bandwidth (tau 0.5 ms); dim: 50x lower (tau 27 ms)
    assert first[0] < 2 * MS
    assert first[1] > 5 * first[0]
    log_step = np.log(before * math.e + config.log_eps) - np.log(before + config.log_eps)
    expected = np.floor(log_step / config.threshold_on)  # both rows end up signalling the whole step
    assert np.array_equal(_per_pixel(events, w, h), expected)


def test_same_seed_same_events_other_seed_other_events() -> None:
    frames = bench_scene(40, 30, fps=30.0, seconds=0.3)
    a = EventSimulator(40, 30, SensorConfig(shot_noise_rate_hz=2.0), seed=7).simulate(frames)
    b = EventSimulator(40, 30, SensorConfig(shot_noise_rate_hz=2.0), seed=7).simulate(frames)
    c = EventSimulator(40, 30, SensorConfig(shot_noise_rate_hz=2.0), seed=8).simulate(frames)
    assert a.size > 1000 and np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_events_are_time_sorted_inside_each_step_interval() -> None:
    frames = bench_scene(40, 30, fps=30.0, seconds=0.2)
    sim = EventSimulator(40, 30, SensorConfig(shot_noise_rate_hz=1.0), seed=0)
    sim.reset(frames[0][1], frames[0][0])
    prev = frames[0][0]
    for t_ns, frame in frames[1:]:
        ev = sim.step(frame, t_ns)
        assert ev.dtype == EVENT_DTYPE
        assert (np.diff(ev["t"]) >= 0).all()
        assert ev.size == 0 or (ev["t"].min() > prev and ev["t"].max() <= t_ns)
        assert ev.size == 0 or (ev["x"].max() < 40 and ev["y"].max() < 30)
        prev = t_ns


def test_numba_kernel_matches_the_numpy_reference() -> None:
    frames = bench_scene(36, 20, fps=30.0, seconds=0.2)
    config = SensorConfig(shot_noise_rate_hz=3.0, leak_rate_hz=0.5, refractory_ns=300_000)
    fast, slow = EventSimulator(36, 20, config, seed=9), EventSimulator(36, 20, config, seed=9)
    fast.reset(frames[0][1], frames[0][0])
    slow.reset(frames[0][1], frames[0][0])
    total = 0
    for t_ns, frame in frames[1:]:
        a, b = fast.step(frame, t_ns), reference_step(slow, frame, t_ns)
        assert np.array_equal(a, b)
        total += a.size
    assert total > 500


def test_frames_of_another_size_are_area_resampled() -> None:
    frames = bench_scene(80, 60, fps=30.0, seconds=0.1)
    small = [(t, f.reshape(30, 2, 40, 2).mean(axis=(1, 3))) for t, f in frames]
    a = EventSimulator(40, 30, IDEAL).simulate(frames)
    b = EventSimulator(40, 30, IDEAL).simulate(small)
    assert a.size > 100
    # float32 area averaging vs float64 mean: allow a few threshold-edge differences
    assert abs(a.size - b.size) <= 0.01 * a.size


@pytest.mark.parametrize("bad", [
    np.ones((3, 4, 3)), np.full((3, 4), np.nan), np.full((3, 4), -0.1), np.zeros((0, 4)),
])
def test_bad_frames_raise(bad: np.ndarray) -> None:
    sim = EventSimulator(4, 3)
    with pytest.raises(ValueError, match="frame"):
        sim.reset(bad, 0)


def test_bad_use_raises() -> None:
    sim = EventSimulator(4, 3)
    with pytest.raises(RuntimeError, match="before reset"):
        sim.step(np.ones((3, 4)), 1)
    sim.reset(np.ones((3, 4)), 100)
    with pytest.raises(ValueError, match="increase"):
        sim.step(np.ones((3, 4)), 100)
    with pytest.raises(ValueError, match="threshold_on"):
        SensorConfig(threshold_on=-0.2)
    with pytest.raises(ValueError, match="refractory_ns"):
        SensorConfig(refractory_ns=-1)
    with pytest.raises(ValueError, match="sensor size"):
        EventSimulator(0, 3)
    with pytest.raises(ValueError, match="at least one"):
        sim.simulate([])


def test_simulated_source_yields_bounded_packets_of_the_same_events() -> None:
    frames = bench_scene(40, 30, fps=30.0, seconds=0.2)
    config = SensorConfig(shot_noise_rate_hz=1.0)
    whole = EventSimulator(40, 30, config, seed=3).simulate(frames)
    source = SimulatedEventSource(frames, 40, 30, config, seed=3, packet_ns=MS, frame_triggers=True)
    chunks = list(source)
    t0 = frames[0][0]
    assert len(chunks) == (frames[-1][0] - t0) // MS + 1
    for i, (ev, trig) in enumerate(chunks):
        assert ev.size == 0 or (ev["t"].min() >= t0 + i * MS and ev["t"].max() < t0 + (i + 1) * MS)
    assert np.array_equal(np.concatenate([c[0] for c in chunks]), whole)
    trig = np.concatenate([c[1] for c in chunks])
    assert np.array_equal(trig["t"], [t for t, _ in frames]) and trig["edge"].all()


def test_simulated_source_triggers_at_given_times_only() -> None:
    frames = bench_scene(24, 16, fps=300.0, seconds=0.1)  # e.g. 30 fps video upsampled 10x
    originals = [t for t, _ in frames[::10]]
    source = SimulatedEventSource(frames, 24, 16, packet_ns=5 * MS, trigger_times=originals)
    trig = np.concatenate([c[1] for c in source])
    assert np.array_equal(trig["t"], originals)
    bad = SimulatedEventSource(frames, 24, 16, trigger_times=[0, 20 * MS, 10 * MS])
    with pytest.raises(ValueError, match="increase"):
        list(bad)


def test_camera_frames_are_cropped_to_the_sensor_aspect_not_squashed() -> None:
    frame = np.full((360, 640, 3), 255, np.uint8)           # a 16:9 camera frame, white at both sides
    frame[:, 140:500] = 40                                    # and a uniform grey centred 360x360 box
    square = sensor_luminance(frame, 48, 48)
    assert square.shape == (48, 48) and np.ptp(square) < 1e-5  # the square sensor sees only the box
    assert square[0, 0] == pytest.approx(bgr_to_linear(frame[:1, 200:201])[0, 0], rel=1e-5)
    wide = sensor_luminance(frame, 64, 36)                    # same aspect: the whole frame, both white sides
    assert wide[:, 0].min() > 5 * wide[:, 32].max()


def test_bench_sim_prints_one_json_object(capsys) -> None:
    from microexp_ros.cli import main

    args = ["bench", "sim", "--width", "32", "--height", "24", "--seconds", "0.2", "--reference-seconds", "0.1"]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["width"] == 32 and report["internal_rate_hz"] == 1000.0 and report["simulated_s"] == 0.2
    assert report["realtime_factor"] > 0 and report["speedup_vs_numpy"] > 0 and report["events_per_s"] > 0
    assert main(args[:2] + ["--seconds", "0"]) == 2


def test_a_step_overflowing_the_event_buffers_is_retried_not_truncated() -> None:
    config = SensorConfig(threshold_on=0.01, threshold_off=0.01, threshold_sigma=0.0, refractory_ns=0,
                          leak_rate_hz=0.0, shot_noise_rate_hz=0.0, cutoff_hz_bright=0.0)
    sim = EventSimulator(2, 2, config)
    sim.reset(np.zeros((2, 2)), 0)
    events = sim.step(np.full((2, 2), 1e3), MS)  # ~1380 events per pixel, beyond the first buffer share
    expected = math.floor((math.log(1e3 + config.log_eps) - math.log(config.log_eps)) / 0.01)
    assert expected > 1024
    counts = _per_pixel(events, 2, 2)
    assert (np.abs(counts - expected) <= 1).all()  # floor, up to float rounding of 1380 threshold additions
    assert (np.diff(events["t"]) >= 0).all()


def test_thread_count_does_not_change_the_events() -> None:
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here (NUMBA_NUM_THREADS=1)")
    frames = bench_scene(64, 48, fps=30.0, seconds=0.2)
    config = SensorConfig(shot_noise_rate_hz=2.0)
    one = EventSimulator(64, 48, config, seed=1, threads=1).simulate(frames)
    two = EventSimulator(64, 48, config, seed=1, threads=2).simulate(frames)
    assert one.size > 1000 and np.array_equal(one, two)
    with pytest.raises(ValueError, match="threads"):
        EventSimulator(4, 4, threads=0)
