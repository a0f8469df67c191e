"""A small conventional CNN on the window's frames: the non-spiking reference for the RGB (and event) rows.

The T frames of the window are stacked as input channels, so the network can see change between frames as
well as appearance. Same input ([B, T, C, S, S]) and outputs (au_logits [B, 12], class_logits [B, 13]) as
SpikingAUNet, so training, evaluation and inference treat both alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from microexp_ros.facs import MODEL_AUS, SINGLE_LABEL_CLASSES
from microexp_ros.models.snn import check_input


class FrameCNN(nn.Module):
    """conv-BN-ReLU-maxpool blocks, global average pooling, two linear heads."""

    def __init__(self, in_channels: int = 1, bins: int = 8, size: int = 64,
                 channels: Sequence[int] = (32, 64, 128), dropout: float = 0.3) -> None:
        super().__init__()
        self.in_channels, self.bins, self.size = in_channels, bins, size
        layers: list[nn.Module] = []
        c_in = in_channels * bins
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.au_head = nn.Linear(c_in, len(MODEL_AUS))
        self.class_head = nn.Linear(c_in, len(SINGLE_LABEL_CLASSES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.bins, self.in_channels, self.size)
        feat = self.features(x.flatten(1, 2).contiguous(memory_format=torch.channels_last))
        return self.au_head(feat), self.class_head(feat)


def build_cnn(config: dict) -> FrameCNN:
    """A FrameCNN from a weights-sidecar config."""
    return FrameCNN(
        in_channels=int(config["in_channels"]),
        bins=int(config["bins"]),
        size=int(config["size"]),
        channels=tuple(int(c) for c in config.get("channels", (32, 64, 128))),
        dropout=float(config.get("dropout", 0.3)),
    )
