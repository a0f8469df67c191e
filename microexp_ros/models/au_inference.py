"""Action Unit inference shared by training, offline evaluation and the ROS node: window choice, input
encoding, model building and loading, prediction and the activation hysteresis.

Everything that turns raw events (or webcam frames) plus a window into model input lives here, so the node
and `microexp eval au` produce identical outputs for the same window.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microexp_ros.bench.timing import latencies_ms
from microexp_ros.events.denoise import background_activity_filter
from microexp_ros.events.histogram import polarity_histograms
from microexp_ros.events.window import crop, window_slice
from microexp_ros.facs import MODEL_AUS, NEUTRAL, SINGLE_LABEL_CLASSES
from microexp_ros.models.shipped import DEFAULT_EVENTS_MODEL
from microexp_ros.models.weights import WeightsError, load_model

DEFAULT_WINDOW_NS = 200_000_000
MODALITIES = ("events", "rgb")
# Event input encodings: "polarity" = log counts per polarity (2 channels); "polarity_net" adds the signed net
# count ON - OFF (3 channels): a periodic ripple over whole periods (mains flicker: 5 per 50 ms bin) cancels
# in it and polarity-symmetric noise averages to zero, while a moving edge's events, one polarity per cell,
# add up. "polarity_baf" adds the log counts per polarity of the events a background-activity filter keeps
# (4 channels): shot noise in the dark fires pixels alone, an edge fires neighbours within milliseconds.
# Every encoding starts with the "polarity" channels (AUEnsemble feeds members the leading ones).
ENCODINGS = {"polarity": 2, "polarity_net": 3, "polarity_baf": 4}
BAF_DT_NS = 3_000_000   # the support time of "polarity_baf" (docs/au_results.md: why 3 ms)


# --- windows and targets -------------------------------------------------------------------------------------


def main_au(clip: Mapping) -> dict | None:
    """The labelled AU occurrence of a manifest clip entry (None for a neutral clip)."""
    label = int(clip["label"])
    if label == NEUTRAL:
        return None
    for au in clip.get("aus", []):
        if int(au["au"]) == label and au.get("role", "main") == "main":
            return au
    raise ValueError(f"clip {clip.get('id', '?')} is labelled AU{label} but lists no such AU occurrence")


def select_window(
    clip: Mapping, length_ns: int = DEFAULT_WINDOW_NS, rng: np.random.Generator | None = None, jitter_ns: int = 0
) -> tuple[int, int]:
    """The [t0, t1) window of a clip to classify: it covers the main AU's onset -> apex (ending at the apex when
    the rise is longer than the window); for a neutral clip a random window (`rng`) or the centre (rng=None).
    `jitter_ns` (training augmentation, needs rng) shifts the window uniformly by up to that much."""
    duration = int(clip["duration_ns"])
    if length_ns <= 0 or length_ns > duration:
        raise ValueError(f"window length must be in (0, {duration}] ns for clip {clip.get('id', '?')}, got {length_ns}")
    au = main_au(clip)
    if au is None:
        t0 = int(rng.integers(0, duration - length_ns + 1)) if rng is not None else (duration - length_ns) // 2
    else:
        onset, apex = int(au["onset_ns"]), int(au["apex_ns"])
        span = apex - onset
        t0 = onset - (length_ns - span) // 2 if span <= length_ns else apex - length_ns
    if jitter_ns:
        if rng is None:
            raise ValueError("window jitter needs an rng")
        t0 += int(rng.integers(-jitter_ns, jitter_ns + 1))
    t0 = min(max(t0, 0), duration - length_ns)
    return t0, t0 + length_ns


def au_targets(clip: Mapping, t0: int, t1: int) -> tuple[np.ndarray, int]:
    """(multi-hot float32 [len(MODEL_AUS)] of the AUs active somewhere in [t0, t1), single-label class index)."""
    multi = np.zeros(len(MODEL_AUS), np.float32)
    for au in clip.get("aus", []):
        if int(au["onset_ns"]) < t1 and int(au["offset_ns"]) > t0 and int(au["au"]) in MODEL_AUS:
            multi[MODEL_AUS.index(int(au["au"]))] = 1.0
    label = int(clip["label"])
    if label not in SINGLE_LABEL_CLASSES:
        raise ValueError(f"clip {clip.get('id', '?')} has label {label}, not one of {SINGLE_LABEL_CLASSES}")
    return multi, SINGLE_LABEL_CLASSES.index(label)


# --- input encoding ------------------------------------------------------------------------------------------


def _check_roi(roi: tuple[int, int, int, int], sensor_size: tuple[int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in roi)
    sw, sh = (int(v) for v in sensor_size)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > sw or y + h > sh:
        raise ValueError(f"face region (x={x}, y={y}, w={w}, h={h}) must lie inside the {sw}x{sh} sensor")
    return x, y, w, h


def _resize_stack(planes: np.ndarray, size: int) -> np.ndarray:
    """Area-resample [N, H, W] planes to [N, size, size] (averaging when shrinking, replicating when growing)."""
    if planes.shape[-2:] == (size, size):
        return planes
    return F.interpolate(torch.from_numpy(planes)[None], size=(size, size), mode="area")[0].numpy()


def encode_events(
    events: np.ndarray,
    t0_ns: int,
    t1_ns: int,
    roi: tuple[int, int, int, int],
    sensor_size: tuple[int, int],
    size: int,
    bins: int,
    encoding: str = "polarity",
    baf_dt_ns: int | None = BAF_DT_NS,
) -> np.ndarray:
    """[bins, C, size, size] float32 model input: per-polarity counts of the face region in `bins` time bins,
    resampled to size x size as counts per output cell, then log1p-compressed (C = 2: OFF, ON); with
    encoding "polarity_net" a third channel holds sign(ON - OFF) * log1p(|ON - OFF|); with "polarity_baf"
    channels 2-3 are the OFF/ON counts of the events `background_activity_filter` keeps (support time
    `baf_dt_ns`, within the window and face region; unused by the other encodings). Events must be time-sorted."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    if encoding == "polarity_baf" and baf_dt_ns is None:
        raise ValueError("encoding polarity_baf needs the filter's support time baf_dt_ns, got None")
    x, y, w, h = _check_roi(roi, sensor_size)
    face = crop(window_slice(events, t0_ns, t1_ns), x, y, w, h)
    hist = polarity_histograms(face, w, h, bins, t0_ns, t1_ns)
    if encoding == "polarity_baf":
        kept = background_activity_filter(face, w, h, baf_dt_ns)
        hist = np.concatenate([hist, polarity_histograms(kept, w, h, bins, t0_ns, t1_ns)], axis=1)
    counted = hist.shape[1]
    cells = (_resize_stack(hist.reshape(bins * counted, h, w), size) * np.float32(w * h / (size * size))
             ).reshape(bins, counted, size, size)
    planes = np.log1p(cells)
    if encoding == "polarity_net":
        net = cells[:, 1:2] - cells[:, 0:1]
        planes = np.concatenate([planes, np.sign(net) * np.log1p(np.abs(net))], axis=1)
    return planes.astype(np.float32)


def time_reversed(x: torch.Tensor) -> torch.Tensor:
    """Encoded event windows [B, bins, C, H, W] as the same scene played backwards: bins in reverse order, the
    polarities swapped (a brightening run backwards darkens), the net channel of "polarity_net" negated. It
    equals encoding the reversed events when the bins have a whole number of ns (a training augmentation).
    Not defined for "polarity_baf" (4 channels): the filter's support looks back in time only."""
    if x.shape[2] == ENCODINGS["polarity_baf"]:
        raise ValueError("windows encoded with 'polarity_baf' cannot be played backwards: the background-activity "
                         "filter is causal")
    out = x.flip(1)
    return torch.cat([out[:, :, 1:2], out[:, :, 0:1], -out[:, :, 2:]], dim=2)


def encode_frames(
    frames: np.ndarray, frame_t: np.ndarray, t0_ns: int, t1_ns: int, roi: tuple[int, int, int, int], size: int, bins: int
) -> np.ndarray:
    """[bins, 1, size, size] float32 model input from webcam frames: for each time bin the latest frame whose
    exposure centre is at or before the bin centre (the first frame if none), gray, face region, area-resized,
    standardised over the window (an ideal auto-gain: what RGB can still show in dim light is its noise)."""
    if frames.ndim not in (3, 4) or len(frames) != len(frame_t) or len(frames) == 0:
        raise ValueError(f"frames must be [N, H, W] or [N, H, W, 3] with N = len(frame_t) > 0, got {frames.shape} "
                         f"and {len(frame_t)} times")
    height, width = frames.shape[1:3]
    x, y, w, h = _check_roi(roi, (width, height))
    centres = t0_ns + (np.arange(bins) * 2 + 1) * (t1_ns - t0_ns) // (2 * bins)
    index = np.clip(np.searchsorted(frame_t, centres, side="right") - 1, 0, len(frames) - 1)
    picked = frames[index, y:y + h, x:x + w]
    if picked.ndim == 4:
        picked = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_BGR2GRAY) for f in picked])
    gray = _resize_stack(picked.astype(np.float32) / 255.0, size)
    gray = (gray - gray.mean()) / (gray.std() + 1e-3)
    return gray.reshape(bins, 1, size, size).astype(np.float32)


class FrameHistory:
    """The last `count` webcam frames of a stream with their exposure times, as `encode_frames` takes them: what a
    streaming node keeps so that a window's RGB input holds the frames of the whole window, not only its last."""

    def __init__(self, count: int) -> None:
        self._frames: deque[tuple[int, np.ndarray]] = deque(maxlen=count)

    def add(self, t_ns: int, frame: np.ndarray) -> None:
        """Append a frame; a frame of another size or channel count starts the history anew."""
        if self._frames and self._frames[-1][1].shape != frame.shape:
            self._frames.clear()
        self._frames.append((int(t_ns), frame))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames [N, H, W(, 3)], times [N]); ValueError when empty."""
        if not self._frames:
            raise ValueError("no frame yet")
        return np.stack([f for _, f in self._frames]), np.array([t for t, _ in self._frames], dtype=np.int64)


# --- models ----------------------------------------------------------------------------------------------------


def model_input(config: Mapping) -> dict[str, Any]:
    """What a model reads from a window, from its weights config, with the defaults of sidecars written before
    a key existed: models with equal model_input take the same input tensor."""
    modality = config.get("modality")
    return {"modality": modality, "bins": int(config["bins"]), "size": int(config["size"]),
            "window_ns": int(config.get("window_ns", DEFAULT_WINDOW_NS)), "in_channels": int(config["in_channels"]),
            "encoding": str(config.get("encoding", "polarity")) if modality == "events" else None,
            "baf_dt_ns": int(config.get("baf_dt_ns", BAF_DT_NS)) if config.get("encoding") == "polarity_baf" else None}


def input_differences(a: Mapping, b: Mapping, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """{key: (a's value, b's value)} where the model_input of weights configs a and b differ (`ignore` aside)."""
    ia, ib = model_input(a), model_input(b)
    return {k: (ia[k], ib[k]) for k in ia if k not in ignore and ia[k] != ib[k]}


def build_au_model(config: Mapping) -> nn.Module:
    """The AU network described by a weights config: arch "snn" (SpikingAUNet), "cnn" (FrameCNN) or
    "ensemble" (AUEnsemble of member configs)."""
    arch = config.get("arch")
    if arch == "snn":
        from microexp_ros.models.snn import build_snn

        return build_snn(dict(config))
    if arch == "cnn":
        from microexp_ros.models.rgb_cnn import build_cnn

        return build_cnn(dict(config))
    if arch == "ensemble":
        from microexp_ros.models.au_ensemble import build_ensemble

        return build_ensemble(dict(config))
    raise ValueError(f"unknown AU model arch {arch!r} (expected 'snn', 'cnn' or 'ensemble')")


@dataclass(frozen=True)
class AUResult:
    """One window's prediction: per-AU probabilities (MODEL_AUS order), the single-label class (FACS number,
    0 = neutral) with its probability, and the forward-pass wall time."""

    probabilities: np.ndarray
    label: int
    label_probability: float
    class_probabilities: np.ndarray
    latency_ms: float

    def as_dict(self) -> dict[int, float]:
        """AU number -> probability."""
        return {au: float(p) for au, p in zip(MODEL_AUS, self.probabilities)}


class AUPredictor:
    """A loaded AU model plus its input encoding: `predict` (events) or `predict_frames` (RGB).

    One window ([1, bins, C, size, size], the encoders' output) runs through a TorchScript trace of the model,
    made on the first such call (~0.1 s) and kept only if it gives exactly the eager model's outputs on that
    window: the spiking layers loop over time bins in Python (snntorch), and the trace replays the same
    operators without that overhead, about 2x faster per window on CPU. `torch.jit.trace` is deprecated in
    favour of torch.compile / torch.export, but with the pinned torch it is the cheap option: export took
    2.3 s at start-up for a 13 % gain, compile needs a C++ toolchain and minutes. Other shapes run eagerly.

    With `flip_average` a window also runs mirrored left-right (one batch of two): the models were trained
    with random horizontal flips, and `fuse_probabilities` of the two views is a little more accurate than
    either (docs/au_results.md, "Test-time flip averaging").
    """

    def __init__(self, model: nn.Module, meta: Mapping, name: str = "model", flip_average: bool = False) -> None:
        config = meta["config"]
        modality = config.get("modality")
        if modality not in MODALITIES:
            raise WeightsError(f"weights '{name}' have modality {modality!r}, expected one of {MODALITIES}")
        self.model = model.eval()
        self.meta = dict(meta)
        self.name = name
        self.modality: str = modality
        read = model_input(config)
        self.size, self.bins, self.window_ns = read["size"], read["bins"], read["window_ns"]
        self.channels, self.encoding, self.baf_dt_ns = read["in_channels"], read["encoding"], read["baf_dt_ns"]
        if modality == "events" and ENCODINGS.get(self.encoding) != self.channels:
            raise WeightsError(f"weights '{name}' have encoding {self.encoding!r} with {self.channels} input "
                               f"channels; known encodings and their channels: {ENCODINGS}")
        self._traced: Callable | None = None
        self.runner = "eager"   # what runs one window: "eager", "traced", or why the trace was not kept
        self._batch = 1         # windows per forward: 2 with flip_average
        self.flip_average = flip_average

    @property
    def flip_average(self) -> bool:
        return self._batch == 2

    @flip_average.setter
    def flip_average(self, on: bool) -> None:
        """Switching it changes the batch, so the trace is made again on the next window."""
        batch = 2 if on else 1
        if batch != self._batch:
            self._batch = batch
            self._traced, self.runner = None, "eager"

    @classmethod
    def from_file(cls, path: str | Path | None = None, flip_average: bool = False) -> AUPredictor:
        """Load weights (None = the shipped default events model in share/microexp_ros/models)."""
        if path is None:
            from microexp_ros.resources import share_path

            path = share_path("models", DEFAULT_EVENTS_MODEL)
        path = Path(path)
        model, meta = load_model(path, build_au_model)
        return cls(model, meta, name=path.stem, flip_average=flip_average)

    def _require(self, modality: str) -> None:
        if self.modality != modality:
            raise ValueError(f"model '{self.name}' takes {self.modality} input, not {modality}")

    def model_for(self, tensor: torch.Tensor) -> Callable:
        """The traced model for the batch of one encoded window (traced and checked on the first), else the eager
        one."""
        if tuple(tensor.shape) != (self._batch, self.bins, self.channels, self.size, self.size) or self.runner not in (
                "eager", "traced"):
            return self.model
        if self._traced is None:
            with warnings.catch_warnings():
                # Shape checks become constants of the trace (it only ever gets this shape) and the API is
                # deprecated (see the class docstring): both expected.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                with torch.no_grad():
                    traced = torch.jit.trace(self.model, tensor, check_trace=False)
            with torch.inference_mode():
                same = all(torch.equal(a, b) for a, b in zip(self.model(tensor), traced(tensor)))
            if not same:
                self.runner = "eager (the trace's outputs differed from the model's)"
                return self.model
            self._traced, self.runner = traced, "traced"
        return self._traced

    def batch(self, x: np.ndarray) -> torch.Tensor:
        """The model's input for one encoded window ([bins, C, size, size]): the window, and its mirror image
        with flip_average."""
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
        return torch.cat([tensor, tensor.flip(-1)]) if self.flip_average else tensor

    def forward(self, x: np.ndarray) -> AUResult:
        """Run the model on one encoded window ([bins, C, size, size]), and its mirror image with flip_average."""
        tensor = self.batch(x)
        model = self.model_for(tensor)
        start = time.perf_counter()
        with torch.inference_mode():
            au_logits, class_logits = model(tensor)
        latency = (time.perf_counter() - start) * 1e3
        probs, class_probs = torch.sigmoid(au_logits).numpy(), torch.softmax(class_logits, dim=1).numpy()
        if self.flip_average:
            class_probs, probs = fuse_probabilities(list(class_probs), list(probs))
        else:
            class_probs, probs = class_probs[0], probs[0]
        k = int(np.argmax(class_probs))
        return AUResult(probs, SINGLE_LABEL_CLASSES[k], float(class_probs[k]), class_probs, latency)

    def predict(
        self,
        events: np.ndarray,
        t0_ns: int,
        t1_ns: int,
        roi: tuple[int, int, int, int],
        sensor_size: tuple[int, int],
    ) -> AUResult:
        """AUs of the face region `roi` = (x, y, w, h) over the window [t0_ns, t1_ns) of time-sorted events."""
        return self.forward(self.encode(events, t0_ns, t1_ns, roi, sensor_size))

    def encode(
        self, events: np.ndarray, t0_ns: int, t1_ns: int, roi: tuple[int, int, int, int], sensor_size: tuple[int, int]
    ) -> np.ndarray:
        """The model input of an events window: `encode_events` with this model's size, bins and encoding."""
        self._require("events")
        return encode_events(events, t0_ns, t1_ns, roi, sensor_size, self.size, self.bins, self.encoding,
                             self.baf_dt_ns)

    def warm_up(self, events: np.ndarray, t0_ns: int, t1_ns: int, sensor_size: tuple[int, int],
                calls: int = 3) -> list[float]:
        """Run `predict` `calls` times on a window (e.g. `synthetic_events`) over the whole sensor so lazy work
        (compiled kernels loaded from the numba cache, torch's first-call allocations and kernel choice) is done
        before the first real window; the wall ms of each call, first to last."""
        roi = (0, 0, *sensor_size)
        return latencies_ms(lambda: self.predict(events, t0_ns, t1_ns, roi, sensor_size), calls, warmup=0).tolist()

    def predict_frames(
        self, frames: np.ndarray, frame_t: np.ndarray, t0_ns: int, t1_ns: int, roi: tuple[int, int, int, int]
    ) -> AUResult:
        """AUs of the face region in webcam frames (exposure-centre times `frame_t`) over [t0_ns, t1_ns)."""
        self._require("rgb")
        return self.forward(encode_frames(frames, frame_t, t0_ns, t1_ns, roi, self.size, self.bins))


def fuse_probabilities(class_probabilities: Sequence[np.ndarray],
                       au_probabilities: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Late fusion of models that saw one window through different sensors (events, RGB): class
    probabilities proportional to the geometric mean of theirs (a product of experts, equal weights: not
    tuned on any split), AU probabilities their mean. Returns (class probabilities, AU probabilities)."""
    logs = np.log(np.clip(np.stack(class_probabilities).astype(np.float64), 1e-12, None)).mean(axis=0)
    fused = np.exp(logs - logs.max())
    return fused / fused.sum(), np.mean(np.stack(au_probabilities).astype(np.float64), axis=0)


def fuse(results: Sequence[AUResult]) -> AUResult:
    """`fuse_probabilities` of whole window results; the latency is the sum of theirs."""
    class_probs, probs = fuse_probabilities([r.class_probabilities for r in results],
                                            [r.probabilities for r in results])
    k = int(np.argmax(class_probs))
    return AUResult(probs, SINGLE_LABEL_CLASSES[k], float(class_probs[k]), class_probs,
                    float(sum(r.latency_ms for r in results)))


class WindowAverage:
    """Mean of the probabilities of the last `count` windows (fewer at the start): evidence from consecutive
    windows, which a streaming node gets without extra inference. In the dark the sensor's events lag the
    motion (the simulator's photoreceptor bandwidth falls with light), so later windows still see the AU."""

    def __init__(self, count: int = 1) -> None:
        if count < 1:
            raise ValueError(f"window count must be >= 1, got {count}")
        self._recent: deque[np.ndarray] = deque(maxlen=count)

    def reset(self) -> None:
        """Forget earlier windows (e.g. when the tracked face changes)."""
        self._recent.clear()

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """Add one window's probabilities; the mean over the last `count` windows."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self._recent and p.shape != self._recent[0].shape:
            raise ValueError(f"expected probabilities of shape {self._recent[0].shape}, got {p.shape}")
        self._recent.append(p)
        return np.mean(self._recent, axis=0)


class ActivationFilter:
    """Hysteresis on per-AU probabilities: an AU switches on after `min_windows` consecutive windows at or above
    `on_threshold`, and off after `min_windows` consecutive windows below `off_threshold`."""

    def __init__(self, on_threshold: float = 0.6, off_threshold: float = 0.4, min_windows: int = 2,
                 count: int = len(MODEL_AUS)) -> None:
        if not 0.0 <= off_threshold <= on_threshold <= 1.0:
            raise ValueError(f"need 0 <= off_threshold <= on_threshold <= 1, got {off_threshold}, {on_threshold}")
        if min_windows < 1:
            raise ValueError(f"min_windows must be >= 1, got {min_windows}")
        self.on_threshold, self.off_threshold, self.min_windows = on_threshold, off_threshold, min_windows
        self.active = np.zeros(count, bool)
        self._streak = np.zeros(count, np.int64)

    def reset(self) -> None:
        """Forget all state (e.g. when the tracked face changes)."""
        self.active[:] = False
        self._streak[:] = 0

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """Feed one window's probabilities; returns the boolean active state per AU (a copy)."""
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != self.active.shape:
            raise ValueError(f"expected {self.active.shape[0]} probabilities, got shape {p.shape}")
        # A streak counts consecutive windows pushing towards the opposite state.
        pushing = np.where(self.active, p < self.off_threshold, p >= self.on_threshold)
        self._streak = np.where(pushing, self._streak + 1, 0)
        flip = self._streak >= self.min_windows
        self.active ^= flip
        self._streak[flip] = 0
        return self.active.copy()
