"""Procedural face identities and their rendering: a neutral albedo texture that AU motion then warps.

A face is drawn once per identity (supersampled, anti-aliased, with soft skin texture and baked 2.5-D shape
shading) on a square canvas whose normalised coordinates (u, v) in [0, 1]^2 run left-right and top-down.
Motion is applied by warping that texture with a displacement field (`FaceRenderer.render`), so sub-pixel
motion changes intensities smoothly, which is what an event sensor responds to. Glasses are a separate rigid
layer that moves with the head but not with facial muscles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

_SUPERSAMPLE = 4
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look different from another (normalised units)."""

    name: str
    face_width: float        # half-width of the face ellipse
    face_height: float       # half-height of the face ellipse
    jaw: float               # 0 = round chin, 1 = square jaw
    skin_bgr: tuple[float, float, float]   # linear albedo of the skin
    hair_bgr: tuple[float, float, float]
    hairline: float          # v of the hair line at the centre of the forehead
    brow_height: float       # v of the brows
    brow_thickness: float
    brow_arch: float
    eye_spacing: float       # u distance of each eye from the centre
    eye_width: float
    eye_height: float
    iris_bgr: tuple[float, float, float]
    nose_length: float       # v of the nostrils
    mouth_width: float       # half-width of the mouth
    mouth_v: float
    lip_thickness: float
    lip_bgr: tuple[float, float, float]
    glasses: bool
    texture_seed: int

    def to_dict(self) -> dict:
        """JSON-ready parameters (for manifests)."""
        return asdict(self)


def make_identities(count: int, seed: int) -> list[Identity]:
    """`count` distinct identities drawn deterministically from `seed`."""
    if count < 1:
        raise ValueError(f"identity count must be >= 1, got {count}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D]))
    people = []
    for i in range(count):
        tone = rng.uniform(0.12, 0.75)  # dark to light skin, linear albedo
        warmth = rng.uniform(0.85, 1.0)
        skin = (tone * 0.55 * warmth, tone * 0.75, tone * 1.0)
        hair_level = rng.choice([0.02, 0.04, 0.08, 0.15, 0.3])
        hair = (hair_level * rng.uniform(0.5, 0.8), hair_level * rng.uniform(0.7, 0.9), hair_level)
        iris_level = rng.uniform(0.05, 0.3)
        people.append(Identity(
            name=f"id{i:03d}",
            face_width=rng.uniform(0.34, 0.42),
            face_height=rng.uniform(0.43, 0.49),
            jaw=rng.uniform(0.0, 1.0),
            skin_bgr=skin,
            hair_bgr=hair,
            hairline=rng.uniform(0.1, 0.2),
            brow_height=rng.uniform(0.31, 0.36),
            brow_thickness=rng.uniform(0.016, 0.03),
            brow_arch=rng.uniform(0.0, 0.03),
            eye_spacing=rng.uniform(0.14, 0.18),
            eye_width=rng.uniform(0.06, 0.08),
            eye_height=rng.uniform(0.022, 0.032),
            iris_bgr=(iris_level * rng.uniform(0.4, 1.2), iris_level * rng.uniform(0.6, 1.0), iris_level * 0.8),
            nose_length=rng.uniform(0.6, 0.65),
            mouth_width=rng.uniform(0.09, 0.13),
            mouth_v=rng.uniform(0.74, 0.78),
            lip_thickness=rng.uniform(0.012, 0.024),
            lip_bgr=(skin[0] * 0.45, skin[1] * 0.4, skin[2] * 0.65),
            glasses=bool(rng.random() < 0.3),
            texture_seed=int(rng.integers(0, 2**31 - 1)),
        ))
    return people


def landmarks(identity: Identity) -> dict[str, tuple[float, float]]:
    """Named anatomical points in normalised (u, v) coordinates; AU motion is placed relative to these."""
    p = identity
    cx = 0.5
    eye_v = p.brow_height + 0.1
    points = {
        "nose_tip": (cx, p.nose_length - 0.02),
        "nose_bridge": (cx, eye_v + 0.01),
        "glabella": (cx, p.brow_height),
        "upper_lip": (cx, p.mouth_v - p.lip_thickness * 0.6),
        "lower_lip": (cx, p.mouth_v + p.lip_thickness * 0.8),
        "mouth_centre": (cx, p.mouth_v),
        "chin": (cx, min(0.5 + p.face_height - 0.05, 0.93)),
        "forehead": (cx, (p.hairline + p.brow_height) / 2),
    }
    for side, sign in (("left", -1.0), ("right", 1.0)):
        ex = cx + sign * p.eye_spacing
        points[f"eye_{side}"] = (ex, eye_v)
        points[f"upper_lid_{side}"] = (ex, eye_v - p.eye_height)
        points[f"lower_lid_{side}"] = (ex, eye_v + p.eye_height)
        points[f"brow_inner_{side}"] = (cx + sign * (p.eye_spacing - p.eye_width * 0.9), p.brow_height + 0.005)
        points[f"brow_outer_{side}"] = (cx + sign * (p.eye_spacing + p.eye_width * 1.1), p.brow_height + 0.01)
        points[f"cheek_{side}"] = (cx + sign * (p.eye_spacing + 0.02), eye_v + 0.12)
        points[f"nose_wing_{side}"] = (cx + sign * 0.045, p.nose_length - 0.01)
        points[f"mouth_corner_{side}"] = (cx + sign * p.mouth_width, p.mouth_v)
    return points


@dataclass(frozen=True)
class FaceTexture:
    """A rendered neutral face: linear BGR albedo and the rigid glasses layer, at `size` pixels square."""

    albedo: np.ndarray          # float32 [S, S, 3]
    glasses_rgb: np.ndarray     # float32 [S, S, 3] (zeros when no glasses)
    glasses_alpha: np.ndarray   # float32 [S, S, 1]
    size: int
    eyes: tuple[tuple[float, float, float, float], ...]   # (cx, cy, half-width, half-height) in pixels


def render_texture(identity: Identity, size: int) -> FaceTexture:
    """Draw the neutral face of `identity` at `size`x`size` pixels (supersampled, then area-averaged)."""
    if size < 16:
        raise ValueError(f"face size must be >= 16 pixels, got {size}")
    big = size * _SUPERSAMPLE
    canvas = Canvas(big)
    p = identity
    lm = landmarks(p)
    rng = np.random.default_rng(p.texture_seed)

    # Background wall: dim, gently textured, so head sway creates some events at the silhouette.
    img = np.empty((big, big, 3), np.float32)
    img[:] = np.array([0.16, 0.17, 0.18], np.float32)
    uu, vv = np.meshgrid((np.arange(big) + 0.5) / big, (np.arange(big) + 0.5) / big)

    # Face ellipse with a squarer jaw blended in.
    du, dv = (uu - 0.5) / p.face_width, (vv - 0.5) / p.face_height
    power = 2.0 + 2.0 * p.jaw * (vv > 0.5)
    inside = (np.abs(du) ** power + np.abs(dv) ** power) <= 1.0
    face_mask = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), _SUPERSAMPLE * 0.6)
    skin = np.array(p.skin_bgr, np.float32)
    # Baked 2.5-D shape shading: an ellipsoid lit from the front, darker towards the silhouette.
    radial = np.clip(du**2 + dv**2, 0.0, 1.0)
    shape_shading = (0.55 + 0.45 * np.sqrt(1.0 - radial)).astype(np.float32)
    img = img * (1 - face_mask[..., None]) + (skin * shape_shading[..., None]) * face_mask[..., None]

    # Hair above the hair line, following the head outline.
    hair_line = p.hairline + 0.06 * ((uu - 0.5) / p.face_width) ** 2
    hair = ((vv < hair_line) & ((du**2 + dv**2) < 1.25)).astype(np.float32)
    hair = cv2.GaussianBlur(hair, (0, 0), _SUPERSAMPLE * 0.8)[..., None]
    img = img * (1 - hair) + np.array(p.hair_bgr, np.float32) * hair

    # Cheeks: slightly redder, soft.
    for side in ("left", "right"):
        canvas.soft_blob(img, lm[f"cheek_{side}"], (0.06, 0.045), np.array([0.92, 0.93, 1.06], np.float32))

    # Brows: thick tapered arcs from inner to outer point.
    for side, sign in (("left", -1.0), ("right", 1.0)):
        inner, outer = np.array(lm[f"brow_inner_{side}"]), np.array(lm[f"brow_outer_{side}"])
        pts = []
        for s in np.linspace(0.0, 1.0, 12):
            pt = inner + s * (outer - inner)
            pt[1] -= p.brow_arch * np.sin(np.pi * min(1.0, s * 1.3))
            pts.append(pt)
        for k in range(len(pts) - 1):
            thick = p.brow_thickness * (1.0 - 0.5 * k / len(pts))
            canvas.line(img, pts[k], pts[k + 1], thick, np.array(p.hair_bgr) * 0.6)

    # Eyes: sclera, iris, pupil, lash line above, thin crease below; lid crease shading.
    for side in ("left", "right"):
        ex, ey = lm[f"eye_{side}"]
        canvas.soft_blob(img, (ex, ey - p.eye_height * 1.6), (p.eye_width * 1.1, p.eye_height * 0.9),
                         np.array([0.8, 0.8, 0.8], np.float32))
        canvas.ellipse(img, (ex, ey), (p.eye_width, p.eye_height), (0.62, 0.64, 0.66))
        canvas.circle(img, (ex, ey), p.eye_height * 0.95, p.iris_bgr)
        canvas.circle(img, (ex, ey), p.eye_height * 0.4, (0.01, 0.01, 0.01))
        canvas.circle(img, (ex - p.eye_height * 0.3, ey - p.eye_height * 0.3), p.eye_height * 0.15, (0.8, 0.8, 0.8))
        canvas.arc(img, (ex, ey), (p.eye_width, p.eye_height), 180, 360, 0.006, (0.02, 0.02, 0.025))
        canvas.arc(img, (ex, ey), (p.eye_width, p.eye_height), 0, 180, 0.003, np.array(p.skin_bgr) * 0.55)

    # Nose: bridge shading, wings, nostrils; nasolabial folds to the mouth corners.
    nx, ny = lm["nose_tip"]
    for side, sign in (("left", -1.0), ("right", 1.0)):
        canvas.line(img, (nx + sign * 0.03, lm["nose_bridge"][1] + 0.02), (nx + sign * 0.04, ny - 0.01),
                    0.008, np.array(p.skin_bgr) * 0.8)
        wx, wy = lm[f"nose_wing_{side}"]
        canvas.arc(img, (wx, wy), (0.022, 0.02), 90 - sign * 80, 90 + sign * 100, 0.006, np.array(p.skin_bgr) * 0.6)
        canvas.ellipse(img, (nx + sign * 0.022, wy + 0.004), (0.012, 0.006), np.array(p.skin_bgr) * 0.25)
        mx, my = lm[f"mouth_corner_{side}"]
        fold = [(wx + sign * 0.02, wy), (mx + sign * 0.03, (wy + my) / 2), (mx + sign * 0.025, my + 0.03)]
        canvas.line(img, fold[0], fold[1], 0.006, np.array(p.skin_bgr) * 0.78)
        canvas.line(img, fold[1], fold[2], 0.005, np.array(p.skin_bgr) * 0.82)

    # Mouth: upper and lower lip, dark line between them (opens under AU25).
    mx, my = lm["mouth_centre"]
    lip = p.lip_bgr
    canvas.ellipse(img, (mx, my - p.lip_thickness * 0.45), (p.mouth_width, p.lip_thickness * 0.7), lip)
    canvas.ellipse(img, (mx, my + p.lip_thickness * 0.6), (p.mouth_width * 0.92, p.lip_thickness), lip)
    canvas.line(img, lm["mouth_corner_left"], (mx, my + 0.002), 0.011, (0.015, 0.012, 0.02))
    canvas.line(img, (mx, my + 0.002), lm["mouth_corner_right"], 0.011, (0.015, 0.012, 0.02))
    # Commissures: the shadowed pits at the lip corners, whose motion carries AU12/15/20.
    for side in ("left", "right"):
        canvas.circle(img, lm[f"mouth_corner_{side}"], 0.012, np.array(p.skin_bgr) * 0.2)
    # Chin crease.
    canvas.arc(img, (mx, my + p.lip_thickness * 2.8), (p.mouth_width * 0.5, 0.02), 200, 340, 0.005,
               np.array(p.skin_bgr) * 0.8)

    # Skin texture: band-pass multiplicative noise (pores, freckles) so moving skin produces events.
    noise = rng.standard_normal((big, big)).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), _SUPERSAMPLE * 0.9)
    coarse = cv2.GaussianBlur(noise, (0, 0), _SUPERSAMPLE * 3.0)
    tex = 1.0 + 0.06 * fine / (fine.std() + 1e-6) + 0.04 * coarse / (coarse.std() + 1e-6)
    img *= np.clip(tex, 0.7, 1.3)[..., None]

    glasses_rgb = np.zeros((big, big, 3), np.float32)
    glasses_alpha = np.zeros((big, big), np.float32)
    if p.glasses:
        frame_bgr = (0.03, 0.03, 0.035)
        for side in ("left", "right"):
            ex, ey = lm[f"eye_{side}"]
            canvas.ellipse(glasses_alpha[..., None], (ex, ey + 0.005), (p.eye_width * 1.55, p.eye_height * 2.6),
                           (1.0,), thickness=0.008)
        lx, ly = lm["eye_left"]
        rx, _ = lm["eye_right"]
        canvas.line(glasses_alpha[..., None], (lx + p.eye_width * 1.5, ly - 0.005), (rx - p.eye_width * 1.5, ly - 0.005),
                    0.007, (1.0,))
        glasses_rgb[:] = np.array(frame_bgr, np.float32)

    def down(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)

    return FaceTexture(
        albedo=np.clip(down(img), 0.0, 1.0),
        glasses_rgb=down(glasses_rgb),
        glasses_alpha=down(glasses_alpha)[..., None],
        size=size,
        eyes=tuple((lm[f"eye_{side}"][0] * size - 0.5, lm[f"eye_{side}"][1] * size - 0.5,
                    p.eye_width * size, p.eye_height * size) for side in ("left", "right")),
    )


class FaceRenderer:
    """Warps one identity's texture by a displacement field: out(p) = texture(p - D(p)) (+ rigid glasses)."""

    def __init__(self, texture: FaceTexture) -> None:
        self.texture = texture
        s = texture.size
        grid = np.arange(s, dtype=np.float32)
        self._gx, self._gy = np.meshgrid(grid, grid)

    def render(self, displacement: tuple[np.ndarray, np.ndarray], head: tuple[float, float, float] = (0, 0, 0),
               lid_closure: float = 0.0, shade: np.ndarray | None = None) -> np.ndarray:
        """Linear BGR albedo [S, S, 3] of the face with muscle `displacement` (dx, dy in pixels), rigid
        `head` motion (dx, dy in pixels, rotation in degrees about the face centre) and both upper lids
        lowered by `lid_closure` (0 = open, 1 = shut), and the skin multiplied by `shade` [S, S] (wrinkles,
        in texture coordinates, so they move with the skin)."""
        s = self.texture.size
        albedo = self._with_lids(lid_closure) if lid_closure > 0.0 else self.texture.albedo
        if shade is not None:
            albedo = albedo * shade[..., None]
        hx, hy, rot = head
        c = (s - 1) / 2.0
        cos, sin = np.cos(np.radians(rot)), np.sin(np.radians(rot))
        # Inverse rigid motion first (where in the head frame does this pixel look?), then muscle motion.
        rx = self._gx - c - hx
        ry = self._gy - c - hy
        head_x = (cos * rx + sin * ry + c).astype(np.float32)
        head_y = (-sin * rx + cos * ry + c).astype(np.float32)
        dx, dy = displacement
        face = cv2.remap(albedo, head_x - dx, head_y - dy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        if self.texture.glasses_alpha.any():
            alpha = cv2.remap(self.texture.glasses_alpha, head_x, head_y, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)[..., None]
            face = face * (1 - alpha) + self.texture.glasses_rgb * alpha
        return face

    def _with_lids(self, closure: float) -> np.ndarray:
        """The texture with each upper lid's edge swept down `closure` of the way across the eye opening:
        lid skin (the row above the eye) above the edge, a dark lash line at it (sub-pixel, anti-aliased)."""
        albedo = self.texture.albedo.copy()
        closure = min(float(closure), 1.0)
        for cx, cy, ew, eh in self.texture.eyes:
            x0, x1 = int(np.floor(cx - ew - 1)), int(np.ceil(cx + ew + 2))
            y0, y1 = int(np.floor(cy - eh * 1.6)), int(np.ceil(cy + eh * 1.6 + 2))
            xs = np.arange(x0, x1, dtype=np.float32)
            ys = np.arange(y0, y1, dtype=np.float32)[:, None]
            half = eh * 1.08 * np.sqrt(np.clip(1.0 - ((xs - cx) / (ew * 1.04)) ** 2, 0.0, 1.0))
            top = cy - half
            edge = top + closure * 2.0 * half
            cover = np.clip(edge - ys + 0.5, 0.0, 1.0) * np.clip(ys - top + 1.0, 0.0, 1.0) * (half > 0)
            lash = 0.85 * np.exp(-0.5 * ((ys - edge) / 0.7) ** 2) * (half > 0) * min(1.0, closure * 8.0)
            skin = albedo[max(y0 - 1, 0), x0:x1][None, :, :]
            region = albedo[y0:y1, x0:x1]
            region[:] = (region * (1 - cover[..., None]) + skin * cover[..., None]) * (1 - lash[..., None])
        return albedo


class Canvas:
    """Anti-aliased drawing in normalised coordinates on a (supersampled) float image."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.scale = size * (1 << _SHIFT)

    def _pt(self, uv) -> tuple[int, int]:
        return int(round(uv[0] * self.scale)), int(round(uv[1] * self.scale))

    def _px(self, length: float) -> int:
        return max(1, int(round(length * self.size)))

    def line(self, img, a, b, thickness: float, color) -> None:
        cv2.line(img, self._pt(a), self._pt(b), _color(color, img), self._px(thickness), cv2.LINE_AA, _SHIFT)

    def circle(self, img, centre, radius: float, color) -> None:
        cv2.circle(img, self._pt(centre), int(round(radius * self.scale)), _color(color, img), -1, cv2.LINE_AA, _SHIFT)

    def ellipse(self, img, centre, axes, color, thickness: float | None = None) -> None:
        self.arc(img, centre, axes, 0, 360, thickness, color)

    def arc(self, img, centre, axes, start: float, end: float, thickness: float | None, color) -> None:
        t = -1 if thickness is None else self._px(thickness)
        ax = (int(round(axes[0] * self.scale)), int(round(axes[1] * self.scale)))
        cv2.ellipse(img, self._pt(centre), ax, 0, start, end, _color(color, img), t, cv2.LINE_AA, _SHIFT)

    def soft_blob(self, img, centre, sigma, factor: np.ndarray) -> None:
        """Multiply `img` by `factor` under a Gaussian bump (soft shading, blush, lid crease)."""
        s = self.size
        u = (np.arange(s) + 0.5) / s
        gu = np.exp(-0.5 * ((u - centre[0]) / sigma[0]) ** 2)
        gv = np.exp(-0.5 * ((u - centre[1]) / sigma[1]) ** 2)
        w = (gv[:, None] * gu[None, :]).astype(np.float32)[..., None]
        img *= 1.0 + w * (factor - 1.0)


def _color(color, img: np.ndarray) -> tuple[float, ...]:
    values = tuple(float(c) for c in np.atleast_1d(color))
    return values[: img.shape[2]] if img.ndim == 3 else values[:1]
