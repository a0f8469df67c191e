"""Real face video to events (v2e-style): decode, undo the sRGB gamma, raise the frame rate by optical flow, simulate.

Also turns an OpenFace 2.x CSV of the same video into per-frame AU labels and AU episodes, so a converted video
becomes a labelled clip of the microexp-dataset/1 layout (`write_video_clip`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from microexp_ros.events.array import empty_events
from microexp_ros.facs import AU_NAMES, MODEL_AUS, NEUTRAL
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig, resample
from microexp_ros.sim.interpolation import iter_upsampled

# A normally exposed face averages about mid-grey: linear 0.18 maps to the simulator's 1.0.
FACE_LINEAR_REFERENCE = 0.18
# Rec. 709 luma weights in OpenCV's B, G, R channel order.
_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126])
MICRO_MAX_NS = 500_000_000  # expressions longer than this are macro-expressions


def _srgb_to_linear_lut() -> np.ndarray:
    c = np.arange(256) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_LUT = _srgb_to_linear_lut()


def bgr_to_linear(frames: np.ndarray) -> np.ndarray:
    """uint8 BGR [..., H, W, 3] -> float32 linear luminance [..., H, W] with 1.0 = a normally lit face."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 BGR frames [..., 3], got {frames.dtype} {frames.shape}")
    flat = frames.reshape(-1, frames.shape[-2], 3)  # rows of pixels, so OpenCV sees one 3-channel image
    weights = (_LUMA_BGR / FACE_LINEAR_REFERENCE).astype(np.float32).reshape(1, 3)
    lum = cv2.transform(cv2.LUT(flat, _SRGB_LUT), weights)
    return lum.reshape(frames.shape[:-1])


def read_video(path: str | os.PathLike, seconds: float | None = None,
               start_s: float = 0.0) -> tuple[np.ndarray, float]:
    """Decode BGR frames [N, H, W, 3] from start_s for `seconds` (all when None), and the video's fps."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"OpenCV cannot open {path} (unsupported container or codec)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not fps > 0:
            raise ValueError(f"{path} reports no frame rate")
        first = int(round(start_s * fps))
        count = None if seconds is None else max(1, int(round(seconds * fps)))
        frames = []
        index = 0
        while count is None or len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            if index >= first:
                frames.append(frame)
            index += 1
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path}: no frames decoded from {start_s} s on")
    return np.stack(frames), fps


def check_crop(crop: tuple[int, int, int, int] | None, width: int, height: int,
               aspect: float | None = None) -> tuple[int, int, int, int]:
    """The crop box (x, y, w, h) checked against a width x height frame.

    None means the largest centred box of the given aspect ratio (w / h), or the whole frame without one, so
    the sensor never sees a squashed face.
    """
    if crop is None:
        if aspect is None:
            return 0, 0, width, height
        w = min(width, int(round(height * aspect)))
        h = min(height, int(round(w / aspect)))
        return (width - w) // 2, (height - h) // 2, w, h
    x, y, w, h = (int(v) for v in crop)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"crop {crop} (x, y, w, h) does not fit inside the {width}x{height} video frame")
    return x, y, w, h


def video_duration_s(path: str | os.PathLike) -> float:
    """Length of a video from its container's frame count and rate (what chunking plans with)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"OpenCV cannot open {path} (unsupported container or codec)")
        fps, count = float(cap.get(cv2.CAP_PROP_FPS)), float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if not fps > 0 or not count > 0:
        raise ValueError(f"{path} reports no frame rate or frame count")
    return count / fps


def chunk_starts(duration_s: float, start_s: float, seconds: float | None, chunk_s: float,
                 stride_s: float | None = None) -> list[float]:
    """Start times of the chunk_s-long clips, every stride_s (default chunk_s), inside [start_s, start_s +
    seconds) (to the end of the video when seconds is None); only whole chunks."""
    stride_s = chunk_s if stride_s is None else stride_s
    if not chunk_s > 0 or not stride_s > 0:
        raise ValueError(f"chunk and stride must be > 0 s, got {chunk_s} and {stride_s}")
    end = duration_s if seconds is None else min(duration_s, start_s + seconds)
    count = int(np.floor((end - start_s - chunk_s) / stride_s + 1e-9)) + 1
    if count < 1:
        raise ValueError(f"no whole {chunk_s} s chunk fits between {start_s} s and {end:.3f} s")
    return [round(start_s + i * stride_s, 6) for i in range(count)]


def face_crop(frame: np.ndarray, width: int, height: int, detector=None) -> tuple[int, int, int, int]:
    """A width x height crop box centred on the best face in `frame`, shifted (not clipped) to stay inside
    the frame. The size is fixed, not face-relative, because a dataset directory holds one RGB size."""
    from microexp_ros.face.detector import FaceDetector

    frame_h, frame_w = frame.shape[:2]
    if not (0 < width <= frame_w and 0 < height <= frame_h):
        raise ValueError(f"face crop {width}x{height} does not fit the {frame_w}x{frame_h} video frame")
    faces = (detector or FaceDetector()).detect(frame)
    if not faces:
        raise ValueError("no face found in the first frame of the clip: give the crop box with --crop x,y,w,h")
    face = faces[0]
    x = min(max(0, face.x + face.w // 2 - width // 2), frame_w - width)
    y = min(max(0, face.y + face.h // 2 - height // 2), frame_h - height)
    return x, y, int(width), int(height)


@dataclass
class VideoEvents:
    """Events of a converted video and the frames they came from (times in ns from the first frame)."""

    events: np.ndarray                  # EVENT_DTYPE at the requested width x height
    frames: np.ndarray                  # uint8 BGR [N, h, w, 3]: the original frames inside the crop box
    frame_t: np.ndarray                 # int64 [N]
    fps: float
    crop: tuple[int, int, int, int]     # (x, y, w, h) in the original frame
    sizes: dict[str, tuple[int, int]]   # sensor (width, height) by name: "main" and the extra resolutions
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # events at the extra resolutions


def video_to_events(path: str | os.PathLike, width: int, height: int, *,
                    crop: tuple[int, int, int, int] | None = None, seconds: float | None = None,
                    start_s: float = 0.0, seed: int = 0, config: SensorConfig = SensorConfig(),
                    brightness: float = 1.0, upsample_hz: float = 120.0, max_motion_px: float | None = 1.0,
                    extra_resolutions: Mapping[str, tuple[int, int]] | None = None) -> VideoEvents:
    """Simulate a width x height event sensor watching the crop box of a real video.

    The crop (default: the largest centred box of the sensor's aspect ratio) is area-resampled to the largest
    requested sensor, frames are interpolated by optical flow to at least upsample_hz and to at most
    max_motion_px of motion per frame, and each sensor (the main one and any extra_resolutions, e.g.
    {"low": (48, 48)}) integrates the same interpolated luminance (times `brightness`, for dim light).
    """
    if not brightness > 0:
        raise ValueError(f"brightness must be > 0, got {brightness}")
    sizes = {"main": (int(width), int(height))}
    for name, (w, h) in (extra_resolutions or {}).items():
        if name == "main":
            raise ValueError("'main' names the width x height sensor; pick another extra resolution name")
        sizes[name] = (int(w), int(h))
    for name, (w, h) in sizes.items():
        if w <= 0 or h <= 0:
            raise ValueError(f"sensor {name!r} size must be positive, got {w}x{h}")
    frames, fps = read_video(path, seconds, start_s)
    box = check_crop(crop, frames.shape[2], frames.shape[1], aspect=width / height)
    x, y, w, h = box
    region = np.ascontiguousarray(frames[:, y:y + h, x:x + w])
    work_w, work_h = max(sizes.values(), key=lambda s: s[0] * s[1])
    gain = np.float32(brightness)
    work = [resample(bgr_to_linear(f) * gain, work_w, work_h) for f in region]  # per frame: little memory
    frame_t = np.round(np.arange(len(work)) * (1e9 / fps)).astype(np.int64)
    sims = {name: EventSimulator(sw, sh, config, seed) for name, (sw, sh) in sizes.items()}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in sizes}
    for i, (t_ns, frame) in enumerate(iter_upsampled(zip(frame_t.tolist(), work), upsample_hz, max_motion_px)):
        for name, sim in sims.items():
            if i == 0:
                sim.reset(frame, t_ns)
            else:
                chunks[name].append(sim.step(frame, t_ns))
    events = {name: np.concatenate(c) if c else empty_events() for name, c in chunks.items()}
    main = events.pop("main")
    return VideoEvents(events=main, frames=region, frame_t=frame_t, fps=fps, crop=box, sizes=sizes, extra=events)


# ------------------------------------------------------------------------------------------- OpenFace labels


@dataclass
class OpenFaceAUs:
    """Per-frame AU output of OpenFace 2.x FeatureExtraction."""

    t: np.ndarray                  # int64 [N] ns (the CSV's timestamp column)
    success: np.ndarray            # bool [N] face tracked
    intensity_aus: tuple[int, ...]
    intensity: np.ndarray          # float32 [N, len(intensity_aus)], 0..5
    presence_aus: tuple[int, ...]
    presence: np.ndarray           # uint8 [N, len(presence_aus)], 0/1

    def for_frames(self, start_ns: int, frame_t: np.ndarray) -> OpenFaceAUs:
        """The rows of the video frames at start_ns + frame_t (nearest timestamp, within half a frame period),
        with t = frame_t; raises ValueError when a frame has no row (a CSV of another video or span)."""
        frame_t = np.asarray(frame_t, dtype=np.int64)
        want = start_ns + frame_t
        half = int(np.median(np.diff(frame_t))) // 2 if frame_t.size > 1 else 1
        after = np.searchsorted(self.t, want)
        lo, hi = np.clip(after - 1, 0, self.t.size - 1), np.clip(after, 0, self.t.size - 1)
        j = np.where(np.abs(self.t[lo] - want) <= np.abs(self.t[hi] - want), lo, hi)
        far = np.abs(self.t[j] - want) > half
        if far.any():
            raise ValueError(f"{int(far.sum())} of {frame_t.size} frames have no OpenFace row within "
                             f"{half / 1e6:.1f} ms (first at {want[far][0] / 1e9:.3f} s); is it the CSV of this video?")
        return OpenFaceAUs(frame_t.copy(), self.success[j], self.intensity_aus, self.intensity[j],
                           self.presence_aus, self.presence[j])


def read_openface_csv(path: str | os.PathLike) -> OpenFaceAUs:
    """Parse an OpenFace 2.x CSV (header spaces tolerated); raises ValueError naming what is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenFace CSV not found: {path}")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise ValueError(f"{path}: no data rows")
    header = [h.strip() for h in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    for need in ("timestamp", "success"):
        if need not in col:
            raise ValueError(f"{path}: column {need!r} missing; not an OpenFace FeatureExtraction CSV")
    r_aus = tuple(int(h[2:4]) for h in header if h.startswith("AU") and h.endswith("_r"))
    c_aus = tuple(int(h[2:4]) for h in header if h.startswith("AU") and h.endswith("_c"))
    if not c_aus:
        raise ValueError(f"{path}: no AUxx_c presence columns (run FeatureExtraction with -aus)")
    try:
        data = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric value in the data rows ({exc})") from None
    if data.shape[1] != len(header):
        raise ValueError(f"{path}: rows have {data.shape[1]} values for {len(header)} columns")
    return OpenFaceAUs(
        t=np.round(data[:, col["timestamp"]] * 1e9).astype(np.int64),
        success=data[:, col["success"]] > 0.5,
        intensity_aus=r_aus,
        intensity=data[:, [col[f"AU{a:02d}_r"] for a in r_aus]].astype(np.float32),
        presence_aus=c_aus,
        presence=(data[:, [col[f"AU{a:02d}_c"] for a in c_aus]] > 0.5).astype(np.uint8),
    )


def au_episodes(labels: OpenFaceAUs, frame_ns: int) -> list[dict]:
    """One manifest "aus" entry per run of consecutive tracked frames where an AU is present.

    onset = first frame, offset = the next frame (last frame + frame_ns at the end), apex = the run's frame of
    peak intensity (its middle frame for presence-only AUs); intensity = peak intensity (1.0 if presence-only).
    """
    episodes = []
    for j, au in enumerate(labels.presence_aus):
        if au not in AU_NAMES:
            continue
        on = (labels.presence[:, j] > 0) & labels.success
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            if au in labels.intensity_aus:
                values = labels.intensity[a:b, labels.intensity_aus.index(au)]
                apex, peak = a + int(np.argmax(values)), float(values.max())
            else:
                apex, peak = (a + b - 1) // 2, 1.0
            offset = int(labels.t[b]) if b < labels.t.size else int(labels.t[b - 1]) + frame_ns
            episodes.append({"au": int(au), "intensity": round(peak, 3), "onset_ns": int(labels.t[a]),
                             "apex_ns": int(labels.t[apex]), "offset_ns": offset})
    episodes.sort(key=lambda e: (e["onset_ns"], e["au"]))
    return episodes


def main_au(episodes: list[dict]) -> int:
    """Single-label class: the model AU with the largest intensity x duration over its episodes, else neutral."""
    score: dict[int, float] = {}
    for e in episodes:
        if e["au"] in MODEL_AUS:
            score[e["au"]] = score.get(e["au"], 0.0) + e["intensity"] * (e["offset_ns"] - e["onset_ns"])
    return max(score, key=score.__getitem__) if score else NEUTRAL


# ------------------------------------------------------------------------------------------- dataset clip


def write_video_clip(out_dir: str | os.PathLike, converted: VideoEvents, low_key: str, *, clip_id: str,
                     identity: str, split: str, lighting: str, seed: int, command: str, video: str,
                     labels: OpenFaceAUs | None = None) -> dict:
    """Write `converted` (main = high, extra[low_key] = low) as one clip of a microexp-dataset/1 directory.

    A new directory gets a new manifest; an existing one gets the clip appended if its rgb size, fps and
    resolutions match. With OpenFace labels, au_frames.npz holds the per-frame AUs and "aus"/"label" come
    from the presence episodes. Returns the clip's manifest entry.
    """
    from microexp_ros.data.dataset import FORMAT, MANIFEST, load_manifest, write_clip, write_manifest

    out = Path(out_dir)
    high_ev, low_ev = converted.events, converted.extra[low_key]
    gray = cv2.cvtColor(converted.frames.reshape(-1, converted.frames.shape[2], 3), cv2.COLOR_BGR2GRAY)
    gray = gray.reshape(converted.frames.shape[:3])
    sizes = {"high": converted.sizes["main"], "low": converted.sizes[low_key]}
    grays = {r: np.stack([cv2.resize(g, sizes[r], interpolation=cv2.INTER_AREA) for g in gray]) for r in sizes}
    n, h, w = converted.frames.shape[:3]
    frame_ns = int(round(1e9 / converted.fps))
    header = {"format": FORMAT, "seed": int(seed), "command": command,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "rgb": {"width": w, "height": h, "fps": converted.fps},
              "resolutions": {r: {"width": s[0], "height": s[1]} for r, s in sizes.items()}, "clips": []}
    if (out / MANIFEST).exists():
        manifest = load_manifest(out)
        for key in ("rgb", "resolutions"):
            if manifest[key] != header[key]:
                raise ValueError(f"{out} holds a dataset with {key} {manifest[key]}, this clip has {header[key]}")
        if any(c["id"] == clip_id for c in manifest["clips"]):
            raise ValueError(f"{out} already has a clip {clip_id!r}")
    else:
        manifest = header
    episodes = au_episodes(labels, frame_ns) if labels is not None else []
    label = main_au(episodes)
    longest = max((e["offset_ns"] - e["onset_ns"] for e in episodes if e["au"] == label), default=0)
    entry = {"id": clip_id, "dir": f"clips/{clip_id}", "split": split, "identity": identity,
             "lighting": lighting, "source": "video", "label": label, "aus": episodes,
             "macro": longest > MICRO_MAX_NS, "duration_ns": int(n * frame_ns),
             "video": video, "crop": list(converted.crop)}
    write_clip(out, entry["dir"], {"high": high_ev, "low": low_ev}, converted.frames, converted.frame_t, grays)
    if labels is not None:
        np.savez(out / entry["dir"] / "au_frames.npz", t=labels.t, success=labels.success,
                 intensity_aus=np.array(labels.intensity_aus), intensity=labels.intensity,
                 presence_aus=np.array(labels.presence_aus), presence=labels.presence)
    manifest["clips"].append(entry)
    write_manifest(out, manifest)
    return entry

