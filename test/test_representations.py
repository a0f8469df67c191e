"""Representations and windowing against hand-computed small cases and against each other on many events."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microexp_ros.bench.representations import numpy_voxel_grid, voxel_rates
from microexp_ros.events.array import empty_events
from microexp_ros.events.denoise import background_activity_filter
from microexp_ros.events.frame import event_frame
from microexp_ros.events.histogram import polarity_histograms
from microexp_ros.events.time_surface import time_surface
from microexp_ros.events.voxel import voxel_grid
from microexp_ros.events.window import crop, window_slice


def make(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Events from (t, x, y, p) tuples."""
    ev = empty_events(len(rows))
    for i, (t, x, y, p) in enumerate(rows):
        ev[i] = (t, x, y, p)
    return ev


def random_events(n: int, width: int, height: int, t_end: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev["t"] = np.sort(rng.integers(0, t_end, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


# --- event_frame -------------------------------------------------------------------------------------------

def test_event_frame_signed_counts() -> None:
    ev = make([(0, 1, 2, 1), (1, 1, 2, 1), (2, 1, 2, 0), (3, 3, 0, 0)])
    frame = event_frame(ev, 4, 3)
    assert frame.shape == (3, 4) and frame.dtype == np.float32
    expected = np.zeros((3, 4), np.float32)
    expected[2, 1] = 1.0
    expected[0, 3] = -1.0
    np.testing.assert_array_equal(frame, expected)


def test_event_frame_empty_is_zero() -> None:
    assert not event_frame(empty_events(0), 5, 4).any()


@pytest.mark.parametrize(
    "rows, match",
    [([(0, 4, 0, 1)], "outside the 4x3 sensor"), ([(0, 0, 3, 1)], "outside the 4x3 sensor"),
     ([(0, 0, 0, 2)], "polarity other than 0/1")],
)
def test_event_frame_rejects_bad_events(rows, match) -> None:
    with pytest.raises(ValueError, match=match):
        event_frame(make(rows), 4, 3)


def test_representations_reject_wrong_dtype_and_geometry() -> None:
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        event_frame(np.zeros(3), 4, 3)
    with pytest.raises(ValueError, match="sensor size"):
        event_frame(empty_events(0), 0, 3)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        voxel_grid(np.zeros(3), 4, 3, 5, 0, 10)


# --- polarity_histograms -----------------------------------------------------------------------------------

def test_histogram_bin_edges_and_channels() -> None:
    # window [0, 100) in 4 bins of 25: t=24 -> bin 0, t=25 -> bin 1 (left edge inclusive), t=99 -> bin 3.
    ev = make([(-1, 0, 0, 1), (0, 0, 0, 1), (24, 0, 0, 0), (25, 1, 0, 1), (99, 1, 1, 0), (100, 0, 0, 1)])
    h = polarity_histograms(ev, 2, 2, 4, 0, 100)
    assert h.shape == (4, 2, 2, 2) and h.dtype == np.float32
    expected = np.zeros((4, 2, 2, 2), np.float32)
    expected[0, 1, 0, 0] = 1  # t=0 ON
    expected[0, 0, 0, 0] = 1  # t=24 OFF
    expected[1, 1, 0, 1] = 1  # t=25 ON at x=1
    expected[3, 0, 1, 1] = 1  # t=99 OFF at (1, 1)
    np.testing.assert_array_equal(h, expected)  # t=-1 and t=100 are outside the window


def test_histogram_counts_match_window_on_many_events() -> None:
    ev = random_events(20_000, 16, 8, 1_000_000)
    h = polarity_histograms(ev, 16, 8, 7, 100_000, 900_000)
    inside = window_slice(ev, 100_000, 900_000)
    assert h.sum() == inside.size
    assert h[:, 1].sum() == inside["p"].sum()
    np.testing.assert_array_equal(h.sum(axis=(0, 1)), np.abs(event_frame(inside[inside["p"] == 1], 16, 8))
                                  + np.abs(event_frame(inside[inside["p"] == 0], 16, 8)))


@pytest.mark.parametrize("bins, t0, t1, match", [(0, 0, 10, "bins"), (3, 10, 10, "t1 > t0")])
def test_histogram_rejects_bad_parameters(bins, t0, t1, match) -> None:
    with pytest.raises(ValueError, match=match):
        polarity_histograms(empty_events(0), 2, 2, bins, t0, t1)


# --- voxel_grid --------------------------------------------------------------------------------------------

def test_voxel_bilinear_weights_by_hand() -> None:
    # B=5 over [0, 100): tn = 4 * t / 100.
    ev = make([(0, 0, 0, 1), (50, 1, 0, 1), (10, 2, 0, 0), (99, 0, 1, 1), (100, 1, 1, 1), (-5, 1, 1, 0)])
    v = voxel_grid(ev, 3, 2, 5, 0, 100)
    assert v.shape == (5, 2, 3) and v.dtype == np.float32
    expected = np.zeros((5, 2, 3), np.float32)
    expected[0, 0, 0] = 1.0  # t=0: on the first bin edge, all weight in bin 0
    expected[2, 0, 1] = 1.0  # t=50: tn=2.0, all weight in bin 2
    expected[0, 0, 2] = -0.6  # t=10 OFF: tn=0.4 -> 0.6 in bin 0, 0.4 in bin 1
    expected[1, 0, 2] = -0.4
    expected[3, 1, 0] = 0.04  # t=99: tn=3.96
    expected[4, 1, 0] = 0.96
    np.testing.assert_allclose(v, expected, atol=1e-6)  # t=100 and t=-5 excluded


def test_voxel_single_bin_is_event_frame() -> None:
    ev = random_events(5_000, 10, 6, 1000)
    np.testing.assert_array_equal(voxel_grid(ev, 10, 6, 1, 0, 1000)[0], event_frame(ev, 10, 6))


def test_voxel_weights_sum_to_signed_count_and_match_numpy() -> None:
    ev = random_events(50_000, 32, 24, 10_000_000, seed=3)
    t0, t1 = 2_000_000, 7_000_000
    v = voxel_grid(ev, 32, 24, 5, t0, t1)
    inside = window_slice(ev, t0, t1)
    signed = int(inside["p"].sum()) * 2 - inside.size
    assert math.isclose(float(v.sum(dtype=np.float64)), signed, abs_tol=1e-2)
    np.testing.assert_allclose(v.sum(axis=0), event_frame(inside, 32, 24), atol=1e-4)
    np.testing.assert_allclose(v, numpy_voxel_grid(ev, 32, 24, 5, t0, t1), atol=1e-4)


def test_voxel_empty_window_and_bad_events() -> None:
    ev = make([(5, 0, 0, 1)])
    assert not voxel_grid(ev, 2, 2, 5, 10, 20).any()
    assert not voxel_grid(empty_events(0), 2, 2, 5, 10, 20).any()
    with pytest.raises(ValueError, match="outside the 2x2 sensor"):
        voxel_grid(make([(5, 2, 0, 1)]), 2, 2, 5, 0, 10)
    with pytest.raises(ValueError, match="t1 > t0"):
        voxel_grid(ev, 2, 2, 5, 10, 5)


def test_voxel_rates_measure_and_reject_bad_input() -> None:
    rates = voxel_rates(random_events(20_000, 64, 48, 10**6), repeats=2)
    for name in ("ours", "numpy"):
        assert all(math.isfinite(rate) and rate > 0 for rate in rates[name].values())
    assert rates["ratio_vs_numpy"]["cpu_mevps"] == rates["ours"]["cpu_mevps"] / rates["numpy"]["cpu_mevps"]
    with pytest.raises(ValueError, match="empty event array"):
        voxel_rates(empty_events(0))
    with pytest.raises(ValueError, match="repeats"):
        voxel_rates(random_events(10, 4, 4, 100), repeats=0)


# --- time_surface ------------------------------------------------------------------------------------------

def test_time_surface_by_hand() -> None:
    ev = make([(0, 1, 1, 1), (50, 1, 1, 1), (20, 0, 0, 0), (300, 0, 1, 1)])
    ts = time_surface(ev, 2, 2, t_ref=100, tau_ns=100.0)
    assert ts.shape == (2, 2, 2) and ts.dtype == np.float32
    expected = np.zeros((2, 2, 2), np.float32)
    expected[1, 1, 1] = math.exp(-0.5)  # latest ON at (1, 1) is t=50
    expected[0, 0, 0] = math.exp(-0.8)  # OFF at (0, 0), t=20
    np.testing.assert_allclose(ts, expected, rtol=1e-6)  # t=300 is after t_ref: excluded


def test_time_surface_rejects_bad_tau() -> None:
    with pytest.raises(ValueError, match="tau_ns"):
        time_surface(empty_events(0), 2, 2, 0, 0.0)


def test_background_activity_filter_by_hand() -> None:
    ms = 1_000_000
    ev = make([(0, 5, 5, 1),          # nothing fired before it: dropped
               (1 * ms, 6, 6, 0),     # diagonal neighbour fired 1 ms earlier: kept
               (10 * ms, 20, 20, 1),  # alone: dropped
               (11 * ms, 20, 20, 1),  # its own pixel fired 1 ms earlier, no neighbour did: dropped
               (20 * ms, 21, 20, 1),  # neighbour fired 9 ms earlier, beyond 3 ms: dropped
               (23 * ms, 22, 20, 0),  # neighbour fired exactly 3 ms earlier: kept
               (24 * ms, 30, 30, 1)])  # sensor corner, alone: dropped
    kept = background_activity_filter(ev, 31, 31, 3 * ms)
    assert kept.tolist() == ev[[1, 5]].tolist()
    assert len(background_activity_filter(ev, 31, 31, 10 * ms)) == 3   # the 9 ms neighbour now supports too
    assert len(background_activity_filter(empty_events(0), 31, 31, ms)) == 0


def test_background_activity_filter_keeps_an_edge_and_drops_scattered_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 100_000_000, 4000))
    edge = make([(int(ti), int(ti * 63 // 100_000_000), int(rng.integers(0, 64)), 1) for ti in t])  # sweeps in x
    noise = random_events(1000, 64, 64, 100_000_000, seed=1)   # about 2.4 Hz per pixel, uniform
    keep_edge = len(background_activity_filter(edge, 64, 64, 3_000_000)) / len(edge)
    keep_noise = len(background_activity_filter(noise, 64, 64, 3_000_000)) / len(noise)
    assert keep_edge > 0.9 and keep_noise < 0.15, (keep_edge, keep_noise)


def test_background_activity_filter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="support time must be > 0"):
        background_activity_filter(make([(0, 1, 1, 1)]), 4, 4, 0)
    with pytest.raises(ValueError, match="outside the 4x4 sensor"):
        background_activity_filter(make([(0, 1, 1, 1), (5, 4, 1, 1)]), 4, 4, 10)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        background_activity_filter(np.zeros(3), 4, 4, 10)


# --- window_slice / crop -----------------------------------------------------------------------------------

def test_window_slice_half_open_with_duplicates() -> None:
    ev = make([(t, 0, 0, 1) for t in (1, 2, 2, 3, 5, 5, 8)])
    np.testing.assert_array_equal(window_slice(ev, 2, 5)["t"], [2, 2, 3])
    np.testing.assert_array_equal(window_slice(ev, 5, 9)["t"], [5, 5, 8])
    assert window_slice(ev, 6, 6).size == 0
    assert window_slice(empty_events(0), 0, 10).size == 0
    with pytest.raises(ValueError, match="t1 >= t0"):
        window_slice(ev, 5, 2)


def test_crop_shifts_and_keeps_inside_only() -> None:
    ev = make([(0, 10, 20, 1), (1, 9, 20, 1), (2, 14, 24, 0), (3, 15, 20, 1), (4, 12, 25, 0)])
    out = crop(ev, 10, 20, 5, 5)
    np.testing.assert_array_equal(out["t"], [0, 2])
    np.testing.assert_array_equal(out["x"], [0, 4])
    np.testing.assert_array_equal(out["y"], [0, 4])
    assert ev["x"][0] == 10  # the input is untouched
    with pytest.raises(ValueError, match="crop rectangle"):
        crop(ev, 0, 0, 0, 5)


@pytest.mark.parametrize(
    "build",
    [lambda ev: polarity_histograms(ev, 2, 2, 3, 0, 100), lambda ev: voxel_grid(ev, 2, 2, 3, 0, 100),
     lambda ev: time_surface(ev, 2, 2, 100, 10.0)],
    ids=["histogram", "voxel", "time_surface"],
)
def test_windowed_representations_reject_invalid_events_in_window(build) -> None:
    for bad in [(10, 2, 0, 1), (10, 0, 2, 0), (10, 1, 1, 3)]:
        with pytest.raises(ValueError, match=r"event 1 \(.*\) is outside the 2x2 sensor"):
            build(make([(5, 0, 0, 1), bad]))
    assert build(make([(500, 9, 9, 1)])).sum() == 0  # an invalid event outside the window is simply excluded


# --- properties over arbitrary small event sets ------------------------------------------------------------

event_rows = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 7), st.integers(0, 5), st.integers(0, 1)), max_size=60
)


def sorted_events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return make(sorted(rows))


@settings(max_examples=60, deadline=None)
@given(rows=event_rows, a=st.integers(-10, 1010), b=st.integers(-10, 1010))
def test_window_slice_equals_mask(rows, a, b) -> None:
    ev = sorted_events(rows)
    t0, t1 = min(a, b), max(a, b)
    np.testing.assert_array_equal(window_slice(ev, t0, t1), ev[(ev["t"] >= t0) & (ev["t"] < t1)])


@settings(max_examples=60, deadline=None)
@given(rows=event_rows, bins=st.integers(1, 6), a=st.integers(0, 1000), span=st.integers(1, 1000))
def test_voxel_and_histogram_conserve_in_window_events(rows, bins, a, span) -> None:
    ev = sorted_events(rows)
    t0, t1 = a, a + span
    inside = window_slice(ev, t0, t1)
    v = voxel_grid(ev, 8, 6, bins, t0, t1)
    np.testing.assert_allclose(v.sum(axis=0), event_frame(inside, 8, 6), atol=1e-5)
    h = polarity_histograms(ev, 8, 6, bins, t0, t1)
    assert h.sum() == inside.size and h[:, 1].sum() == int(inside["p"].sum())


@settings(max_examples=60, deadline=None)
@given(rows=event_rows, x0=st.integers(0, 8), y0=st.integers(0, 6), w=st.integers(1, 8), h=st.integers(1, 6))
def test_crop_keeps_exactly_the_rectangle(rows, x0, y0, w, h) -> None:
    ev = sorted_events(rows)
    out = crop(ev, x0, y0, w, h)
    keep = (ev["x"] >= x0) & (ev["x"] < x0 + w) & (ev["y"] >= y0) & (ev["y"] < y0 + h)
    np.testing.assert_array_equal(out["t"], ev["t"][keep])
    np.testing.assert_array_equal(out["x"].astype(int) + x0, ev["x"][keep])
    np.testing.assert_array_equal(out["y"].astype(int) + y0, ev["y"][keep])
