"""The reconstruction metrics follow the written protocol: they equal skimage's calls on known image pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from microexp_ros.eval.image_metrics import PSNR_CAP_DB, frame_quality, mean_quality, psnr, ssim, to_unit_gray


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """The skimage camera image (a real photograph) and a blurred, contrast-changed, noisy copy, in [0, 1]."""
    gt = cv2.resize(data.camera(), (128, 128), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    rng = np.random.default_rng(0)
    pred = (cv2.GaussianBlur(gt, (0, 0), 1.2) * 0.9 + 0.05 + rng.normal(0, 0.03, gt.shape)).clip(0, 1)
    return gt, pred


def test_ssim_psnr_mse_equal_skimage_with_protocol_kwargs(pair):
    gt, pred = pair
    q = frame_quality(pred, gt)
    expected_ssim = structural_similarity(gt, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)
    assert q["ssim"] == pytest.approx(expected_ssim, abs=1e-12)
    assert q["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=1.0), abs=1e-9)
    assert q["mse"] == pytest.approx(mean_squared_error(gt, pred), abs=1e-15)
    # the protocol form differs from skimage's default window, so using the wrong one would be visible
    assert abs(q["ssim"] - structural_similarity(gt, pred, data_range=1.0)) > 1e-3
    assert 0.3 < q["ssim"] < 0.95


def test_uint8_and_bgr_inputs_are_aligned_like_float_gray(pair):
    gt, pred = pair
    gt8 = (gt * 255).round().astype(np.uint8)
    pred8 = (pred * 255).round().astype(np.uint8)
    bgr = cv2.cvtColor(gt8, cv2.COLOR_GRAY2BGR)
    assert frame_quality(pred8, bgr) == pytest.approx(frame_quality(pred8, gt8))
    assert to_unit_gray(gt8).max() <= 1.0


def test_reference_is_resized_to_the_prediction(pair):
    gt, pred = pair
    big = cv2.resize(gt, (256, 256), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    q = frame_quality(pred, big)
    direct = frame_quality(pred, cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA).clip(0, 1))
    assert q == pytest.approx(direct)


def test_identical_frames_and_mean_over_frames(pair):
    gt, pred = pair
    assert ssim(gt, gt) == pytest.approx(1.0)
    assert psnr(gt, gt) == PSNR_CAP_DB
    rows = [frame_quality(pred, gt), frame_quality(gt, gt)]
    m = mean_quality(rows)
    assert m["n"] == 2
    assert m["psnr"] == pytest.approx((rows[0]["psnr"] + PSNR_CAP_DB) / 2)  # mean of per-frame PSNR


@pytest.mark.parametrize("bad, match", [
    (np.full((32, 32), 1.5), "in \\[0, 1\\]"),
    (np.zeros((4, 32, 32)), "expected a gray"),
    (np.zeros((32, 32), np.int32), "uint8 or float"),
])
def test_bad_frames_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        frame_quality(bad, np.zeros((32, 32)))


def test_too_small_frames_raise():
    with pytest.raises(ValueError, match="at least 11x11"):
        frame_quality(np.zeros((8, 8)), np.zeros((8, 8)))
