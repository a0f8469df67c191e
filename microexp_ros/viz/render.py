"""Event images and the AU overlay, drawn the same way for reports (montages) and for the live image topics.

Colour convention: ON events red, OFF blue, on white (as in the Prophesee and DVS viewers' light theme).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from microexp_ros.events.frame import event_frame
from microexp_ros.facs import au_name
from microexp_ros.hri.facs import AUState

# Overlay geometry: the image is scaled so its height is at least this, then a panel of AU bars is appended.
OVERLAY_MIN_HEIGHT = 288
PANEL_WIDTH = 200
ACTIVE_RGB = (220, 40, 40)
INACTIVE_RGB = (120, 120, 120)
FACE_BOX_RGB = (40, 200, 40)


def signed_colors(frame: np.ndarray) -> np.ndarray:
    """[H, W, 3] float RGB in [0, 1] of a signed event frame.

    A 1-pixel Gaussian blur first (noise events are scattered, AU events spatially coherent, so the blur shows
    where motion was); clipped at the 99.5th percentile of the non-zero magnitudes.
    """
    frame = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 1.0)
    nonzero = np.abs(frame[frame != 0])
    scale = max(float(np.percentile(nonzero, 99.5)) if nonzero.size else 1.0, 1.0)
    v = np.clip(frame / scale, -1.0, 1.0)
    img = np.ones(frame.shape + (3,))
    img[..., 0] -= np.clip(-v, 0, 1)   # OFF: remove red -> blue
    img[..., 1] -= np.abs(v)
    img[..., 2] -= np.clip(v, 0, 1)    # ON: remove blue -> red
    return img


def event_image(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB picture of a window of events on a width x height sensor."""
    return np.round(signed_colors(event_frame(events, width, height)) * 255).astype(np.uint8)


def au_overlay(base_rgb: np.ndarray, aus: Sequence[AUState], roi: tuple[int, int, int, int] | None = None,
               caption: str = "") -> np.ndarray:
    """The frame (uint8 RGB or mono) scaled up, the face box drawn, and a panel of per-AU probability bars
    beside it (active AUs in red with their names); returns uint8 RGB."""
    if base_rgb.ndim == 2:
        base_rgb = np.repeat(base_rgb[..., None], 3, axis=2)
    if base_rgb.ndim != 3 or base_rgb.shape[2] != 3 or base_rgb.shape[0] == 0 or base_rgb.shape[1] == 0:
        raise ValueError(f"overlay base must be a non-empty HxW or HxWx3 image, got shape {base_rgb.shape}")
    scale = max(1, int(np.ceil(OVERLAY_MIN_HEIGHT / base_rgb.shape[0])))
    image = cv2.resize(np.ascontiguousarray(base_rgb, np.uint8), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_NEAREST)
    if roi is not None and roi[2] > 0 and roi[3] > 0:
        x, y, w, h = (int(v) * scale for v in roi)
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), FACE_BOX_RGB, 2)
    panel = np.full((image.shape[0], PANEL_WIDTH, 3), 255, np.uint8)
    row = max(12, min(22, (image.shape[0] - 24) // max(len(aus), 1)))
    if caption:
        cv2.putText(panel, caption[:28], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, au in enumerate(aus):
        top = 22 + i * row
        color = ACTIVE_RGB if au.active else INACTIVE_RGB
        length = int(round(np.clip(au.probability, 0.0, 1.0) * (PANEL_WIDTH - 60)))
        cv2.rectangle(panel, (52, top + 2), (52 + length, top + row - 4), color, -1)
        label = f"AU{au.number}" + (f" {au_name(au.number)}"[:14] if au.active else "")
        cv2.putText(panel, label, (4, top + row - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1, cv2.LINE_AA)
    return np.concatenate([image, panel], axis=1)
