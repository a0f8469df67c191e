"""FireNet-style recurrent CNN baseline (after Scheerlinck et al., WACV 2020), written from the paper's
description: a 3x3 head to 16 channels, ConvGRU, residual block, ConvGRU, residual block, 1x1 prediction,
all at full resolution with no down-sampling. The recurrent state carries intensity between windows, which
is how FireNet recovers absolute brightness from change events. Used only as a baseline for the CVAE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from microexp_ros.models.cvae import normalise_voxel


@dataclass(frozen=True)
class FireNetConfig:
    """Shape of the network (saved in the weights sidecar)."""

    bins: int = 5
    width: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


class ConvGRU(nn.Module):
    """Convolutional GRU cell (3x3 gates)."""

    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(cin + hidden, hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        cand = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return (1 - update) * h + update * cand


class Residual(nn.Module):
    """Two 3x3 convolutions with an identity shortcut."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(torch.relu(self.a(x))))


class FireNet(nn.Module):
    """Recurrent reconstruction: `forward(voxel, state) -> (frame [N,1,H,W] in [0,1], new state)`."""

    def __init__(self, cfg: FireNetConfig = FireNetConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg.width
        self.head = nn.Conv2d(cfg.bins, c, 3, padding=1)
        self.gru1 = ConvGRU(c, c)
        self.res1 = Residual(c)
        self.gru2 = ConvGRU(c, c)
        self.res2 = Residual(c)
        self.pred = nn.Conv2d(c, 1, 1)

    def initial_state(self, voxel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero hidden states for a batch shaped like `voxel`."""
        n, _, h, w = voxel.shape
        z = voxel.new_zeros(n, self.cfg.width, h, w)
        return z, z.clone()

    def forward(self, voxel: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if voxel.ndim != 4 or voxel.shape[1] != self.cfg.bins:
            raise ValueError(f"voxel must be [N, {self.cfg.bins}, H, W], got {tuple(voxel.shape)}")
        if state is None or state[0].shape[-2:] != voxel.shape[-2:] or state[0].shape[0] != voxel.shape[0]:
            state = self.initial_state(voxel)
        x = torch.relu(self.head(normalise_voxel(voxel)))
        h1 = self.gru1(x, state[0])
        x = self.res1(h1)
        h2 = self.gru2(x, state[1])
        x = self.res2(h2)
        return torch.sigmoid(self.pred(x)), (h1, h2)


MODEL_KIND = "recon-firenet"


def firenet_config_record(cfg: FireNetConfig) -> dict:
    """The sidecar config of a FireNet baseline (architecture plus the kind tag checked on load)."""
    return {"kind": MODEL_KIND, **cfg.to_dict()}


def build_firenet(config: dict) -> FireNet:
    """Rebuild a FireNet from a sidecar config; rejects files of another model kind."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind != MODEL_KIND:
        raise ValueError(f"config kind is {kind!r}, expected {MODEL_KIND!r} (not a FireNet baseline file)")
    return FireNet(FireNetConfig(**config))
