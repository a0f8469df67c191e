"""One synthetic clip: a face with an AU (or none) under one lighting, seen by two event sensors and a webcam.

The scene is rendered as linear radiance (albedo warped by AU motion and head sway, times illumination) on one
clock; the high- and low-resolution event sensors integrate its luminance through `EventSimulator`, the webcam
averages it over each exposure, and the ground-truth gray frames are the clean luminance at the webcam's
exposure centres, normalised by the light level so they look like a normally exposed face.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from microexp_ros.data.dataset import Clip
from microexp_ros.facs import MODEL_AUS, NEUTRAL
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig
from microexp_ros.sim.face import FaceRenderer, FaceTexture, Identity, render_texture
from microexp_ros.sim.facs_motion import AUEvent, MotionModel, random_au_event
from microexp_ros.sim.lighting import Lighting, random_lighting
from microexp_ros.sim.rgb_camera import Webcam, WebcamConfig

BLINK = 45
LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)
# Radiance is albedo x illumination / SKIN_REFERENCE, so a typical skin albedo (0.3) under normal light (1.0)
# has luminance 1.0: the simulator's unit ("1.0 = a normally lit face"), on which its noise and bandwidth depend.
SKIN_REFERENCE = 0.3


@dataclass(frozen=True)
class Geometry:
    """Sizes (pixels, square face regions) and rates of the simulated rig."""

    high: int = 128          # face region of an EVK4-like sensor
    low: int = 48            # face region of a DAVIS346-like sensor
    rgb: int = 96            # face crop of the webcam
    fps: float = 30.0
    duration_ns: int = 1_000_000_000
    render_hz: float = 400.0           # scene samples/s fed to the event sensors (also their internal rate)
    flicker_render_hz: float = 1000.0  # flicker needs >= 10 samples per 100 Hz period
    rgb_subframe_ns: int = 2_000_000   # exposure integration step of the webcam
    warm_up_ns: int = 100_000_000      # event sensors run this long before the clip starts

    def __post_init__(self) -> None:
        for name in ("high", "low", "rgb"):
            if getattr(self, name) < 16:
                raise ValueError(f"Geometry.{name} must be >= 16 pixels, got {getattr(self, name)}")
        if self.duration_ns < 300_000_000:
            raise ValueError(f"clip duration must be >= 300 ms, got {self.duration_ns} ns")


# The two event sensors: EVK4-like (defaults) and a noisier, less sensitive DAVIS346-like one.
HIGH_SENSOR = SensorConfig()
LOW_SENSOR = dataclasses.replace(SensorConfig(), threshold_on=0.25, threshold_off=0.25, threshold_sigma=0.04,
                                 shot_noise_rate_hz=0.3, cutoff_hz_bright=200.0)


@dataclass(frozen=True)
class ClipSpec:
    """What to make: identity, lighting condition, main AU (0 = neutral), micro or macro, and a seed."""

    clip_id: str
    identity: Identity
    lighting: str
    label: int
    macro: bool
    seed: int

    def __post_init__(self) -> None:
        if self.label != NEUTRAL and self.label not in MODEL_AUS:
            raise ValueError(f"clip label must be 0 (neutral) or one of {MODEL_AUS}, got {self.label}")
        if self.macro and self.label in (NEUTRAL, BLINK):
            raise ValueError(f"a macro expression needs a muscle AU, got label {self.label}")


@dataclass(frozen=True)
class HeadSway:
    """Small rigid head motion (a distractor): sinusoidal translation in pixels and rotation in degrees."""

    amp_x: float
    amp_y: float
    amp_rot: float
    freq_hz: float
    phase: float

    def at(self, t_ns: int) -> tuple[float, float, float]:
        w = 2 * np.pi * self.freq_hz * t_ns * 1e-9 + self.phase
        return self.amp_x * np.sin(w), self.amp_y * np.sin(0.7 * w + 1.0), self.amp_rot * np.sin(0.5 * w + 2.0)


@lru_cache(maxsize=8)
def _texture(identity: Identity, size: int) -> FaceTexture:
    return render_texture(identity, size)


def plan_aus(spec: ClipSpec, rng: np.random.Generator, duration_ns: int, blink_probability: float = 0.25
             ) -> list[tuple[AUEvent, str]]:
    """The AU occurrences of a clip with their role: the labelled "main" one, plus a distractor blink in some
    clips of other muscle AUs (never in neutral or AU45 clips, which would make those classes ambiguous)."""
    if spec.label == NEUTRAL:
        return []
    main = random_au_event(spec.label, rng, duration_ns, spec.macro)
    plan = [(main, "main")]
    if spec.label != BLINK and not spec.macro and rng.random() < blink_probability:
        try:
            blink = random_au_event(BLINK, rng, duration_ns, False, avoid=(main.onset_ns, main.offset_ns))
        except ValueError:  # the main AU leaves no room for a separate blink: this clip has none
            return plan
        plan.append((blink, "distractor"))
    return plan


def make_clip(spec: ClipSpec, geometry: Geometry = Geometry()) -> Clip:
    """Render, simulate and capture one clip; deterministic for `spec` (including its seed)."""
    g = geometry
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xC11]))
    lighting = random_lighting(spec.lighting, rng)
    aus = plan_aus(spec, rng, g.duration_ns)
    sway = HeadSway(amp_x=float(rng.uniform(0, 0.15)), amp_y=float(rng.uniform(0, 0.15)),
                    amp_rot=float(rng.uniform(0, 0.05)), freq_hz=float(rng.uniform(0.2, 0.8)),
                    phase=float(rng.uniform(0, 2 * np.pi)))
    renderer = FaceRenderer(_texture(spec.identity, g.high))
    motion = MotionModel(spec.identity, g.high, [e for e, _ in aus])

    def radiance(t_ns: int) -> np.ndarray:
        albedo = renderer.render(motion.displacement(t_ns), sway.at(t_ns), motion.lid_closure(t_ns),
                                 motion.shade(t_ns))
        return albedo * (lighting.illumination(t_ns, g.high)[..., None] / np.float32(SKIN_REFERENCE))

    sensor_seeds = rng.integers(0, 2**31 - 1, 3)
    rate = g.flicker_render_hz if lighting.flicker_depth > 0 else g.render_hz
    events = _simulate_events(radiance, rate, g, sensor_seeds[:2])
    webcam = Webcam(g.rgb, g.rgb, WebcamConfig(fps=g.fps), seed=int(sensor_seeds[2]))
    # The auto-exposure starts mis-adapted (as after a change of light) and settles with its lag.
    initial = float(np.mean(radiance(0) @ LUMA_BGR)) * float(np.exp(rng.uniform(-0.5, 0.5)))
    period_ns = 1e9 / g.fps
    count = int(np.floor(g.duration_ns / period_ns))
    capture = webcam.capture(radiance, int(round(period_ns / 2)), count, g.rgb_subframe_ns, initial)
    gray = _ground_truth(radiance, lighting, capture.times_ns, g)
    meta = {
        "aus": [dict(e.to_dict(), role=role) for e, role in aus],
        "lighting_params": dataclasses.asdict(lighting),
        "head_sway": dataclasses.asdict(sway),
        "event_render_hz": rate,  # scene samples per second fed to the sensors (= their internal_rate_hz)
        "rgb_exposure_s": [round(float(x), 6) for x in capture.exposure_s],
        "rgb_gain": [round(float(x), 4) for x in capture.gain],
    }
    return Clip(events=events, rgb=capture.frames, rgb_t=capture.times_ns, gray=gray, meta=meta)


def _simulate_events(radiance, rate: float, g: Geometry, seeds: np.ndarray) -> dict[str, np.ndarray]:
    # The sensors run from before the clip so their photoreceptors have settled to the scene (a flickering
    # scene otherwise starts with a transient burst); events before t = 0 are outside the clip.
    times = np.round(np.arange(-g.warm_up_ns, g.duration_ns + 1, 1e9 / rate)).astype(np.int64)
    # The simulator's internal evaluation rate follows the render rate: no finer steps than the scene has.
    sensors = {"high": EventSimulator(g.high, g.high, dataclasses.replace(HIGH_SENSOR, internal_rate_hz=rate),
                                      seed=int(seeds[0])),
               "low": EventSimulator(g.low, g.low, dataclasses.replace(LOW_SENSOR, internal_rate_hz=rate),
                                     seed=int(seeds[1]))}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in sensors}
    for k, t in enumerate(times):
        lum = radiance(int(t)) @ LUMA_BGR
        low = cv2.resize(lum, (g.low, g.low), interpolation=cv2.INTER_AREA)
        for name, frame in (("high", lum), ("low", low)):
            if k == 0:
                sensors[name].reset(frame, int(t))
            else:
                chunks[name].append(sensors[name].step(frame, int(t)))
    events = {name: np.concatenate(parts) for name, parts in chunks.items()}
    events = {name: ev[ev["t"] >= 0] for name, ev in events.items()}
    for ev in events.values():  # the sensors time-stamp in microseconds (EVT3, libcaer), as real ones do
        ev["t"] -= ev["t"] % 1000
    return events


def _ground_truth(radiance, lighting: Lighting, times: np.ndarray, g: Geometry) -> dict[str, np.ndarray]:
    """Clean luminance at the webcam's exposure centres, divided by the global light level, gamma-encoded."""
    high = np.empty((len(times), g.high, g.high), np.uint8)
    low = np.empty((len(times), g.low, g.low), np.uint8)
    for k, t in enumerate(times):
        lum = (radiance(int(t)) @ LUMA_BGR) * np.float32(SKIN_REFERENCE / lighting.global_factor(int(t)))
        high[k] = _tone_map(lum)
        low[k] = _tone_map(cv2.resize(lum, (g.low, g.low), interpolation=cv2.INTER_AREA))
    return {"high": high, "low": low}


def _tone_map(linear: np.ndarray) -> np.ndarray:
    return np.round(255.0 * np.clip(linear, 0.0, 1.0) ** (1 / 2.2)).astype(np.uint8)
