"""Face detection in RGB frames with dlib's HOG + linear SVM frontal face detector.

OpenCV 5 dropped the Haar cascades (no `CascadeClassifier`, no `cv2.data` XML files) and YuNet's ONNX model
ships in no pip package, so the detector is dlib's, whose model is compiled into the `dlib-bin` wheel: nothing
is downloaded at run time. It finds frontal faces of about 80 px and larger at upsample 0 (40 px at 1).
Large frames are shrunk to `max_side` first, which bounds the cost per frame; boxes are scaled back.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Face:
    """One detection in image pixels: top-left corner, size, the SVM score and a 0..1 confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float

    @property
    def confidence(self) -> float:
        """The SVM margin squashed to 0..1 (logistic): 0.5 at the decision boundary."""
        return 1.0 / (1.0 + math.exp(-self.score))

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


@functools.cache
def frontal_face_detector() -> "dlib.fhog_object_detector":  # noqa: F821 - dlib is imported inside
    """dlib's HOG frontal face detector, built once per process and run once on a blank image: deserialising its
    model and the first detection take ~0.4 s of CPU, which face_region's hot standby spends before it is
    promoted (`run_node`'s prepare) rather than after."""
    import dlib  # the compiled model lives in the extension

    detector = dlib.get_frontal_face_detector()
    detector.run(np.zeros((64, 64), np.uint8), 0, 0.0)
    return detector


class FaceDetector:
    """Frontal faces in a gray or BGR uint8 image, best first."""

    def __init__(self, upsample: int = 0, threshold: float = 0.0, max_side: int = 640) -> None:
        if not 0 <= int(upsample) <= 2:
            raise ValueError(f"upsample must be 0, 1 or 2, got {upsample}")
        if int(max_side) < 64:
            raise ValueError(f"max_side must be at least 64 px, got {max_side}")
        self._detector = frontal_face_detector()
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self.max_side = int(max_side)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face scoring at least `threshold`, sorted by score (best first), clipped to the image."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
                or (image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 8:
            raise ValueError(f"face detection needs a uint8 gray [H, W] or BGR [H, W, 3] image of at least 8x8, "
                             f"got {getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(gray), self.upsample, self.threshold)
        faces = []
        for rect, score in zip(rects, scores):
            x0 = max(0, math.floor(rect.left() / scale))
            y0 = max(0, math.floor(rect.top() / scale))
            x1 = min(width, math.ceil((rect.right() + 1) / scale))
            y1 = min(height, math.ceil((rect.bottom() + 1) / scale))
            if x1 > x0 and y1 > y0:
                faces.append(Face(x0, y0, x1 - x0, y1 - y0, float(score)))
        return sorted(faces, key=lambda f: -f.score)
