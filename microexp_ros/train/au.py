"""Training of the AU classifiers (SNN on events or RGB frames, reference CNN) on a microexp dataset.

Windows come from `select_window` and inputs from `encode_events` / `encode_frames`, the very functions the
predictor uses online. Training windows are jittered copies of each clip's labelled window, passed through an
`Augmentation`: random horizontal flips and, with `shift_px`, translations (a face region is never centred
exactly); with `scale_jitter`, stretches (faces differ in width and height); with `dark_prob`, windows made to
look darker; with `flicker_prob`, windows lit by another person's mains flicker. Validation uses the fixed windows
of the evaluation. Early stopping watches validation accuracy; the best weights are checkpointed to the output
file (with its JSON sidecar) whenever they improve. Optionally a trained teacher reading the same input is
distilled (`teacher`), and `combine_ensemble` writes trained events models as one AUEnsemble.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from microexp_ros.data.dataset import RESOLUTIONS, sensor_size
from microexp_ros.models.au_inference import (
    BAF_DT_NS,
    DEFAULT_WINDOW_NS,
    ENCODINGS,
    au_targets,
    build_au_model,
    encode_events,
    encode_frames,
    input_differences,
    model_input,
    select_window,
    time_reversed,
)
from microexp_ros.models.au_ensemble import AUEnsemble, ensemble_config
from microexp_ros.models.snn import DEFAULT_CHANNELS, DEFAULT_HIDDEN, INPUT_NORMS, READOUTS
from microexp_ros.models.weights import count_parameters, load_model, save_model

MAX_SCALE_JITTER = 0.3  # beyond this a stretch no longer looks like another face


@dataclass
class TrainOptions:
    """Everything that defines a training run (recorded in the weights sidecar)."""

    data: str
    out: str
    modality: str = "events"
    arch: str = "snn"
    resolution: str = "both"
    seed: int = 0
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    window_ns: int = DEFAULT_WINDOW_NS
    bins: int = 8
    size: int = 64
    patience: int = 6
    jitter_ns: int = 40_000_000
    copies: int = 3
    shift_px: int = 0
    scale_jitter: float = 0.0
    reverse_prob: float = 0.0
    dark_prob: float = 0.0
    flicker_prob: float = 0.0
    readout: str = "spikes"
    input_norm: str = "none"
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    hidden: int = DEFAULT_HIDDEN
    encoding: str = "polarity"
    teacher: str = ""
    ema: float = 0.0
    max_minutes: float = 20.0
    threads: int = 2
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def __post_init__(self) -> None:
        if self.modality not in ("events", "rgb"):
            raise ValueError(f"modality must be 'events' or 'rgb', got {self.modality!r}")
        if self.arch not in ("snn", "cnn"):
            raise ValueError(f"arch must be 'snn' or 'cnn', got {self.arch!r}")
        if self.resolution not in (*RESOLUTIONS, "both"):
            raise ValueError(f"resolution must be high, low or both, got {self.resolution!r}")
        for name in ("epochs", "batch_size", "bins", "size", "patience", "copies", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.window_ns <= 0 or self.jitter_ns < 0 or not self.max_minutes > 0:
            raise ValueError("lr, window and max_minutes must be positive and jitter non-negative")
        if self.readout not in READOUTS or (self.readout != "spikes" and self.arch != "snn"):
            raise ValueError(f"readout must be one of {READOUTS} (other than 'spikes' for the snn only), "
                             f"got {self.readout!r} for arch {self.arch!r}")
        if self.input_norm not in INPUT_NORMS or (self.input_norm != "none" and self.arch != "snn"):
            raise ValueError(f"input_norm must be one of {INPUT_NORMS} (other than 'none' for the snn only), "
                             f"got {self.input_norm!r} for arch {self.arch!r}")
        if self.encoding not in ENCODINGS or (self.encoding != "polarity" and self.modality != "events"):
            raise ValueError(f"encoding must be one of {sorted(ENCODINGS)} (other than 'polarity' for events "
                             f"only), got {self.encoding!r} for modality {self.modality!r}")
        if self.teacher and self.modality != "events":
            raise ValueError("a teacher model (distillation) is for events models only")
        if not 0.0 <= self.reverse_prob <= 1.0 or (self.reverse_prob and self.modality != "events"):
            raise ValueError(f"reverse_prob must be in [0, 1] (above 0 for events only), got {self.reverse_prob}")
        if self.reverse_prob and self.encoding == "polarity_baf":
            raise ValueError("reverse_prob needs an encoding that can be played backwards, not 'polarity_baf'")
        if not 0.0 <= self.dark_prob <= 1.0:
            raise ValueError(f"dark_prob must be in [0, 1], got {self.dark_prob}")
        if self.dark_prob and (self.modality != "events" or self.encoding not in ("polarity", "polarity_net")):
            raise ValueError("dark_prob darkens event counts: modality 'events' with encoding 'polarity' or "
                             "'polarity_net' only")
        if self.dark_prob and self.resolution == "both":
            raise ValueError("dark_prob needs one sensor (--resolution high or low): its noise is set per pixel")
        if not 0.0 <= self.flicker_prob <= 1.0:
            raise ValueError(f"flicker_prob must be in [0, 1], got {self.flicker_prob}")
        if self.flicker_prob and (self.modality != "events" or self.encoding not in ("polarity", "polarity_net")
                                  or self.resolution == "both"):
            raise ValueError("flicker_prob adds flicker event counts: modality 'events', one sensor (--resolution "
                             "high or low), encoding 'polarity' or 'polarity_net' only")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema (the weight average's decay per step) must be in [0, 1), got {self.ema}")
        if (tuple(self.channels), self.hidden) != (DEFAULT_CHANNELS, DEFAULT_HIDDEN) and self.arch != "snn":
            raise ValueError("channels and hidden set the snn's widths; the cnn has fixed ones")
        if not self.channels or min(self.channels) < 1 or self.hidden < 1:
            raise ValueError(f"channels and hidden must be positive, got {self.channels} and {self.hidden}")
        if not 0 <= self.shift_px < self.size // 2:
            raise ValueError(f"shift_px must be in [0, size/2), got {self.shift_px}")
        if not 0.0 <= self.scale_jitter <= MAX_SCALE_JITTER:
            raise ValueError(f"scale_jitter must be in [0, {MAX_SCALE_JITTER}], got {self.scale_jitter}")

    def model_config(self) -> dict[str, Any]:
        """The architecture/input config saved in the sidecar and passed to build_au_model."""
        return {
            "arch": self.arch,
            "modality": self.modality,
            "in_channels": ENCODINGS[self.encoding] if self.modality == "events" else 1,
            "bins": self.bins,
            "size": self.size,
            "window_ns": self.window_ns,
            "resolution": self.resolution if self.modality == "events" else "rgb",
            **({"readout": self.readout, "input_norm": self.input_norm, "channels": list(self.channels),
                "hidden": self.hidden} if self.arch == "snn" else {}),
            **({"encoding": self.encoding} if self.modality == "events" else {}),
            **({"baf_dt_ns": BAF_DT_NS} if self.encoding == "polarity_baf" else {}),
        }


@dataclass
class WindowSet:
    """Encoded windows (float16 to halve memory) with multi-label and single-label targets, and, when a
    teacher is distilled, its (au_logits, class_logits) on each window."""

    x: torch.Tensor
    multi: torch.Tensor
    label: torch.Tensor
    lighting: list[str]
    teacher: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.label)


def clip_input(clip: Any, manifest: dict, modality: str, resolution: str, t0: int, t1: int,
               size: int, bins: int, encoding: str = "polarity") -> np.ndarray:
    """Encoded model input of one clip window: the whole face region of the chosen sensor (or the webcam)."""
    if modality == "events":
        w, h = sensor_size(manifest, resolution)
        return encode_events(clip.events[resolution], t0, t1, (0, 0, w, h), (w, h), size, bins, encoding)
    h, w = clip.rgb.shape[1:3]
    return encode_frames(clip.rgb, clip.rgb_t, t0, t1, (0, 0, w, h), size, bins)


def build_windows(root: Path, manifest: dict, entries: list[dict], opts: TrainOptions,
                  rng: np.random.Generator | None, copies: int, desc: str) -> WindowSet:
    """Load each clip once and encode `copies` windows per input resolution (jittered when rng is given)."""
    from microexp_ros.data.dataset import load_clip

    resolutions = (RESOLUTIONS if opts.resolution == "both" else (opts.resolution,)) if opts.modality == "events" \
        else ("rgb",)
    xs, multis, labels, lighting = [], [], [], []
    for entry in tqdm(entries, desc=desc, unit="clip", leave=False):
        clip = load_clip(root, entry)
        for _ in range(copies):
            jitter = opts.jitter_ns if rng is not None else 0
            t0, t1 = select_window(entry, opts.window_ns, rng, jitter)
            multi, label = au_targets(entry, t0, t1)
            for res in resolutions:
                xs.append(clip_input(clip, manifest, opts.modality, res, t0, t1, opts.size, opts.bins,
                                     opts.encoding))
                multis.append(multi)
                labels.append(label)
                lighting.append(entry["lighting"])
    if not xs:
        raise ValueError(f"no clips to build {desc} windows from")
    return WindowSet(torch.from_numpy(np.stack(xs)).half(), torch.from_numpy(np.stack(multis)),
                     torch.tensor(labels, dtype=torch.long), lighting)


DISTILL_TEMPERATURE = 2.0


def _loss(au_logits: torch.Tensor, class_logits: torch.Tensor, multi: torch.Tensor, label: torch.Tensor,
          teacher: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CE (single label) + BCE (per AU); with a teacher also the distillation terms: KL to its class
    distribution at temperature T (times T^2, Hinton et al. 2015) and BCE to its per-AU probabilities."""
    loss = F.cross_entropy(class_logits, label) + F.binary_cross_entropy_with_logits(au_logits, multi)
    if teacher is not None:
        t_au, t_class = teacher
        temp = DISTILL_TEMPERATURE
        kl = F.kl_div(F.log_softmax(class_logits / temp, dim=1), F.log_softmax(t_class / temp, dim=1),
                      reduction="batchmean", log_target=True)
        loss = loss + temp * temp * kl + F.binary_cross_entropy_with_logits(au_logits, torch.sigmoid(t_au))
    return loss


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """A trained model's (au_logits, class_logits) on every window of `x` (unaugmented), in eval mode."""
    teacher.eval()
    outputs = [teacher(x[i:i + batch_size].float()) for i in range(0, len(x), batch_size)]
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


def load_teacher(path: str, config: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """The teacher model and its weights' sha256; it must read the student's input (equal model_input)."""
    model, meta = load_model(path, build_au_model)
    differ = input_differences(meta["config"], config)
    if differ:
        raise ValueError(f"teacher {path} does not read the student's input: (teacher, student) {differ}")
    return model, meta["sha256"]


def shift_inputs(x: torch.Tensor, max_px: int, generator: torch.Generator | None) -> torch.Tensor:
    """Each input [..., H, W] of the batch translated by its own random (dy, dx) in [-max_px, max_px], the
    uncovered border zero (no events, or the standardised frame's mean)."""
    if max_px == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max_px, max_px, max_px, max_px))
    offsets = torch.randint(0, 2 * max_px + 1, (len(x), 2), generator=generator).tolist()
    return torch.stack([p[..., dy:dy + h, dx:dx + w] for p, (dy, dx) in zip(padded, offsets)])


def scaled_inputs(x: torch.Tensor, jitter: float, generator: torch.Generator | None) -> torch.Tensor:
    """Each input [B, ..., H, W] of the batch stretched about its centre by its own factors in [1 - jitter,
    1 + jitter], one for width and one for height (the simulator's identities differ by about ±10 % in face width
    and ±7 % in height); bilinear on the encoded values, the uncovered border zero."""
    if jitter == 0:
        return x
    factors = 1.0 + jitter * (2.0 * torch.rand(len(x), 2, generator=generator) - 1.0)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0 / factors[:, 0], 1.0 / factors[:, 1]
    flat = x.reshape(len(x), -1, *x.shape[-2:])
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(x.shape)


# `dark_prob`: the dark sensor's input is a uniform floor of shot noise over a weaker signal. On the 2,340-clip
# data's very_dim validation windows (high-resolution sensor; 64x64 cells of 2x2 pixels, 50 ms bins) the floor is
# about 1.1 events per cell, bin and polarity, i.e. ~5 Hz per pixel and polarity, and the strongest cell holds
# ~0.6 times what it holds in bright light. A darkened window draws its noise rate and kept share from these.
DARK_NOISE_HZ = 6.0   # upper end of the shot-noise rate added, per pixel and polarity
DARK_KEEP_MIN = 0.4   # lower end of the share of the window's own events kept


def dark_noise_per_cell(sensor: tuple[int, int], size: int, window_ns: int, bins: int) -> float:
    """Mean count of DARK_NOISE_HZ shot noise in one input cell, bin and polarity; ValueError when a cell does not
    hold a whole number of sensor pixels (its counts would not be event counts)."""
    pixels = sensor[0] * sensor[1] / (size * size)
    if pixels < 1 or pixels != int(pixels):
        raise ValueError(f"dark_prob needs input cells of whole sensor pixels; a {sensor[0]}x{sensor[1]} sensor at "
                         f"size {size} gives {pixels:.3f} pixels per cell")
    return DARK_NOISE_HZ * pixels * window_ns / bins * 1e-9


def darkened(x: torch.Tensor, noise_per_cell: float, generator: torch.Generator | None) -> torch.Tensor:
    """Encoded event windows [B, bins, C, H, W] (log1p counts per polarity; C = 3 adds the net channel of
    "polarity_net") as if seen in darker light: each window keeps a random share in [DARK_KEEP_MIN, 1] of its
    events (binomial thinning) and gains Poisson shot noise of a random mean in [0, noise_per_cell] per cell, bin
    and polarity; a net channel is computed again from the darkened counts, as `encode_events` does."""
    counts = window_counts(x)
    shape = (len(x),) + (1,) * (x.dim() - 1)
    keep = DARK_KEEP_MIN + (1 - DARK_KEEP_MIN) * torch.rand(shape, generator=generator)
    rate = noise_per_cell * torch.rand(shape, generator=generator)
    kept = torch.binomial(counts, keep.expand_as(counts).contiguous(), generator=generator)
    return encoded_counts(kept + torch.poisson(rate.expand_as(counts).contiguous(), generator=generator), x.shape[2])


def window_counts(x: torch.Tensor) -> torch.Tensor:
    """Event counts per polarity [B, bins, 2, H, W] of encoded event windows: their first two channels (log1p
    counts) decoded, rounded to whole events; `encoded_counts` encodes them again."""
    return torch.expm1(x[:, :, :2]).round().clamp_min(0)


def encoded_counts(counts: torch.Tensor, channels: int) -> torch.Tensor:
    """Counts per polarity [B, bins, 2, H, W] encoded as `encode_events` does: log1p, and with 3 channels
    ("polarity_net") the signed net count sign(ON - OFF) * log1p(|ON - OFF|) after them."""
    if channels == 2:
        return torch.log1p(counts)
    net = counts[:, :, 1:2] - counts[:, :, 0:1]
    return torch.cat([torch.log1p(counts), torch.sign(net) * torch.log1p(net.abs())], dim=2)


# `flicker_prob`: in mains flicker every pixel fires at 100 Hz, at a rate set by its own brightness (the
# photoreceptor's bandwidth grows with light), so a flicker window is mostly a static picture of the face (on the
# 2,340-clip data ~79 % of its 57k events are the per-cell floor over the 4 bins; normal light: 1.6k events). The
# shipped default fits flicker on the training people (96 %) but not on new ones (72-75 %): it learns faces. A
# flickered window gains the flicker of a random training flicker window of (mostly) another person.
def flicker_floors(data: WindowSet) -> torch.Tensor:
    """Mean count per bin, polarity and cell [N, 2, H, W] of each flicker-lit window of `data`: its flicker floor
    (the AU's own events are ~3 % of it). ValueError when `data` has none."""
    lit = torch.tensor([c == "flicker" for c in data.lighting])
    if not lit.any():
        raise ValueError("flicker_prob needs flicker-lit training windows to take the flicker from; there are none")
    return window_counts(data.x[lit, :, :2].float()).mean(dim=1)


def flickered(x: torch.Tensor, floors: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Encoded event windows [B, bins, C, H, W] lit by flicker: each gains, in every bin, Poisson counts with the
    mean of one random flicker floor of `floors` [N, 2, H, W]."""
    counts = window_counts(x)
    donors = floors[torch.randint(len(floors), (len(x),), generator=generator)].unsqueeze(1).expand_as(counts)
    return encoded_counts(counts + torch.poisson(donors.contiguous(), generator=generator), x.shape[2])


@dataclass(frozen=True)
class Augmentation:
    """What training does to each batch, in this order (the order of the random draws, so a seed replays a run):
    random horizontal flips; with probability `reverse_prob` windows played backwards; with `dark_prob` windows
    `darkened` (noise up to `dark_noise` per cell); with `flicker_prob` windows `flickered` by one of
    `flicker_floor`; `scale_jitter` stretches; `shift_px` translations."""

    shift_px: int = 0
    scale_jitter: float = 0.0
    reverse_prob: float = 0.0
    dark_prob: float = 0.0
    dark_noise: float = 0.0
    flicker_prob: float = 0.0
    flicker_floor: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        flip = torch.rand(len(x), generator=generator) < 0.5
        x[flip] = x[flip].flip(-1)
        if self.reverse_prob:
            backwards = torch.rand(len(x), generator=generator) < self.reverse_prob
            x[backwards] = time_reversed(x[backwards])
        if self.dark_prob:
            dark = torch.rand(len(x), generator=generator) < self.dark_prob
            x[dark] = darkened(x[dark], self.dark_noise, generator)
        if self.flicker_prob:
            lit = torch.rand(len(x), generator=generator) < self.flicker_prob
            x[lit] = flickered(x[lit], self.flicker_floor, generator)
        return shift_inputs(scaled_inputs(x, self.scale_jitter, generator), self.shift_px, generator)


def run_epoch(model: nn.Module, data: WindowSet, batch_size: int, optimizer: torch.optim.Optimizer | None,
              generator: torch.Generator | None = None, desc: str = "", augment: Augmentation | None = None,
              after_step: Callable[[], None] | None = None) -> tuple[float, float]:
    """One pass (training when an optimizer is given: shuffled, each batch through `augment`, flips only when it
    is None; `after_step` runs after each optimizer step); (mean loss, accuracy)."""
    augment = augment or Augmentation()
    training = optimizer is not None
    model.train(training)
    order = torch.randperm(len(data), generator=generator) if training else torch.arange(len(data))
    total_loss, correct = 0.0, 0
    batches = range(0, len(data), batch_size)
    with torch.set_grad_enabled(training):
        for start in tqdm(batches, desc=desc, unit="batch", leave=False, disable=not desc):
            idx = order[start:start + batch_size]
            x = data.x[idx].float()
            if training:
                x = augment(x, generator)
            au_logits, class_logits = model(x)
            soft = None if data.teacher is None else (data.teacher[0][idx], data.teacher[1][idx])
            loss = _loss(au_logits, class_logits, data.multi[idx], data.label[idx], soft)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} in batch at {start} ({desc or 'eval'})")
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step()
            total_loss += loss.item() * len(idx)
            correct += int((class_logits.argmax(1) == data.label[idx]).sum())
    return total_loss / len(data), correct / len(data)


@torch.no_grad()
def ema_update(averaged: nn.Module, model: nn.Module, decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * model, over the parameters and the BatchNorm running
    statistics (not snntorch's neuron state buffers, which every forward pass resets)."""
    for a, p in zip(averaged.parameters(), model.parameters()):
        a.lerp_(p, 1.0 - decay)
    for a, m in zip(averaged.modules(), model.modules()):
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            a.running_mean.lerp_(m.running_mean, 1.0 - decay)
            a.running_var.lerp_(m.running_var, 1.0 - decay)


def curve_path(weights: Path) -> Path:
    """Where the training-curve PNG of a weights file goes: beside it, <stem>_curve.png."""
    return weights.with_name(weights.stem + "_curve.png")


def plot_curves(histories: Mapping[str, list[dict]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (train and val) of one or more runs (name -> history) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        for key, style in (("train", "-"), ("val", "--")):
            label = f"{name} {key}".strip()
            ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=label)
            ax_acc.plot(epochs, [h[f"{key}_accuracy"] for h in history], style, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (CE + BCE)")
    ax_acc.set(xlabel="epoch", ylabel="single-label accuracy", ylim=(0, 1))
    ax_acc.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train one model as `opts` says; writes the weights, sidecar and curve PNG; returns the run summary."""
    from microexp_ros.data.dataset import load_manifest

    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    root, out = Path(opts.data), Path(opts.out)
    manifest = load_manifest(root)
    splits = {s: [c for c in manifest["clips"] if c["split"] == s] for s in ("train", "val")}
    for split, entries in splits.items():
        if not entries:
            raise ValueError(f"dataset {root} has no '{split}' clips")

    start = time.perf_counter()
    train_set = build_windows(root, manifest, splits["train"], opts, rng, opts.copies, "encode train")
    val_set = build_windows(root, manifest, splits["val"], opts, None, 1, "encode val")
    config = opts.model_config()
    teacher_sha = None
    if opts.teacher:
        teacher, teacher_sha = load_teacher(opts.teacher, config)
        train_set.teacher = teacher_logits(teacher, train_set.x)
    encode_s = time.perf_counter() - start

    augment = Augmentation(
        shift_px=opts.shift_px, scale_jitter=opts.scale_jitter, reverse_prob=opts.reverse_prob,
        dark_prob=opts.dark_prob, flicker_prob=opts.flicker_prob,
        dark_noise=dark_noise_per_cell(sensor_size(manifest, opts.resolution), opts.size, opts.window_ns, opts.bins)
        if opts.dark_prob else 0.0,
        flicker_floor=flicker_floors(train_set) if opts.flicker_prob else None)

    model = build_au_model(config)
    # With --ema the exponential moving average of the weights (and BatchNorm statistics) is what is validated
    # and saved: an average over the last ~1/(1 - ema) steps, less dependent on where the last step landed.
    scored = copy.deepcopy(model) if opts.ema else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=opts.epochs)
    generator = torch.Generator().manual_seed(opts.seed)

    history: list[dict] = []
    best: dict[str, Any] = {"val_accuracy": -1.0}
    best_state = None
    stale = 0
    stopped = "epochs"
    train_start = time.perf_counter()
    for epoch in range(1, opts.epochs + 1):
        train_loss, train_acc = run_epoch(model, train_set, opts.batch_size, optimizer, generator,
                                          desc=f"epoch {epoch}/{opts.epochs}", augment=augment,
                                          after_step=(lambda: ema_update(scored, model, opts.ema))
                                          if opts.ema else None)
        scheduler.step()
        val_loss, val_acc = run_epoch(scored, val_set, 64, None)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                        "val_loss": val_loss, "val_accuracy": val_acc,
                        "elapsed_s": round(time.perf_counter() - train_start, 1)})
        tqdm.write(f"epoch {epoch}: train loss {train_loss:.3f} acc {train_acc:.3f} | "
                   f"val loss {val_loss:.3f} acc {val_acc:.3f} | {history[-1]['elapsed_s']:.0f} s")
        improved = val_acc > best["val_accuracy"] or (val_acc == best["val_accuracy"] and val_loss < best["val_loss"])
        if improved:
            best = {"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss, "train_accuracy": train_acc}
            best_state = copy.deepcopy(scored.state_dict())
            meta = _meta(opts, manifest, best, history, "checkpoint", encode_s, scored, teacher_sha=teacher_sha)
            save_model(out, scored, config, meta)
            stale = 0
        else:
            stale += 1
        if stale >= opts.patience:
            stopped = f"early stop: no val improvement in {opts.patience} epochs"
            break
        if time.perf_counter() - start > opts.max_minutes * 60:
            stopped = f"time budget of {opts.max_minutes} min reached"
            break
    scored.load_state_dict(best_state)
    train_s = time.perf_counter() - train_start
    summary = _meta(opts, manifest, best, history, stopped, encode_s, scored, train_s=train_s,
                    teacher_sha=teacher_sha)
    save_model(out, scored, config, summary)
    curve = curve_path(out)
    plot_curves({"": history}, curve, f"{opts.arch} on {opts.modality} ({config['resolution']}), seed {opts.seed}")
    summary["curve_png"] = str(curve)
    summary["weights"] = str(out)
    return summary


def _meta(opts: TrainOptions, manifest: dict, best: dict, history: list[dict], stopped: str, encode_s: float,
          model: nn.Module, train_s: float | None = None, teacher_sha: str | None = None) -> dict[str, Any]:
    import snntorch

    return {
        "command": opts.command,
        "seed": opts.seed,
        "options": asdict(opts),
        **({"teacher": {"path": opts.teacher, "sha256": teacher_sha}} if opts.teacher else {}),
        "data": {"path": str(opts.data), "format": manifest.get("format"), "seed": manifest.get("seed"),
                 "command": manifest.get("command"), "created": manifest.get("created"),
                 "clips": {s: sum(c["split"] == s for c in manifest["clips"]) for s in ("train", "val", "test")}},
        "metrics": {"best": best, "history": history, "stopped": stopped},
        "parameters": count_parameters(model),
        "timing_s": {"encode": round(encode_s, 1), "train": None if train_s is None else round(train_s, 1)},
        "environment": {"torch": torch.__version__, "snntorch": snntorch.__version__, "numpy": np.__version__,
                        "python": platform.python_version(), "threads": opts.threads},
    }


def combine_ensemble(paths: Sequence[str | Path], out: str | Path, command: str) -> dict[str, Any]:
    """Write the AUEnsemble of the trained weights files `paths` to `out`, with a sidecar recording each
    member's file, sha256, training command, seed and best epoch, and a PNG of the members' curves beside it;
    returns the sidecar meta and the PNG's path ("curve_png")."""
    out = Path(out)
    loaded = [load_model(p, build_au_model) for p in paths]
    configs = [meta.pop("config") for _, meta in loaded]
    config = ensemble_config(configs)
    model = AUEnsemble([m for m, _ in loaded], config["in_channels"])
    members = [{"file": Path(p).name, "sha256": meta["sha256"], "command": meta.get("command"),
                "seed": meta.get("seed"), "best": meta.get("metrics", {}).get("best"),
                "timing_s": meta.get("timing_s")} for p, (_, meta) in zip(paths, loaded)]
    meta = {"command": command, "members": members, "data": loaded[0][1].get("data", {}),
            "parameters": count_parameters(model)}
    save_model(out, model, config, meta)
    histories = {f"{i} ({model_input(c)['encoding']})": m.get("metrics", {}).get("history", [])
                 for i, (c, (_, m)) in enumerate(zip(configs, loaded), start=1)}
    curve = curve_path(out)
    plot_curves(histories, curve, f"ensemble of {len(paths)} members")
    return {**meta, "curve_png": str(curve)}
