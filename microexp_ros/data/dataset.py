"""Datasets in the `microexp-dataset/1` layout: planning, generation (parallel, deterministic), loading.

A dataset is `<root>/manifest.json` plus one directory of .npy arrays per clip (see the project's dataset
contract). Generation derives every clip's seed from the dataset seed, so the arrays depend only on the seed and
the plan, never on the number of workers. The loader validates what it reads and names what is wrong.
The simulator is imported inside the generation functions so readers of a dataset do not pay for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.facs import SINGLE_LABEL_CLASSES

FORMAT = "microexp-dataset/1"
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
RESOLUTIONS = ("high", "low")
# Interleaved split pattern: 14 train, 3 val, 3 test in 20, rotated per (class, lighting) cell so every cell
# reaches every split early.
_SPLIT_PATTERN = "ttvttsttttvttsttvtts"
_SPLIT_OF = {"t": "train", "v": "val", "s": "test"}
MACRO_FRACTION = 0.15


@dataclass
class Clip:
    """The arrays of one clip, keyed by resolution where there are two, and its metadata: the manifest entry
    when loaded, the simulator's part of it (labels, lighting, camera settings) when made by `sim.clip.make_clip`."""

    events: dict[str, np.ndarray]
    rgb: np.ndarray
    rgb_t: np.ndarray
    gray: dict[str, np.ndarray]
    meta: dict


@dataclass(frozen=True)
class Preset:
    """A named dataset size."""

    clips: int
    identities: int
    description: str
    plan: tuple[tuple[int, str], ...] = ()   # fixed (label, lighting) list; empty = balanced grid


PRESETS: dict[str, Preset] = {
    "tiny": Preset(26, 10, "2 clips per class, every lighting: tests and smoke runs"),
    "default": Preset(936, 40, "12 clips per class x lighting cell (13 classes x 6 lightings)"),
    "embedded": Preset(6, 6, "the bag shipped in bags/default: 6 micro-expressions, normal and dim light",
                       plan=((12, "normal"), (4, "dim"), (1, "normal"), (12, "dim"), (25, "normal"), (45, "dim"))),
}


# ------------------------------------------------------------------------------------------------ reading


def sensor_size(manifest: dict, resolution: str) -> tuple[int, int]:
    """(width, height) of the dataset's event sensor `resolution` ("high" or "low")."""
    geometry = manifest["resolutions"][resolution]
    return int(geometry["width"]), int(geometry["height"])


def load_manifest(root: str | os.PathLike) -> dict:
    """The manifest of the dataset at `root`, checked for the format and the keys the contract promises."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no dataset at {root}: {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    for key in ("seed", "rgb", "resolutions", "clips"):
        if key not in manifest:
            raise ValueError(f"{path}: missing key {key!r}")
    for i, clip in enumerate(manifest["clips"]):
        missing = [k for k in ("id", "dir", "split", "identity", "lighting", "label", "aus", "duration_ns")
                   if k not in clip]
        if missing:
            raise ValueError(f"{path}: clip #{i} ({clip.get('id', '?')}) lacks {', '.join(missing)}")
        if clip["split"] not in SPLITS:
            raise ValueError(f"{path}: clip {clip['id']} has split {clip['split']!r}, expected one of {SPLITS}")
        if clip["label"] not in SINGLE_LABEL_CLASSES:
            raise ValueError(f"{path}: clip {clip['id']} has label {clip['label']}, not in {SINGLE_LABEL_CLASSES}")
    return manifest


def clips(root: str | os.PathLike, split: str | None = None, **filters) -> list[dict]:
    """Manifest entries of the clips in `split` (all when None) whose fields equal every filter, e.g.
    `clips(root, "train", lighting="dim", label=12)`."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    entries = load_manifest(root)["clips"]
    if entries and filters:
        unknown = [k for k in filters if k not in entries[0]]
        if unknown:
            raise ValueError(f"unknown clip field(s) {', '.join(unknown)}; fields are {', '.join(entries[0])}")
    return [c for c in entries if (split is None or c["split"] == split)
            and all(c.get(k) == v for k, v in filters.items())]


def load_clip(root: str | os.PathLike, clip: dict) -> Clip:
    """All arrays of the clip whose manifest entry is `clip`, checked for dtypes and consistent shapes."""
    folder = Path(root) / clip["dir"]

    def load(name: str) -> np.ndarray:
        path = folder / f"{name}.npy"
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"clip {clip['id']}: {path} is missing") from None

    events = {r: load(f"events_{r}") for r in RESOLUTIONS}
    gray = {r: load(f"gray_{r}") for r in RESOLUTIONS}
    rgb, rgb_t = load("rgb"), load("rgb_t")
    for r, ev in events.items():
        if ev.dtype != EVENT_DTYPE:
            raise ValueError(f"clip {clip['id']}: events_{r} has dtype {ev.dtype}, expected {EVENT_DTYPE}")
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[3] != 3:
        raise ValueError(f"clip {clip['id']}: rgb must be uint8 [N, H, W, 3], got {rgb.dtype} {rgb.shape}")
    if rgb_t.dtype != np.int64 or rgb_t.shape != (rgb.shape[0],):
        raise ValueError(f"clip {clip['id']}: rgb_t must be int64 [{rgb.shape[0]}], got {rgb_t.dtype} {rgb_t.shape}")
    for r, g in gray.items():
        if g.dtype != np.uint8 or g.ndim != 3 or g.shape[0] != rgb.shape[0]:
            raise ValueError(f"clip {clip['id']}: gray_{r} must be uint8 [{rgb.shape[0]}, H, W], "
                             f"got {g.dtype} {g.shape}")
    return Clip(events=events, rgb=rgb, rgb_t=rgb_t, gray=gray, meta=clip)


# ------------------------------------------------------------------------------------------------ writing


def write_clip(root: str | os.PathLike, clip_dir: str, events: dict[str, np.ndarray], rgb: np.ndarray,
               rgb_t: np.ndarray, gray: dict[str, np.ndarray]) -> int:
    """Write one clip's arrays under `root/clip_dir`; returns the bytes written."""
    folder = Path(root) / clip_dir
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"rgb": rgb, "rgb_t": rgb_t}
    arrays |= {f"events_{r}": events[r] for r in RESOLUTIONS}
    arrays |= {f"gray_{r}": gray[r] for r in RESOLUTIONS}
    total = 0
    for name, array in arrays.items():
        path = folder / f"{name}.npy"
        np.save(path, array, allow_pickle=False)
        total += path.stat().st_size
    return total


def write_manifest(root: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest (last, so a dataset with a manifest is complete)."""
    path = Path(root) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False))
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ planning


def split_identities(names: list[str], seed: int) -> dict[str, str]:
    """Identity -> split, 70/15/15 of the identities (at least one in each split), shuffled by `seed`."""
    if len(names) < 3:
        raise ValueError(f"need >= 3 identities for identity-disjoint train/val/test splits, got {len(names)}")
    order = list(np.random.default_rng(np.random.SeedSequence([seed, 0x5B1])).permutation(len(names)))
    n_val = max(1, round(0.15 * len(names)))
    n_test = max(1, round(0.15 * len(names)))
    n_train = len(names) - n_val - n_test
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    return {names[i]: s for i, s in zip(order, splits)}


def plan_dataset(n_clips: int, seed: int, n_identities: int, fixed: tuple[tuple[int, str], ...] = ()
                 ) -> tuple[list, dict[str, str]]:
    """(ClipSpecs, identity -> split) of a dataset: a balanced grid over (class, lighting) with interleaved
    splits (or the `fixed` (label, lighting) list), identity-disjoint splits, per-clip seeds from `seed`."""
    from microexp_ros.sim.clip import BLINK, ClipSpec
    from microexp_ros.sim.face import make_identities
    from microexp_ros.sim.lighting import CONDITIONS

    if n_clips < 1:
        raise ValueError(f"a dataset needs >= 1 clip, got {n_clips}")
    identities = make_identities(n_identities, seed)
    split_of = split_identities([p.name for p in identities], seed)
    by_split = {s: [p for p in identities if split_of[p.name] == s] for s in SPLITS}
    used = dict.fromkeys(SPLITS, 0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x91A]))
    n_classes, n_light = len(SINGLE_LABEL_CLASSES), len(CONDITIONS)
    specs = []
    for i in range(n_clips):
        if fixed:
            label, lighting = fixed[i % len(fixed)]
            split = SPLITS[i % len(SPLITS)]
        else:
            # Cell c of the class x lighting grid: class c % 13, lighting (c % 13 + c // 13) % 6, a bijection
            # that also cycles through every lighting within the first 13 clips.
            cell = i % (n_classes * n_light)
            label = SINGLE_LABEL_CLASSES[cell % n_classes]
            lighting = CONDITIONS[(cell % n_classes + cell // n_classes) % n_light]
            split = _SPLIT_OF[_SPLIT_PATTERN[(i // (n_classes * n_light) + cell) % len(_SPLIT_PATTERN)]]
        person = by_split[split][used[split] % len(by_split[split])]
        used[split] += 1
        macro = bool(label not in (0, BLINK) and not fixed and rng.random() < MACRO_FRACTION)
        clip_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        specs.append(ClipSpec(clip_id=f"c{i:05d}", identity=person, lighting=lighting, label=label,
                              macro=macro, seed=clip_seed))
    return specs, split_of


# ------------------------------------------------------------------------------------------------ generation


def _generate_one(root: str, spec, geometry) -> dict:
    """Worker: make one clip, write its arrays, return its manifest entry (with sizes)."""
    from microexp_ros.sim.clip import make_clip

    data = make_clip(spec, geometry)
    clip_dir = f"clips/{spec.clip_id}"
    size = write_clip(root, clip_dir, data.events, data.rgb, data.rgb_t, data.gray)
    return {"id": spec.clip_id, "dir": clip_dir, "identity": spec.identity.name, "lighting": spec.lighting,
            "source": "synthetic", "label": spec.label, "macro": spec.macro,
            "duration_ns": geometry.duration_ns, "seed": spec.seed,
            "n_events": {r: int(len(data.events[r])) for r in RESOLUTIONS}, "bytes": size, **data.meta}


def generate_dataset(root: str | os.PathLike, n_clips: int, seed: int, n_identities: int, workers: int = 2,
                     fixed: tuple[tuple[int, str], ...] = (), command: str = "",
                     progress: Callable[..., Iterator] | None = None, duration_ns: int = 1_000_000_000) -> dict:
    """Generate a dataset of `duration_ns` clips at `root` (must not already hold one); returns the manifest.

    `progress`, when given, wraps the iterator of finished clips (e.g. a tqdm factory taking `total`)."""
    import dataclasses

    from microexp_ros.sim.clip import HIGH_SENSOR, LOW_SENSOR, Geometry
    from microexp_ros.sim.lighting import LEVELS
    from microexp_ros.sim.rgb_camera import WebcamConfig

    geometry = Geometry(duration_ns=duration_ns)   # checks the duration before anything is written
    root = Path(root)
    if (root / MANIFEST).exists():
        raise FileExistsError(f"{root} already holds a dataset ({MANIFEST}); choose an empty directory")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root.mkdir(parents=True, exist_ok=True)
    specs, split_of = plan_dataset(n_clips, seed, n_identities, fixed)
    started = time.perf_counter()
    entries: dict[str, dict] = {}
    if workers == 1:
        done = (_generate_one(str(root), s, geometry) for s in specs)
        for entry in (progress(done, total=len(specs)) if progress else done):
            entries[entry["id"]] = entry
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_generate_one, str(root), s, geometry) for s in specs]
            done = as_completed(futures)
            for future in (progress(done, total=len(specs)) if progress else done):
                entry = future.result()
                entries[entry["id"]] = entry
    seconds = time.perf_counter() - started
    clips_out = [dict(entries[s.clip_id], split=split_of[s.identity.name]) for s in specs]
    people = {s.identity.name: s.identity for s in specs}
    manifest = {
        "format": FORMAT, "seed": seed, "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rgb": {"width": geometry.rgb, "height": geometry.rgb, "fps": geometry.fps},
        "resolutions": {"high": {"width": geometry.high, "height": geometry.high},
                        "low": {"width": geometry.low, "height": geometry.low}},
        "geometry": dataclasses.asdict(geometry),
        # internal_rate_hz is set per clip to its event_render_hz (see each clip's entry)
        "sensors": {name: {k: v for k, v in dataclasses.asdict(cfg).items() if k != "internal_rate_hz"}
                    for name, cfg in (("high", HIGH_SENSOR), ("low", LOW_SENSOR))},
        "webcam": dataclasses.asdict(WebcamConfig(fps=geometry.fps)),
        "lighting_levels": LEVELS,
        "identities": [dict(p.to_dict(), split=split_of[name]) for name, p in sorted(people.items())],
        "generation_seconds": round(seconds, 2),
        "workers": workers,
        "clips": clips_out,
    }
    write_manifest(root, manifest)
    return manifest

