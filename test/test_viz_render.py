"""Event images and AU overlays: colours follow the polarity, bars follow the probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from microexp_ros.events.array import empty_events
from microexp_ros.hri.facs import AUState
from microexp_ros.viz.render import ACTIVE_RGB, INACTIVE_RGB, OVERLAY_MIN_HEIGHT, PANEL_WIDTH, au_overlay, event_image


def _events(points: list[tuple[int, int, int]]) -> np.ndarray:
    events = empty_events(len(points))
    events["x"], events["y"], events["p"] = zip(*points)
    events["t"] = np.arange(len(points))
    return events


def test_on_events_are_red_off_events_blue_and_empty_pixels_white():
    # a cluster of ON events left, OFF events right
    on = [(4, 8, 1)] * 5 + [(5, 8, 1)] * 5
    off = [(20, 8, 0)] * 5 + [(21, 8, 0)] * 5
    picture = event_image(_events(on + off), 32, 16)
    assert picture.shape == (16, 32, 3) and picture.dtype == np.uint8
    r, g, b = (picture[8, 4].astype(int))
    assert r > 200 and b < 150 and g < 150, picture[8, 4]
    r, g, b = (picture[8, 20].astype(int))
    assert b > 200 and r < 150 and g < 150, picture[8, 20]
    assert (picture[0, 31] == 255).all()


def test_an_empty_window_is_a_white_image():
    assert (event_image(empty_events(0), 8, 6) == 255).all()


def test_overlay_scales_the_frame_and_draws_one_bar_per_au_coloured_by_activity():
    base = np.full((48, 48), 90, np.uint8)
    aus = [AUState(1, 0.9, True), AUState(12, 0.5, False), AUState(45, 0.0, False)]
    picture = au_overlay(base, aus, roi=(8, 8, 16, 16), caption="f00000")
    scale = int(np.ceil(OVERLAY_MIN_HEIGHT / 48))
    assert picture.shape == (48 * scale, 48 * scale + PANEL_WIDTH, 3)
    panel = picture[:, 48 * scale:]
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    assert ACTIVE_RGB in colours and INACTIVE_RGB in colours
    # bar length follows the probability: the active AU1 bar is longer than the AU12 one; AU45's is empty
    rows = [np.flatnonzero((panel[:, 52:] == c).all(axis=2).any(axis=0)) for c in (ACTIVE_RGB, INACTIVE_RGB)]
    assert rows[0].max() > rows[1].max()
    # the face box is drawn on the scaled frame
    assert (picture[8 * scale, 8 * scale:24 * scale] != 90).any()


def test_overlay_refuses_an_empty_image():
    with pytest.raises(ValueError, match="overlay base"):
        au_overlay(np.zeros((0, 4, 3), np.uint8), [])
