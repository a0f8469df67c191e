"""A webcam model: 30 fps, auto-exposure with lag, motion blur over the exposure, shot/read noise, gain, 8 bit.

What matters for the paper's comparison is how a cheap RGB camera fails in the dark: exposure lengthens to the
frame period (blurring fast motion), then gain rises to a cap, amplifying shot and read noise, and the image
still ends up dark; the auto-exposure loop needs a few frames to follow a change of light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class WebcamConfig:
    """Sensor and auto-exposure parameters of a small-pixel USB webcam."""

    fps: float = 30.0
    electrons_per_unit: float = 20_000.0   # photo-electrons per second for radiance 1.0 (a normally lit face)
    read_noise_e: float = 3.0
    full_well_e: float = 1200.0
    electrons_per_dn: float = 4.0         # at gain 1, before gamma
    min_exposure_s: float = 0.0002
    max_gain: float = 3.0
    ae_target: float = 0.42               # mean linear signal the auto-exposure aims for (fraction of full scale)
    ae_time_constant_s: float = 0.15      # auto-exposure lag
    gamma: float = 1 / 2.2

    def __post_init__(self) -> None:
        for name in ("fps", "electrons_per_unit", "full_well_e", "electrons_per_dn", "min_exposure_s", "max_gain",
                     "ae_target", "ae_time_constant_s", "gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WebcamConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.read_noise_e < 0:
            raise ValueError(f"WebcamConfig.read_noise_e must be >= 0, got {self.read_noise_e}")

    @property
    def max_exposure_s(self) -> float:
        return 1.0 / self.fps


@dataclass(frozen=True)
class Capture:
    """Frames and what the camera did to get them."""

    frames: np.ndarray      # uint8 [N, H, W, 3] BGR
    times_ns: np.ndarray    # int64 [N] exposure centres
    exposure_s: np.ndarray  # float64 [N]
    gain: np.ndarray        # float64 [N]


class Webcam:
    """Captures frames from a radiance function `render(t_ns) -> float32 [H, W, 3]` (linear BGR)."""

    def __init__(self, width: int, height: int, config: WebcamConfig = WebcamConfig(), seed: int = 0) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"webcam size must be positive, got {width}x{height}")
        self.width, self.height, self.config = width, height, config
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA3]))

    def _scale_for(self, mean_radiance: float) -> float:
        """Exposure x gain that brings a mean radiance to the auto-exposure target."""
        c = self.config
        return c.ae_target * c.full_well_e / max(mean_radiance * c.electrons_per_unit, 1e-9)

    def capture(self, render: Callable[[int], np.ndarray], start_ns: int, count: int, subframe_ns: int,
                initial_mean_radiance: float) -> Capture:
        """`count` frames at `fps` from `start_ns` (exposure centres); each frame averages renders every
        `subframe_ns` across its exposure. The auto-exposure starts settled for `initial_mean_radiance` and
        follows the measured brightness of each frame with the configured lag."""
        c = self.config
        if count < 1 or subframe_ns < 1:
            raise ValueError(f"need count >= 1 and subframe_ns >= 1, got {count}, {subframe_ns}")
        period_ns = 1e9 / c.fps
        log_scale = np.log(self._scale_for(initial_mean_radiance))
        alpha = 1.0 - np.exp(-1.0 / (c.fps * c.ae_time_constant_s))
        frames = np.empty((count, self.height, self.width, 3), np.uint8)
        times = np.empty(count, np.int64)
        exposures = np.empty(count)
        gains = np.empty(count)
        for k in range(count):
            scale = float(np.exp(log_scale))
            exposure = float(np.clip(scale, c.min_exposure_s, c.max_exposure_s))
            gain = float(np.clip(scale / exposure, 1.0, c.max_gain))
            centre = int(round(start_ns + k * period_ns))
            n_sub = max(1, int(round(exposure * 1e9 / subframe_ns)))
            offsets = (np.arange(n_sub) + 0.5) / n_sub - 0.5
            radiance = np.mean([render(int(round(centre + o * exposure * 1e9))) for o in offsets], axis=0)
            if radiance.shape[:2] != (self.height, self.width):
                radiance = cv2.resize(radiance, (self.width, self.height), interpolation=cv2.INTER_AREA)
            electrons = radiance.astype(np.float64) * c.electrons_per_unit * exposure
            electrons = self._rng.poisson(np.clip(electrons, 0.0, None)).astype(np.float64)
            electrons = np.minimum(electrons, c.full_well_e) + self._rng.normal(0.0, c.read_noise_e, electrons.shape)
            linear = np.clip(electrons * gain / c.full_well_e, 0.0, 1.0)
            frames[k] = np.round(255.0 * linear**c.gamma).astype(np.uint8)
            times[k], exposures[k], gains[k] = centre, exposure, gain
            # Auto-exposure: move the exposure x gain product towards what this frame's mean says it should be.
            measured = float(np.mean(electrons)) / (c.electrons_per_unit * exposure)
            log_scale += alpha * (np.log(self._scale_for(max(measured, 1e-6))) - log_scale)
            log_scale = float(np.clip(log_scale, np.log(c.min_exposure_s), np.log(c.max_exposure_s * c.max_gain)))
        return Capture(frames=frames, times_ns=times, exposure_s=exposures, gain=gains)
