"""FACS Action Units as anatomically placed displacement fields, and their onset -> apex -> offset timing.

Each AU moves skin near named landmarks (`face.landmarks`): brows for AU1/2/4, cheeks and lower lids for
AU6/7, nose wings for AU9, lip corners for AU12/15/20, chin for AU17, lips for AU25, upper lids for AU45.
A field is a sum of smooth Gaussian patches, so the warp stays one-to-one at micro-expression amplitudes.
Displacements are stored for FACS intensity 1 in pixels of a `size`-pixel face and scale linearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from microexp_ros.facs import MODEL_AUS
from microexp_ros.sim.face import Canvas, Identity, landmarks

# Displacement at FACS intensity 1 for a 128-pixel face, in pixels: micro intensities (1-2.5) move 0.8-2 px.
_PX_PER_INTENSITY = 0.8
_REFERENCE_SIZE = 128

# (landmark, offset (du, dv), sigma (su, sv), direction (dx, dy) in units of _PX_PER_INTENSITY); "~" in a
# landmark name is replaced by left and right, and dx is mirrored on the left side.
_PATCHES: dict[int, list[tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]]]] = {
    1: [("brow_inner_~", (0.0, 0.0), (0.045, 0.05), (0.0, -1.0)),
        ("forehead", (0.0, 0.0), (0.06, 0.05), (0.0, -0.5))],
    2: [("brow_outer_~", (0.0, 0.0), (0.045, 0.05), (0.0, -1.0)),
        ("upper_lid_~", (0.04, -0.01), (0.04, 0.02), (0.0, -0.4))],
    4: [("brow_inner_~", (0.0, 0.0), (0.05, 0.045), (-0.6, 0.9)),
        ("glabella", (0.0, 0.0), (0.03, 0.04), (0.0, 0.5))],
    6: [("cheek_~", (0.0, -0.02), (0.07, 0.05), (0.15, -1.0)),
        ("lower_lid_~", (0.02, 0.01), (0.05, 0.02), (0.0, -0.6))],
    7: [("lower_lid_~", (0.0, 0.0), (0.05, 0.03), (0.0, -1.0)),
        ("upper_lid_~", (0.0, 0.0), (0.05, 0.025), (0.0, 0.4))],
    9: [("nose_wing_~", (0.0, 0.0), (0.03, 0.035), (-0.2, -1.0)),
        ("nose_bridge", (0.0, 0.02), (0.025, 0.04), (0.0, -0.6)),
        ("upper_lip", (0.0, -0.01), (0.06, 0.02), (0.0, -0.5)),
        ("brow_inner_~", (0.0, 0.0), (0.04, 0.04), (-0.2, 0.4))],
    12: [("mouth_corner_~", (0.0, 0.0), (0.04, 0.035), (0.8, -1.0)),
         ("cheek_~", (0.0, 0.03), (0.05, 0.04), (0.2, -0.3))],
    15: [("mouth_corner_~", (0.0, 0.0), (0.035, 0.035), (0.1, 1.0))],
    17: [("chin", (0.0, -0.02), (0.08, 0.045), (0.0, -1.0)),
         ("lower_lip", (0.0, 0.0), (0.07, 0.02), (0.0, -0.6))],
    20: [("mouth_corner_~", (0.0, 0.0), (0.04, 0.03), (1.0, 0.25))],
    25: [("upper_lip", (0.0, -0.015), (0.07, 0.03), (0.0, -0.45)),
         ("lower_lip", (0.0, 0.025), (0.07, 0.04), (0.0, 0.75))],
}
_BLINK = 45

@dataclass(frozen=True)
class AUEvent:
    """One occurrence of an AU: FACS intensity (1-5) and times in ns from clip start."""

    au: int
    intensity: float
    onset_ns: int
    apex_ns: int
    offset_ns: int

    def __post_init__(self) -> None:
        if self.au not in MODEL_AUS:
            raise ValueError(f"AU{self.au} is not animated; animated AUs are {MODEL_AUS}")
        if not 0 < self.intensity <= 5:
            raise ValueError(f"AU intensity must be in (0, 5], got {self.intensity}")
        if not self.onset_ns < self.apex_ns < self.offset_ns:
            raise ValueError(f"AU{self.au} times must satisfy onset < apex < offset, got "
                             f"{self.onset_ns}, {self.apex_ns}, {self.offset_ns}")

    def activation(self, t_ns: np.ndarray | int) -> np.ndarray:
        """0..1 activation at t: smoothstep rise onset -> apex, smoothstep fall apex -> offset."""
        t = np.asarray(t_ns, dtype=np.float64)
        rise = np.clip((t - self.onset_ns) / (self.apex_ns - self.onset_ns), 0.0, 1.0)
        fall = np.clip((self.offset_ns - t) / (self.offset_ns - self.apex_ns), 0.0, 1.0)
        s = np.where(t <= self.apex_ns, rise, fall)
        return s * s * (3.0 - 2.0 * s)

    def to_dict(self) -> dict:
        return {"au": self.au, "intensity": round(float(self.intensity), 3), "onset_ns": int(self.onset_ns),
                "apex_ns": int(self.apex_ns), "offset_ns": int(self.offset_ns)}


def au_field(identity: Identity, au: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (dx, dy) float32 [size, size] in pixels of muscle AU `au` at FACS intensity 1.
    AU45 (blink) is not a skin displacement: the renderer sweeps the lid (`MotionModel.lid_closure`)."""
    if au not in _PATCHES:
        raise ValueError(f"AU{au} has no displacement field; muscle AUs are {sorted(_PATCHES)}")
    lm = landmarks(identity)
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = np.zeros((size, size))
    dy = np.zeros((size, size))
    scale = _PX_PER_INTENSITY * size / _REFERENCE_SIZE
    for name, (ou, ov), (su, sv), (mx, my) in _PATCHES[au]:
        sides = (("left", -1.0), ("right", 1.0)) if "~" in name else ((None, 1.0),)
        for side, mirror in sides:
            cu, cv = lm[name.replace("~", side) if side else name]
            cu += mirror * ou
            cv += ov
            g = np.exp(-0.5 * ((u - cv) / sv) ** 2)[:, None] * np.exp(-0.5 * ((u - cu) / su) ** 2)[None, :]
            dx += g * mirror * mx * scale
            dy += g * my * scale
    return dx.astype(np.float32), dy.astype(np.float32)


def blink_intensity() -> float:
    """The nominal FACS intensity recorded for a blink (closure is always full)."""
    return 5.0


# Darkening of a wrinkle line per FACS intensity unit (skin folds deepen with the AU: FACS appearance changes).
_WRINKLE_DEPTH = 0.16
_WRINKLE_SUPERSAMPLE = 2


def au_wrinkles(identity: Identity, au: int, size: int) -> np.ndarray:
    """float32 [size, size] darkening (0..1) of the folds AU `au` deepens, per FACS intensity unit: forehead
    lines (AU1 centre, AU2 sides), glabella furrows (AU4), crow's feet and infraorbital furrow (AU6), lower-lid
    bulge (AU7), nose-root lines (AU9), nasolabial fold (AU12), marionette lines (AU15), mentolabial sulcus
    (AU17), lip-corner stretch lines (AU20); zero for AU25 and AU45."""
    p = identity
    lm = landmarks(p)
    big = size * _WRINKLE_SUPERSAMPLE
    img = np.zeros((big, big, 1), np.float32)
    c = Canvas(big)
    w = 0.006
    lines: list[tuple[tuple[float, float], tuple[float, float]]] = []
    arcs: list[tuple[tuple[float, float], tuple[float, float], float, float]] = []
    forehead = [p.brow_height - d for d in (0.035, 0.06, 0.085) if p.brow_height - d > p.hairline + 0.015]
    for side, sign in (("left", -1.0), ("right", 1.0)):
        ex, ey = lm[f"eye_{side}"]
        outer = ex + sign * (p.eye_width + 0.012)
        mx, my = lm[f"mouth_corner_{side}"]
        wx, wy = lm[f"nose_wing_{side}"]
        if au == 2:
            arcs += [((0.5 + sign * 0.2, v + 0.02), (0.07, 0.02), 200, 340) for v in forehead]
        elif au == 4:
            lines.append(((0.5 + sign * 0.018, p.brow_height - 0.025), (0.5 + sign * 0.012, p.brow_height + 0.035)))
        elif au == 6:
            lines += [((outer, ey), (outer + sign * 0.04 * np.cos(a), ey + 0.04 * np.sin(a)))
                      for a in np.radians((-25.0, 0.0, 25.0))]
            arcs.append(((ex, ey + p.eye_height + 0.02), (p.eye_width, 0.012), 20, 160))
        elif au == 7:
            arcs.append(((ex, ey + p.eye_height + 0.006), (p.eye_width * 0.9, 0.008), 20, 160))
        elif au == 9:
            lines.append(((wx - sign * 0.005, wy - 0.07), (wx + sign * 0.01, wy - 0.03)))
        elif au == 12:
            lines += [((wx + sign * 0.02, wy), (mx + sign * 0.03, (wy + my) / 2)),
                      ((mx + sign * 0.03, (wy + my) / 2), (mx + sign * 0.025, my + 0.03))]
        elif au == 15:
            lines.append(((mx + sign * 0.005, my + 0.01), (mx + sign * 0.02, my + 0.06)))
        elif au == 20:
            lines.append(((mx + sign * 0.01, my), (mx + sign * 0.045, my + 0.005)))
    if au == 1:
        arcs += [((0.5, v + 0.02), (0.12, 0.02), 200, 340) for v in forehead]
    elif au == 9:
        bridge_v = lm["nose_bridge"][1]
        lines += [((0.5 - 0.025, bridge_v + d), (0.5 + 0.025, bridge_v + d)) for d in (-0.01, 0.005, 0.02)]
    elif au == 17:
        lx, ly = lm["lower_lip"]
        arcs.append(((lx, ly + 0.035), (p.mouth_width * 0.7, 0.015), 200, 340))
    for a, b in lines:
        c.line(img, a, b, w, (1.0,))
    for centre, axes, start, end in arcs:
        c.arc(img, centre, axes, start, end, w, (1.0,))
    small = cv2.resize(img[..., 0], (size, size), interpolation=cv2.INTER_AREA)
    return (cv2.GaussianBlur(small, (0, 0), 0.6) * _WRINKLE_DEPTH).astype(np.float32)


class MotionModel:
    """Precomputed AU fields of one identity; sums the active AUs at time t."""

    def __init__(self, identity: Identity, size: int, events: list[AUEvent]) -> None:
        self.size = size
        self.events = list(events)
        muscles = {e.au for e in self.events} - {_BLINK}
        self._fields = {au: au_field(identity, au, size) for au in muscles}
        self._wrinkles = {au: au_wrinkles(identity, au, size) for au in muscles}

    def displacement(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) float32 [size, size] in pixels at time t_ns."""
        dx = np.zeros((self.size, self.size), np.float32)
        dy = np.zeros((self.size, self.size), np.float32)
        for e in self.events:
            if e.au == _BLINK:
                continue
            gain = float(e.activation(t_ns)) * e.intensity
            if gain > 0.0:
                fx, fy = self._fields[e.au]
                dx += gain * fx
                dy += gain * fy
        return dx, dy

    def shade(self, t_ns: int) -> np.ndarray | None:
        """Skin darkening factor [size, size] of the active AUs' wrinkles at t_ns (None when nothing is active)."""
        dark = None
        for e in self.events:
            gain = float(e.activation(t_ns)) * e.intensity if e.au != _BLINK else 0.0
            if gain > 0.0:
                dark = gain * self._wrinkles[e.au] if dark is None else dark + gain * self._wrinkles[e.au]
        return None if dark is None else np.clip(1.0 - dark, 0.3, 1.0)

    def lid_closure(self, t_ns: int) -> float:
        """Upper-lid closure 0..1 at t_ns (blinks close the eye fully at apex)."""
        return max((float(e.activation(t_ns)) for e in self.events if e.au == _BLINK), default=0.0)


def random_au_event(au: int, rng: np.random.Generator, duration_ns: int, macro: bool,
                    avoid: tuple[int, int] | None = None) -> AUEvent:
    """A micro (40-500 ms, intensity 1-2.5) or macro (0.5-0.75 of the clip, intensity 3-5) occurrence of `au`,
    or a blink (100-300 ms), placed inside the clip (and outside `avoid`, an interval in ns, when given)."""
    ms = 1_000_000
    if au == _BLINK:
        total = int(rng.uniform(100, 300) * ms)
        intensity = blink_intensity()
    elif macro:
        total = int(rng.uniform(0.5, 0.75) * duration_ns)
        intensity = float(rng.uniform(3.0, 5.0))
    else:
        total = int(rng.uniform(40, 500) * ms)
        intensity = float(rng.uniform(1.0, 2.5))
    rise = int(total * rng.uniform(0.3, 0.6))
    margin = int(0.08 * duration_ns)
    latest = duration_ns - margin - total
    if latest <= margin:
        raise ValueError(f"a {total / ms:.0f} ms AU{au} does not fit a {duration_ns / ms:.0f} ms clip")
    for _ in range(100):
        onset = int(rng.integers(margin, latest))
        if avoid is None or onset + total < avoid[0] or onset > avoid[1]:
            break
    else:
        raise ValueError(f"no room for AU{au} outside {avoid} in a {duration_ns / ms:.0f} ms clip")
    return AUEvent(au=au, intensity=intensity, onset_ns=onset, apex_ns=onset + rise, offset_ns=onset + total)
