"""Conditional VAE that reconstructs a grayscale frame from the voxel grid of an event window.

Why a CVAE: a short event window says what changed, not the absolute intensity, so many frames fit one
window. The conditional prior p(z | events) models that ambiguity; at inference we decode the prior mean,
which gives one deterministic frame. Training uses the recognition network q(z | frame, events) and the
hybrid objective of Sohn et al. (2015): the usual ELBO plus a reconstruction term decoded from the prior
mean, so the deterministic output is trained directly. Fully convolutional with a spatial latent at 1/4
resolution, so any input size works (inputs are padded to a multiple of 8 and the output is cropped back).
The keyframe mode adds the last available RGB keyframe (gray, [0, 1]) as one more condition channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CVAEConfig:
    """Shape of the network; saved in the weights sidecar so a file rebuilds its own model."""

    bins: int = 5          # voxel-grid time bins of the event window
    width: int = 16        # channels at 1/2 resolution (doubled at 1/4)
    latent: int = 8        # latent channels at 1/4 resolution
    keyframe: bool = False  # condition on a gray keyframe as well

    @property
    def in_channels(self) -> int:
        return self.bins + (1 if self.keyframe else 0)

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_voxel(voxel: torch.Tensor) -> torch.Tensor:
    """Signed log compression of voxel values, so event rates of different sensors and lighting share a
    range without per-sample statistics (the same window always maps to the same input)."""
    return torch.sign(voxel) * torch.log1p(voxel.abs())


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def coordinates(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Two channels of normalised pixel coordinates in [-1, 1]: the input is a face region, so position in
    the region is information (where the eyes and mouth usually are), whatever its size in pixels."""
    ys = torch.linspace(-1.0, 1.0, h, dtype=like.dtype, device=like.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=like.dtype, device=like.device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))
    return grid[None].expand(n, 2, h, w)


class ConditionEncoder(nn.Module):
    """Features of the condition (voxel grid, coordinates, optional keyframe) at 1/2, 1/4 and 1/8 resolution;
    the 1/8 stage widens the receptive field to the whole face cheaply and is merged into the 1/4 context."""

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        c = cfg.width
        self.at_half = _conv(cfg.in_channels + 2, c, 2)
        self.at_quarter = nn.Sequential(_conv(c, 2 * c, 2), _conv(2 * c, 2 * c))
        self.at_eighth = nn.Sequential(_conv(2 * c, 4 * c, 2), _conv(4 * c, 4 * c), nn.Conv2d(4 * c, 2 * c, 1))

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features at 1/2 [c], context at 1/4 [4c] = local features and up-sampled 1/8 features)."""
        h = self.at_half(cond)
        q = self.at_quarter(h)
        return h, torch.cat([q, _up(self.at_eighth(q), q)], 1)


class Posterior(nn.Module):
    """q(z | frame, events): the target frame encoded beside the condition features."""

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        c = cfg.width
        self.at_half = _conv(1, c, 2)
        self.at_quarter = _conv(2 * c, 2 * c, 2)
        self.head = nn.Conv2d(6 * c, 2 * cfg.latent, 3, padding=1)

    def forward(self, frame: torch.Tensor, half: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.at_half(frame)
        q = self.at_quarter(torch.cat([h, half], 1))
        return self.head(torch.cat([q, context], 1))


class Decoder(nn.Module):
    """p(frame | z, events): latent and condition context up to full resolution (pixel shuffle at the end,
    so no convolution runs at full resolution)."""

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        c = cfg.width
        self.at_quarter = nn.Sequential(_conv(4 * c + cfg.latent, 2 * c), nn.Conv2d(2 * c, c, 1))
        self.at_half = _conv(2 * c, c)
        self.out = nn.Conv2d(c, 4, 3, padding=1)

    def forward(self, z: torch.Tensor, half: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.at_quarter(torch.cat([z, context], 1))
        h = self.at_half(torch.cat([_up(q, half), half], 1))
        return torch.sigmoid(F.pixel_shuffle(self.out(h), 2))


class ReconCVAE(nn.Module):
    """The conditional VAE. `forward` is the training pass; `reconstruct` the deterministic inference."""

    def __init__(self, cfg: CVAEConfig = CVAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.condition = ConditionEncoder(cfg)
        self.prior = nn.Conv2d(4 * cfg.width, 2 * cfg.latent, 3, padding=1)
        self.posterior = Posterior(cfg)
        self.decoder = Decoder(cfg)

    def _condition(self, voxel: torch.Tensor, keyframe: torch.Tensor | None) -> torch.Tensor:
        if voxel.ndim != 4 or voxel.shape[1] != self.cfg.bins:
            raise ValueError(f"voxel must be [N, {self.cfg.bins}, H, W], got {tuple(voxel.shape)}")
        x = normalise_voxel(voxel)
        if self.cfg.keyframe:
            if keyframe is None:
                raise ValueError("this model conditions on a keyframe: pass keyframe [N, 1, H, W] in [0, 1]")
            if keyframe.shape != (voxel.shape[0], 1, *voxel.shape[-2:]):
                raise ValueError(f"keyframe must be [N, 1, H, W] like the voxel, got {tuple(keyframe.shape)}")
            x = torch.cat([x, keyframe], 1)
        elif keyframe is not None:
            raise ValueError("this model is events-only: it takes no keyframe")
        return torch.cat([x, coordinates(x.shape[0], *x.shape[-2:], x)], 1)

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % 8, 0, (-h) % 8), mode="replicate")

    def forward(self, voxel: torch.Tensor, frame: torch.Tensor, keyframe: torch.Tensor | None = None) -> dict:
        """Training pass: posterior sample decoded, prior-mean decode, and KL(q || p)."""
        h, w = voxel.shape[-2:]
        half, context = self.condition(self._pad(self._condition(voxel, keyframe)))
        mu_p, logvar_p = self.prior(context).chunk(2, 1)
        mu_q, logvar_q = self.posterior(self._pad(frame), half, context).chunk(2, 1)
        logvar_q = logvar_q.clamp(-10, 10)
        logvar_p = logvar_p.clamp(-10, 10)
        z = mu_q + torch.randn_like(mu_q) * torch.exp(0.5 * logvar_q)
        return {
            "recon": self.decoder(z, half, context)[..., :h, :w],
            "recon_prior": self.decoder(mu_p, half, context)[..., :h, :w],
            "kl": gaussian_kl(mu_q, logvar_q, mu_p, logvar_p),
        }

    @torch.no_grad()
    def reconstruct(self, voxel: torch.Tensor, keyframe: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic frame [N, 1, H, W] in [0, 1] decoded from the prior mean."""
        h, w = voxel.shape[-2:]
        half, context = self.condition(self._pad(self._condition(voxel, keyframe)))
        mu_p, _ = self.prior(context).chunk(2, 1)
        return self.decoder(mu_p, half, context)[..., :h, :w]


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, mean over latent elements (one scalar)."""
    kl = 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
    return kl.mean()
