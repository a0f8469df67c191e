"""The RGB → event-camera pixel mapping: a 3x3 homography, estimated once per rig and kept in config.

Two cameras side by side looking at a face about a metre away see it nearly as a plane, so a homography maps
the RGB face box into event pixels well enough for cropping. It is estimated from matched points (clicked or
exported from any tool), or from a checkerboard seen in RGB frames and in event frames of the same recording:
a board shown on a flashing screen makes its white squares fire and its black squares stay silent, so the
magnitude of an accumulated event frame is the board itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def homography_from_params(values: Sequence[float]) -> np.ndarray:
    """A 3x3 float64 matrix from 9 row-major numbers, scaled so H[2, 2] = 1; ValueError if unusable."""
    flat = np.asarray(list(values), dtype=np.float64)
    if flat.shape != (9,):
        raise ValueError(f"a homography needs 9 numbers (row-major 3x3), got {flat.size}")
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"homography has non-finite entries: {flat.tolist()}")
    matrix = flat.reshape(3, 3)
    if abs(matrix[2, 2]) < 1e-12:
        raise ValueError("homography H[2][2] is 0: it maps the origin to infinity")
    matrix = matrix / matrix[2, 2]
    if abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError(f"homography is singular: {matrix.tolist()}")
    return matrix


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[N, 2] points through the homography; ValueError for points it sends to infinity (behind the plane)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.hstack([pts, np.ones((len(pts), 1))]) @ matrix.T
    if np.any(homogeneous[:, 2] <= 1e-12):
        raise ValueError("homography maps a point to infinity or behind the camera")
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def expand_box(box: Box, margin: float, size: tuple[int, int]) -> Box:
    """The box grown by `margin` x its width/height on every side, clipped to the image `(width, height)`.

    Face detectors box the eyes-to-chin area tightly; the brows (AU1, AU2, AU4) sit just above it.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x, y, w, h = (int(v) for v in box)
    dx, dy = round(w * margin), round(h * margin)
    width, height = (int(v) for v in size)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return x0, y0, x1 - x0, y1 - y0


def map_box(matrix: np.ndarray, box: Box, target_size: tuple[int, int]) -> Box:
    """The bounding box (x, y, w, h), clipped to the target `(width, height)`, of a box's mapped corners.

    ValueError when the mapped box lies outside the target image (a wrong homography or a face the event
    camera does not see), so the caller can count it instead of cropping nothing.
    """
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have a positive size, got w={w} h={h}")
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], dtype=np.float64)
    mapped = map_points(matrix, corners)
    width, height = (int(v) for v in target_size)
    x0 = max(0, math.floor(mapped[:, 0].min()))
    y0 = max(0, math.floor(mapped[:, 1].min()))
    x1 = min(width, math.ceil(mapped[:, 0].max()))
    y1 = min(height, math.ceil(mapped[:, 1].max()))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} maps to {mapped.round(1).tolist()}, outside the {width}x{height} target")
    return x0, y0, x1 - x0, y1 - y0


@dataclass(frozen=True)
class HomographyFit:
    """An estimated homography with how well it explains the correspondences (pixels in the target)."""

    matrix: np.ndarray
    inliers: int
    points: int
    rms_error_px: float

    def params(self) -> list[float]:
        """The 9 row-major numbers for the `homography` parameter."""
        return [float(v) for v in self.matrix.reshape(-1)]


def estimate_homography(src: np.ndarray, dst: np.ndarray, ransac_threshold_px: float = 3.0) -> HomographyFit:
    """Homography mapping `src` [N, 2] (RGB pixels) onto `dst` [N, 2] (event pixels), RANSAC-robust."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst):
        raise ValueError(f"need as many RGB points as event points, got {len(src)} and {len(dst)}")
    if len(src) < 4:
        raise ValueError(f"a homography needs at least 4 point pairs, got {len(src)}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("point coordinates must be finite")
    matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, float(ransac_threshold_px))
    if matrix is None:
        raise ValueError("no homography fits these points (collinear or degenerate correspondences)")
    matrix = homography_from_params(matrix.reshape(-1))
    inlier = mask.reshape(-1).astype(bool)
    residual = map_points(matrix, src[inlier]) - dst[inlier]
    rms = float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))
    return HomographyFit(matrix, int(inlier.sum()), len(src), rms)


def find_checkerboard(image: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Inner corners [cols * rows, 2] of a checkerboard with `pattern` = (cols, rows) inner corners, or None.

    `image` is uint8 gray/BGR or a float event frame (any sign: its magnitude is used, stretched to 0..255).
    """
    if image.dtype != np.uint8:
        magnitude = np.abs(image.astype(np.float32))
        top = float(np.percentile(magnitude, 99.5)) or 1.0
        image = np.clip(magnitude * (255.0 / top), 0, 255).astype(np.uint8)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    size = tuple(int(v) for v in pattern)
    found, corners = cv2.findChessboardCornersSB(gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        return None
    return corners.reshape(-1, 2).astype(np.float64)


def estimate_from_checkerboards(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], pattern: tuple[int, int], ransac_threshold_px: float = 3.0
) -> tuple[HomographyFit, int]:
    """Homography from (RGB frame, event frame) pairs showing the same board; (fit, pairs where both found it).

    Corners are matched by index: both detections order them from the same board corner, which holds while
    the board is not rotated by more than 90° between the two views (side-by-side cameras).
    """
    src, dst, used = [], [], 0
    for rgb, events in pairs:
        a, b = find_checkerboard(rgb, pattern), find_checkerboard(events, pattern)
        if a is None or b is None:
            continue
        src.append(a)
        dst.append(b)
        used += 1
    if not used:
        raise ValueError(f"no frame pair shows a {pattern[0]}x{pattern[1]} checkerboard in both cameras")
    return estimate_homography(np.vstack(src), np.vstack(dst), ransac_threshold_px), used
