"""Lighting conditions: how much light falls on each point of the face over time (linear, 1.0 = normal).

The scene radiance is albedo x illumination. Illumination has a per-clip level (bright .. very dim), a
directional gradient across the face, and, for two conditions, time structure: mains flicker (a rectified
50 Hz supply gives a 100 Hz ripple) and a soft shadow edge sweeping across the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Mean illumination of each condition, in units where 1.0 is a normally lit face (dim 0.05-0.1, very dim ~0.01).
LEVELS: dict[str, float] = {
    "bright": 4.0,
    "normal": 1.0,
    "dim": 0.08,
    "very_dim": 0.015,
    "flicker": 0.3,
    "shadow": 1.0,
}
CONDITIONS: tuple[str, ...] = tuple(LEVELS)
FLICKER_HZ = 100.0


@dataclass(frozen=True)
class Lighting:
    """One clip's lighting; `illumination(t_ns, size)` is a float32 [size, size] multiplier of the albedo."""

    condition: str
    level: float                      # mean illumination (LEVELS, jittered per clip)
    gradient: tuple[float, float]     # illumination slope across the face in u and v (fraction per face width)
    flicker_depth: float = 0.0        # 0..1 modulation depth of the 100 Hz ripple
    flicker_phase: float = 0.0
    shadow_attenuation: float = 1.0   # light left inside the shadow (1 = no shadow)
    shadow_angle: float = 0.0         # direction the shadow edge moves in, radians
    shadow_start: float = 0.0         # edge position (normalised, along the direction) at t = 0
    shadow_speed: float = 0.0         # normalised face widths per second
    shadow_softness: float = 0.05

    def __post_init__(self) -> None:
        if self.condition not in LEVELS:
            raise ValueError(f"unknown lighting condition {self.condition!r}; known: {', '.join(CONDITIONS)}")
        if not self.level > 0:
            raise ValueError(f"lighting level must be > 0, got {self.level}")

    def global_factor(self, t_ns: int) -> float:
        """The spatially uniform part at t: level x flicker ripple."""
        ripple = 1.0
        if self.flicker_depth > 0:
            # |sin| of the 50 Hz supply has a 100 Hz period; mean 2/pi, normalised to mean 1.
            phase = np.pi * (FLICKER_HZ / 2.0) * 2.0 * t_ns * 1e-9 + self.flicker_phase
            ripple = 1.0 - self.flicker_depth + self.flicker_depth * abs(np.sin(phase)) * (np.pi / 2.0)
        return self.level * ripple

    def illumination(self, t_ns: int, size: int) -> np.ndarray:
        """float32 [size, size] illumination at time t_ns."""
        u = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        ramp = 1.0 + self.gradient[0] * u[None, :] + self.gradient[1] * u[:, None]
        light = np.clip(ramp, 0.2, None) * np.float32(self.global_factor(t_ns))
        if self.shadow_attenuation < 1.0:
            along = np.cos(self.shadow_angle) * u[None, :] + np.sin(self.shadow_angle) * u[:, None]
            edge = self.shadow_start + self.shadow_speed * t_ns * 1e-9
            inside = 1.0 / (1.0 + np.exp(-(edge - along) / self.shadow_softness))
            light = light * (1.0 - (1.0 - self.shadow_attenuation) * inside)
        return light.astype(np.float32)


def random_lighting(condition: str, rng: np.random.Generator) -> Lighting:
    """A clip's lighting for `condition`, with per-clip jitter of level, gradient, flicker phase, shadow path."""
    if condition not in LEVELS:
        raise ValueError(f"unknown lighting condition {condition!r}; known: {', '.join(CONDITIONS)}")
    level = LEVELS[condition] * float(np.exp(rng.uniform(-0.2, 0.2)))
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.5)
    extra: dict = {}
    if condition == "flicker":
        extra = {"flicker_depth": float(rng.uniform(0.3, 0.45)), "flicker_phase": float(rng.uniform(0, np.pi))}
    elif condition == "shadow":
        extra = {"shadow_attenuation": float(rng.uniform(0.25, 0.5)), "shadow_angle": float(rng.uniform(0, 2 * np.pi)),
                 "shadow_start": float(rng.uniform(-0.9, -0.5)), "shadow_speed": float(rng.uniform(0.4, 1.0)),
                 "shadow_softness": float(rng.uniform(0.03, 0.08))}
    return Lighting(condition=condition, level=level,
                    gradient=(float(strength * np.cos(angle)), float(strength * np.sin(angle))), **extra)
