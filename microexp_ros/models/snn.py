"""Convolutional spiking network for Action Units: the paper's classifier, fed event histograms or RGB frames.

Input [B, T, C, S, S] (T time bins; C = 2 polarity channels for events, 1 for gray frames). Three
strided conv-BN-LIF blocks and a spiking hidden layer; leaky neurons have a learnable decay per channel
(PLIF-like, init beta = 0.5, i.e. tau = 2 as in the paper's companion work) and a surrogate gradient.
The heads read the hidden layer over the window, by one of two readouts: "spikes", its spike rate (a
non-leaky integrator of its spikes, so logits are linear in spike counts), or "membrane", the mean membrane
potential of non-spiking leaky integrators (no threshold, no reset), which passes graded values instead of
T + 1 spike-count levels. Two heads: per-AU logits (multi-label, MODEL_AUS order) and single-label logits
(SINGLE_LABEL_CLASSES: neutral + the 12 AUs). With input_norm "center" each window's channels are shifted
to zero mean over time and space first: the uniform floor that shot noise in the dark or mains flicker adds
to every cell then no longer moves the first layer's currents against fixed BN statistics and thresholds.

Stateless layers (conv, BN, pooling) run on all T bins at once; only the neurons loop over time, which
gives exactly the outputs of a step-by-step loop for this feed-forward network at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from microexp_ros.facs import MODEL_AUS, SINGLE_LABEL_CLASSES

SURROGATES = {"atan": surrogate.atan, "fast_sigmoid": surrogate.fast_sigmoid}
READOUTS = ("spikes", "membrane")
INPUT_NORMS = ("none", "center")
# The widths of every SNN before session 13: sidecar configs without widths (older weights) were trained with them.
DEFAULT_CHANNELS = (16, 32, 64)
DEFAULT_HIDDEN = 128


def check_input(x: torch.Tensor, bins: int, channels: int, size: int) -> None:
    """Raise ValueError unless x is [B, bins, channels, size, size] (the shape the weights were trained on)."""
    expected = (bins, channels, size, size)
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or tuple(x.shape[1:]) != expected:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"model input must have shape [batch, {', '.join(map(str, expected))}], got {got}")


class SpikingAUNet(nn.Module):
    """CSNN with per-AU and single-label heads; forward returns (au_logits [B, 12], class_logits [B, 13])."""

    def __init__(
        self,
        in_channels: int = 2,
        bins: int = 8,
        size: int = 64,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        hidden: int = DEFAULT_HIDDEN,
        beta: float = 0.5,
        surrogate_name: str = "atan",
        dropout: float = 0.2,
        readout: str = "spikes",
        input_norm: str = "none",
    ) -> None:
        super().__init__()
        if surrogate_name not in SURROGATES:
            raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {surrogate_name!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        if size % (2 ** len(channels)) or size < 2 ** (len(channels) + 1):
            raise ValueError(f"size {size} must be a multiple of {2 ** len(channels)} and at least {2 ** (len(channels) + 1)}")
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {beta}")
        self.in_channels, self.bins, self.size, self.input_norm = in_channels, bins, size, input_norm
        spike_grad = SURROGATES[surrogate_name]()
        self.convs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        c_in = in_channels
        for i, c_out in enumerate(channels):
            # Strided convolutions halve the resolution in every block: a third of the cost of conv + maxpool,
            # which matters on a 2-core CPU where training runs T times the frames of a CNN.
            kernel = 5 if i == 0 else 3
            self.convs.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)))
            self.lifs.append(snn.Leaky(beta=torch.full((c_out, 1, 1), beta), learn_beta=True, spike_grad=spike_grad))
            c_in = c_out
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(c_in * 16, hidden)
        self.readout = readout
        self.fc_lif = snn.Leaky(beta=torch.full((hidden,), beta), learn_beta=True, spike_grad=spike_grad,
                                reset_mechanism="none" if readout == "membrane" else "subtract")
        self.dropout = nn.Dropout(dropout)
        self.au_head = nn.Linear(hidden, len(MODEL_AUS))
        self.class_head = nn.Linear(hidden, len(SINGLE_LABEL_CLASSES))

    @staticmethod
    def _spike_over_time(lif: snn.Leaky, current: torch.Tensor) -> torch.Tensor:
        """Run one LIF layer over the time axis (dim 1) of `current`, returning the spike train."""
        if not torch.is_grad_enabled():
            return _leaky_inference(lif, current)
        mem = torch.zeros_like(current[:, 0])
        spikes = []
        for t in range(current.shape[1]):
            spk, mem = lif(current[:, t], mem)
            spikes.append(spk)
        return torch.stack(spikes, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.bins, self.in_channels, self.size)
        b, t = x.shape[:2]
        h = x - x.mean(dim=(1, 3, 4), keepdim=True) if self.input_norm == "center" else x
        for conv, lif in zip(self.convs, self.lifs):
            cur = conv(h.flatten(0, 1))
            h = self._spike_over_time(lif, cur.unflatten(0, (b, t)))
        feat = self.pool(h.flatten(0, 1)).flatten(1)
        current = self.fc(feat).unflatten(0, (b, t))
        if self.readout == "membrane":
            hidden = _integrate_over_time(self.fc_lif, current)
        else:
            hidden = self._spike_over_time(self.fc_lif, current)
        rate = self.dropout(hidden.mean(dim=1))
        return self.au_head(rate), self.class_head(rate)


def _leaky_inference(lif: snn.Leaky, current: torch.Tensor) -> torch.Tensor:
    """`snn.Leaky` over time without autograd, in a third of the operators (inference runs 4 layers x T neuron
    steps per window, and their per-operator overhead was two thirds of the 8-bin forward time on CPU in a
    torch.profiler probe).

    Same arithmetic as the Leaky neurons SpikingAUNet builds (snntorch's defaults: subtractive reset delayed by
    one step, heaviside spikes):
    mem_t = clamp(beta) * mem_{t-1} + I_t - reset_t * threshold, with reset_t = H(mem_{t-1} - threshold),
    which is the previous step's spike; spk_t = H(mem_t - threshold). test_snn checks the outputs are equal.
    """
    beta, threshold = lif.beta.clamp(0, 1), lif.threshold
    mem = torch.zeros_like(current[:, 0])
    spk = torch.zeros_like(mem)
    spikes = []
    for t in range(current.shape[1]):
        mem = beta * mem + current[:, t] - spk * threshold
        spk = (mem > threshold).to(mem.dtype)
        spikes.append(spk)
    return torch.stack(spikes, dim=1)


def _integrate_over_time(lif: snn.Leaky, current: torch.Tensor) -> torch.Tensor:
    """Membrane potentials over time (dim 1) of a Leaky built with reset_mechanism "none": a leaky integrator,
    mem_t = clamp(beta) * mem_{t-1} + I_t (snntorch's state update; its spikes are not used)."""
    beta = lif.beta.clamp(0, 1)
    mem = torch.zeros_like(current[:, 0])
    mems = []
    for t in range(current.shape[1]):
        mem = beta * mem + current[:, t]
        mems.append(mem)
    return torch.stack(mems, dim=1)


def build_snn(config: dict) -> SpikingAUNet:
    """A SpikingAUNet from a weights-sidecar config (keys as in the constructor)."""
    return SpikingAUNet(
        in_channels=int(config["in_channels"]),
        bins=int(config["bins"]),
        size=int(config["size"]),
        channels=tuple(int(c) for c in config.get("channels", DEFAULT_CHANNELS)),
        hidden=int(config.get("hidden", DEFAULT_HIDDEN)),
        beta=float(config.get("beta", 0.5)),
        surrogate_name=str(config.get("surrogate", "atan")),
        dropout=float(config.get("dropout", 0.2)),
        readout=str(config.get("readout", "spikes")),
        input_norm=str(config.get("input_norm", "none")),
    )
