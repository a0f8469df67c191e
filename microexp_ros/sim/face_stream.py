"""An endless synthetic face: one identity performing AU episodes under one lighting, as a stream of frames.

The dataset clips (`clip.py`) are one second each; a driver needs a face that keeps going. The stream is cut
into segments of a few seconds, each planned like a clip (`plan_aus`: a micro or macro AU, or a blink, or
nothing, with a distractor blink in some), so every AU episode lies inside one segment and segments can be
planned lazily, one ahead of the frames. Head sway and lighting run continuously across segments; a
sweeping shadow goes across the face and back, over and over, instead of sweeping once.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator

import cv2
import numpy as np

from microexp_ros.data.dataset import MACRO_FRACTION
from microexp_ros.facs import MODEL_AUS, NEUTRAL
from microexp_ros.sim.clip import BLINK, LUMA_BGR, SKIN_REFERENCE, ClipSpec, Geometry, HeadSway, plan_aus
from microexp_ros.sim.face import FaceRenderer, Identity, make_identities, render_texture
from microexp_ros.sim.facs_motion import AUEvent, MotionModel
from microexp_ros.sim.lighting import CONDITIONS, Lighting, random_lighting

SEGMENT_S = (1.5, 3.0)            # length range of one planned segment
NEUTRAL_FRACTION = 0.15           # segments without any AU
BLINK_PROBABILITY = 0.5           # distractor blink in a micro-expression segment (people blink every few s)
KEPT_EPISODES = 1000              # `FaceStream.episodes` keeps the most recent ones (the stream is endless)
_SHADOW_REACH = 0.9               # normalised distance past which the shadow edge has left the face


def stream_identity(index: int, identities_seed: int = 0) -> Identity:
    """Identity number `index` of `make_identities(·, identities_seed)` (the dataset generator's people)."""
    if index < 0:
        raise ValueError(f"identity index must be >= 0, got {index}")
    return make_identities(index + 1, identities_seed)[index]


class FaceStream:
    """Frames of a synthetic face for `frames()`; deterministic for (identity, lighting, seed).

    `episodes` holds the planned AU occurrences as (AUEvent, role) with absolute times (ns from the stream
    start), role "main" or "distractor" as in the clips; planning runs one segment ahead of the frames.
    """

    def __init__(self, identity: Identity, lighting: str = "normal", size: int = 128, seed: int = 0) -> None:
        if lighting not in CONDITIONS:
            raise ValueError(f"unknown lighting condition {lighting!r}; known: {', '.join(CONDITIONS)}")
        if size < 16:
            raise ValueError(f"face size must be >= 16 pixels, got {size}")
        self.identity, self.size, self.seed = identity, int(size), int(seed)
        look = np.random.default_rng(np.random.SeedSequence([self.seed, 0xFACE]))
        self.lighting: Lighting = random_lighting(lighting, look)
        # Head micro-motion: the clips' sway ranges (a fraction of a pixel of their face, a small rotation).
        px = self.size / Geometry().high
        self.sway = HeadSway(amp_x=float(look.uniform(0.05, 0.15)) * px, amp_y=float(look.uniform(0.05, 0.15)) * px,
                             amp_rot=float(look.uniform(0.01, 0.05)), freq_hz=float(look.uniform(0.2, 0.8)),
                             phase=float(look.uniform(0, 2 * np.pi)))
        self.renderer = FaceRenderer(render_texture(identity, self.size))
        self.episodes: collections.deque[tuple[AUEvent, str]] = collections.deque(maxlen=KEPT_EPISODES)
        self._segments: collections.deque[tuple[int, int, MotionModel]] = collections.deque()
        self.restart()

    def restart(self) -> None:
        """Forget the planned episodes: the stream starts again from t = 0, with the same plan."""
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xFACE, 1]))
        self.episodes.clear()
        self._segments.clear()
        self._planned_until = 0
        self._segment_index = 0

    @property
    def render_hz(self) -> float:
        """Scene samples per second (and the simulator's internal rate): the clips' rates for this lighting."""
        g = Geometry()
        return g.flicker_render_hz if self.lighting.flicker_depth > 0 else g.render_hz

    def _plan_segment(self) -> None:
        rng = self._rng
        start = self._planned_until
        duration = int(rng.uniform(*SEGMENT_S) * 1e9)
        if rng.random() < NEUTRAL_FRACTION:
            label, macro = NEUTRAL, False
        else:
            label = int(rng.choice(MODEL_AUS))
            macro = bool(label != BLINK and rng.random() < MACRO_FRACTION)  # the datasets' share
        spec = ClipSpec(f"segment{self._segment_index}", self.identity, self.lighting.condition, label, macro,
                        self.seed)
        shifted = [(dataclasses.replace(e, onset_ns=e.onset_ns + start, apex_ns=e.apex_ns + start,
                                        offset_ns=e.offset_ns + start), role)
                   for e, role in plan_aus(spec, rng, duration, BLINK_PROBABILITY)]
        self.episodes.extend(shifted)
        self._segments.append((start, start + duration, MotionModel(self.identity, self.size,
                                                                     [e for e, _ in shifted])))
        self._planned_until = start + duration
        self._segment_index += 1

    def _motion_at(self, t_ns: int) -> MotionModel:
        """The segment holding t_ns; earlier segments are forgotten (time only moves forward)."""
        while self._planned_until <= t_ns:
            self._plan_segment()
        while self._segments[0][1] <= t_ns:
            self._segments.popleft()
        start, _, motion = self._segments[0]
        if t_ns < start:
            raise ValueError(f"the face stream only moves forward: t={t_ns} ns is before {start} ns")
        return motion

    def _lighting_time(self, t_ns: int) -> int:
        """Time seen by the lighting: a shadow sweeps across the face and back (a triangle wave), others as is."""
        light = self.lighting
        if light.shadow_attenuation >= 1.0:
            return t_ns
        sweep_ns = int((_SHADOW_REACH - light.shadow_start) / light.shadow_speed * 1e9)
        phase = t_ns % (2 * sweep_ns)
        return phase if phase < sweep_ns else 2 * sweep_ns - phase

    def luminance(self, t_ns: int) -> np.ndarray:
        """float32 [size, size] linear luminance at t_ns (1.0 = a normally lit face), as the clips' sensors see."""
        t_ns = int(t_ns)
        if t_ns < 0:
            raise ValueError(f"stream time must be >= 0, got {t_ns} ns")
        motion = self._motion_at(t_ns)
        albedo = self.renderer.render(motion.displacement(t_ns), self.sway.at(t_ns), motion.lid_closure(t_ns),
                                      motion.shade(t_ns))
        light = self.lighting.illumination(self._lighting_time(t_ns), self.size) / np.float32(SKIN_REFERENCE)
        return (albedo @ LUMA_BGR) * light  # illumination is the same for all three channels

    def frames(self, width: int, height: int, duration_ns: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(t_ns, float32 [height, width] luminance) at `render_hz` from t = 0, for `duration_ns` (None: forever);
        each call restarts the stream, so it gives the same frames again.

        The square face fills the shorter side of the sensor; a wider or taller sensor sees the wall beside it
        (the face's own border, replicated)."""
        if min(width, height) != self.size:
            raise ValueError(f"a {width}x{height} sensor needs a face of {min(width, height)} px, this one is "
                             f"{self.size} px")
        if duration_ns is not None and duration_ns <= 0:
            raise ValueError(f"duration must be > 0 (or None for an endless stream), got {duration_ns} ns")
        return self._frames(width, height, duration_ns)

    def _frames(self, width: int, height: int, duration_ns: int | None) -> Iterator[tuple[int, np.ndarray]]:
        left, top = (width - self.size) // 2, (height - self.size) // 2
        period = 1e9 / self.render_hz
        self.restart()
        k = 0
        while True:
            t = int(round(k * period))
            if duration_ns is not None and t > duration_ns:
                return
            lum = self.luminance(t)
            if (width, height) != (self.size, self.size):
                lum = cv2.copyMakeBorder(lum, top, height - self.size - top, left, width - self.size - left,
                                         cv2.BORDER_REPLICATE)
            yield t, lum
            k += 1
