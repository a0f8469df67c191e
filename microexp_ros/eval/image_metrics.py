"""Image-quality metrics with the project's written protocol (metrics-protocol.md), one implementation
shared by offline evaluation and the reconstruction node.

SSIM is the Wang et al. form (Gaussian window sigma 1.5, population covariance, data_range 1.0); PSNR is per
frame with data_range 1.0 and averaged over frames by the caller; MSE is reported beside it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.metrics import structural_similarity

SSIM_KWARGS = {"data_range": 1.0, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
PROTOCOL = (
    "gray float in [0,1], reference resized to the prediction size (INTER_AREA); "
    "skimage.metrics.structural_similarity(gt, pred, data_range=1.0, gaussian_weights=True, sigma=1.5, "
    "use_sample_covariance=False); PSNR per frame with data_range=1.0 then mean over frames; MSE per frame then mean"
)
# Above this PSNR is reported as this value instead of infinity (identical frames), so means stay finite.
PSNR_CAP_DB = 100.0


def to_unit_gray(image: np.ndarray) -> np.ndarray:
    """A frame as float64 gray in [0, 1]: uint8 is divided by 255, 3-channel BGR is converted to gray,
    float input must already lie in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype != np.uint8:
            raise ValueError(f"colour frames must be uint8 BGR, got {image.dtype}")
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise ValueError(f"expected a gray [H, W] or BGR [H, W, 3] frame, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got {image.dtype}")
    out = image.astype(np.float64)
    if not np.all(np.isfinite(out)) or out.min() < 0.0 or out.max() > 1.0:
        raise ValueError(f"float frame values must be finite and in [0, 1], got [{out.min()}, {out.max()}]")
    return out


def align_reference(pred: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and reference as [0, 1] gray of the prediction's size (the reference is resized)."""
    p = to_unit_gray(pred)
    r = to_unit_gray(reference)
    if r.shape != p.shape:
        r = cv2.resize(r, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_AREA).clip(0.0, 1.0)
    return p, r


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """SSIM of two [0, 1] gray frames of equal size under the protocol."""
    if gt.shape != pred.shape:
        raise ValueError(f"ssim needs equal shapes, got {gt.shape} and {pred.shape}")
    if min(gt.shape) < 11:
        raise ValueError(f"ssim needs frames of at least 11x11 pixels (Gaussian window), got {gt.shape}")
    return float(structural_similarity(gt, pred, **SSIM_KWARGS))


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error of two [0, 1] frames."""
    return float(np.mean((np.asarray(gt, np.float64) - np.asarray(pred, np.float64)) ** 2))


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB with data_range 1.0, capped at PSNR_CAP_DB for identical frames."""
    err = mse(gt, pred)
    return PSNR_CAP_DB if err <= 10 ** (-PSNR_CAP_DB / 10) else float(-10.0 * math.log10(err))


def frame_quality(pred: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """{ssim, psnr, mse} of one prediction against a reference, after alignment (gray, reference resized)."""
    p, r = align_reference(pred, reference)
    return {"ssim": ssim(r, p), "psnr": psnr(r, p), "mse": mse(r, p)}


def mean_quality(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean over frames of per-frame {ssim, psnr, mse}, with the frame count `n`."""
    if not rows:
        return {"ssim": float("nan"), "psnr": float("nan"), "mse": float("nan"), "n": 0}
    return {k: float(np.mean([r[k] for r in rows])) for k in ("ssim", "psnr", "mse")} | {"n": len(rows)}
