"""Synthetic faces: identities differ, AU motion is anatomically placed and seen by the event sensor, clips are
deterministic for a seed, and the webcam sees dim light darker and noisier."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from microexp_ros.facs import MODEL_AUS
from microexp_ros.sim.clip import ClipSpec, Geometry, make_clip
from microexp_ros.sim.face import FaceRenderer, landmarks, make_identities, render_texture
from microexp_ros.sim.facs_motion import AUEvent, au_field, random_au_event
from microexp_ros.sim.lighting import CONDITIONS, random_lighting

# Smaller than the dataset default so the suite stays fast; same code path.
SMALL = Geometry(high=96, low=32, rgb=64, duration_ns=700_000_000)


@pytest.fixture(scope="module")
def people():
    return make_identities(8, seed=3)


def test_identities_differ_in_shape_and_look(people):
    params = [dataclasses.astuple(dataclasses.replace(p, name="", texture_seed=0)) for p in people]
    assert len(set(params)) == len(people)
    assert len({p.glasses for p in make_identities(30, seed=3)}) == 2  # some wear glasses, some do not
    textures = [render_texture(p, 64).albedo for p in people]
    for i in range(len(textures)):
        for j in range(i + 1, len(textures)):
            assert np.abs(textures[i] - textures[j]).mean() > 0.01, (people[i].name, people[j].name)
    assert make_identities(8, seed=3) == people  # deterministic
    assert make_identities(8, seed=4) != people


@pytest.mark.parametrize("au", [au for au in MODEL_AUS if au != 45])
def test_au_warp_is_one_to_one_at_full_intensity(people, au):
    """The backward map p - 5 * D(p) must not fold (positive Jacobian), or the face would tear."""
    dx, dy = au_field(people[0], au, 128)
    assert max(np.abs(dx).max(), np.abs(dy).max()) > 0.3  # it moves something
    sx, sy = 5 * dx, 5 * dy
    jac = (1 - np.gradient(sx, axis=1)) * (1 - np.gradient(sy, axis=0)) - np.gradient(sx, axis=0) * np.gradient(sy, axis=1)
    assert jac.min() > 0.2


def _region_mask(person, names, size, half=9):
    lm = landmarks(person)
    mask = np.zeros((size, size), bool)
    for name in names:
        u, v = lm[name]
        x, y = int(u * size), int(v * size)
        mask[max(y - half, 0):y + half, max(x - half, 0):x + half] = True
    return mask


@pytest.mark.parametrize("au, near, far", [
    (12, ("mouth_corner_left", "mouth_corner_right"), ("brow_inner_left", "brow_inner_right")),
    (1, ("brow_inner_left", "brow_inner_right"), ("mouth_corner_left", "mouth_corner_right")),
    (2, ("brow_outer_left", "brow_outer_right"), ("mouth_corner_left", "mouth_corner_right")),
])
def test_au_events_concentrate_in_the_au_region(people, au, near, far):
    person = people[1]
    clip = make_clip(ClipSpec("t", person, "bright", au, macro=False, seed=11), SMALL)
    main = next(a for a in clip.meta["aus"] if a["role"] == "main")
    ev = clip.events["high"]
    during = ev[(ev["t"] >= main["onset_ns"]) & (ev["t"] < main["offset_ns"])]
    near_mask = _region_mask(person, near, SMALL.high)
    far_mask = _region_mask(person, far, SMALL.high)
    n_near = near_mask[during["y"], during["x"]].sum() / near_mask.sum()
    n_far = far_mask[during["y"], during["x"]].sum() / far_mask.sum()
    assert n_near > 2 * n_far, (n_near, n_far)
    # and the AU region is busier (per unit time) during the AU than before or after it
    quiet = ev[(ev["t"] < main["onset_ns"]) | (ev["t"] >= main["offset_ns"] + 50_000_000)]
    quiet_ns = SMALL.duration_ns - (main["offset_ns"] + 50_000_000 - main["onset_ns"])
    rate_during = near_mask[during["y"], during["x"]].sum() / (main["offset_ns"] - main["onset_ns"])
    rate_quiet = near_mask[quiet["y"], quiet["x"]].sum() / quiet_ns
    assert rate_during > 3 * rate_quiet, (rate_during, rate_quiet)


def test_clip_is_deterministic_for_a_seed(people):
    spec = ClipSpec("d", people[2], "flicker", 4, macro=False, seed=5)
    a, b = make_clip(spec, SMALL), make_clip(spec, SMALL)
    for r in ("high", "low"):
        np.testing.assert_array_equal(a.events[r], b.events[r])
        np.testing.assert_array_equal(a.gray[r], b.gray[r])
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.rgb_t, b.rgb_t)
    assert a.meta == b.meta
    c = make_clip(dataclasses.replace(spec, seed=6), SMALL)
    assert not np.array_equal(a.rgb, c.rgb)


def test_clip_arrays_follow_the_contract(people):
    clip = make_clip(ClipSpec("c", people[3], "shadow", 45, macro=False, seed=2), SMALL)
    n = len(clip.rgb_t)
    assert n == int(SMALL.duration_ns * SMALL.fps // 1e9)
    assert clip.rgb.shape == (n, SMALL.rgb, SMALL.rgb, 3) and clip.rgb.dtype == np.uint8
    assert clip.gray["high"].shape == (n, SMALL.high, SMALL.high)
    assert clip.gray["low"].shape == (n, SMALL.low, SMALL.low)
    assert np.all(np.diff(clip.rgb_t) > 0) and clip.rgb_t.dtype == np.int64
    for r, size in (("high", SMALL.high), ("low", SMALL.low)):
        ev = clip.events[r]
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() <= SMALL.duration_ns
        assert ev["x"].max() < size and ev["y"].max() < size
        assert np.all(ev["t"] % 1000 == 0)  # microsecond sensor timestamps
    # a blink closes the eye: the eye region is darker... or brighter, but clearly different at the apex
    blink = clip.meta["aus"][0]
    k_apex = int(np.argmin(np.abs(clip.rgb_t - blink["apex_ns"])))
    k_open = 0 if abs(int(clip.rgb_t[0]) - blink["apex_ns"]) > 150_000_000 else n - 1
    eyes = _region_mask(people[3], ("eye_left", "eye_right"), SMALL.high, half=4)
    diff = np.abs(clip.gray["high"][k_apex].astype(int) - clip.gray["high"][k_open].astype(int))
    assert diff[eyes].mean() > 3 * diff[~eyes].mean()


def test_dim_light_rgb_is_darker_and_noisier(people):
    spec = ClipSpec("n", people[4], "normal", 0, macro=False, seed=9)
    clips = {light: make_clip(dataclasses.replace(spec, lighting=light), SMALL) for light in ("normal", "dim", "very_dim")}

    def noise(frames):  # temporal noise of a static scene after the auto-exposure settled, relative to the level
        f = frames[10:].astype(np.float64)
        return np.diff(f, axis=0).std() / max(f.mean(), 1.0)

    mean = {k: c.rgb.mean() for k, c in clips.items()}
    assert mean["dim"] < 0.7 * mean["normal"] and mean["very_dim"] < 0.7 * mean["dim"]
    assert noise(clips["dim"].rgb) > 2 * noise(clips["normal"].rgb)
    assert noise(clips["very_dim"].rgb) > 2 * noise(clips["dim"].rgb)
    def boost(meta):  # exposure x gain the auto-exposure settled on
        return meta["rgb_gain"][-1] * meta["rgb_exposure_s"][-1]
    assert boost(clips["dim"].meta) > 2 * boost(clips["normal"].meta)
    # the ground truth is normalised: every light level looks like a normally exposed face
    assert max(c.gray["high"].mean() for c in clips.values()) - min(c.gray["high"].mean() for c in clips.values()) < 10


def test_lighting_conditions_and_bad_input(people):
    rng = np.random.default_rng(0)
    assert {random_lighting(c, rng).condition for c in CONDITIONS} == set(CONDITIONS)
    flicker = random_lighting("flicker", rng)
    t = np.arange(0, 20_000_000, 500_000)
    values = np.array([flicker.global_factor(int(x)) for x in t])
    spectrum = np.abs(np.fft.rfft(values - values.mean()))
    assert abs(np.fft.rfftfreq(t.size, 0.0005)[spectrum.argmax()] - 100.0) < 1.0  # 100 Hz ripple
    with pytest.raises(ValueError, match="unknown lighting"):
        random_lighting("moonlight", rng)
    with pytest.raises(ValueError, match="label"):
        ClipSpec("x", people[0], "normal", 3, macro=False, seed=0)
    with pytest.raises(ValueError, match="onset < apex < offset"):
        AUEvent(12, 2.0, 10, 5, 20)
    with pytest.raises(ValueError, match="does not fit"):
        random_au_event(12, rng, 50_000_000, macro=False)


def test_au_timing_fits_the_clip_and_the_brief():
    """Every draw fits a 1 s clip; micro-expressions last 40-500 ms, macro ones longer."""
    rng = np.random.default_rng(1)
    for au in MODEL_AUS:
        for macro in ((False, True) if au != 45 else (False,)):
            for _ in range(300):
                e = random_au_event(au, rng, 1_000_000_000, macro)
                total = e.offset_ns - e.onset_ns
                assert 0 < e.onset_ns and e.offset_ns < 1_000_000_000
                if macro:
                    assert total >= 500_000_000 and e.intensity >= 3
                elif au != 45:
                    assert 40_000_000 <= total <= 500_000_000 and e.intensity <= 2.5


def test_renderer_moves_sub_pixel(people):
    """A 0.2 px muscle displacement changes pixel intensities (what the event sensor needs)."""
    renderer = FaceRenderer(render_texture(people[5], 64))
    zero = np.zeros((64, 64), np.float32)
    still = renderer.render((zero, zero))
    moved = renderer.render((zero, zero + 0.2))
    assert np.abs(moved - still).max() > 0.005
