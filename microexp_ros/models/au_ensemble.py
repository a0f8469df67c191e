"""Several trained AU networks as one model whose logits are the mean of theirs.

Why: two spiking networks trained alike but fed different event encodings ("polarity" and "polarity_net")
make different mistakes, and their average is more accurate than either (docs/au_results.md); the cost is one
forward pass per member. Members read the leading channels of the ensemble's input: a "polarity" member takes
channels 0-1 of a "polarity_net" input, which are exactly its own encoding (see `encode_events`), so one
encoding of the window feeds every member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from microexp_ros.models.au_inference import ENCODINGS, build_au_model, input_differences, model_input
from microexp_ros.models.snn import check_input

# What members may differ in: their encoding, i.e. how many leading channels of the input each reads.
PER_MEMBER = ("in_channels", "encoding", "baf_dt_ns")


class AUEnsemble(nn.Module):
    """Members with (au_logits, class_logits) outputs, each fed the first `in_channels` of its own config."""

    def __init__(self, members: Sequence[nn.Module], in_channels: int) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.member_channels = [int(m.in_channels) for m in members]
        self.in_channels, self.bins, self.size = int(in_channels), int(members[0].bins), int(members[0].size)
        if max(self.member_channels) > self.in_channels:
            raise ValueError(f"members take up to {max(self.member_channels)} channels, the ensemble input has "
                             f"{self.in_channels}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.bins, self.in_channels, self.size)
        outputs = [m(x[:, :, :c]) for m, c in zip(self.members, self.member_channels)]
        au_logits, class_logits = (torch.stack(parts).mean(dim=0) for parts in zip(*outputs))
        return au_logits, class_logits


def build_ensemble(config: dict) -> AUEnsemble:
    """An AUEnsemble from a weights-sidecar config ({"members": [member configs], "in_channels": ...})."""
    members = config.get("members")
    if not isinstance(members, list):
        raise ValueError("an ensemble config needs a 'members' list of model configs")
    return AUEnsemble([build_au_model(dict(c)) for c in members], int(config["in_channels"]))


def ensemble_config(configs: Sequence[dict]) -> dict[str, Any]:
    """The ensemble's config from its members': shared window geometry, and the widest member encoding as
    input (each member reads its leading channels, which are its own encoding)."""
    if len(configs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(configs)}")
    for i, c in enumerate(configs[1:], start=2):
        differ = input_differences(configs[0], c, ignore=PER_MEMBER)
        if differ:
            raise ValueError(f"member {i} differs from member 1 in {list(differ)}: {differ}")
    first = model_input(configs[0])
    if first["modality"] != "events":
        raise ValueError(f"ensembles are for events models, member 1 has modality {first['modality']!r}")
    names = [model_input(c)["encoding"] for c in configs]
    unknown = sorted(set(names) - set(ENCODINGS))
    if unknown:
        raise ValueError(f"unknown member encodings {unknown}; known: {sorted(ENCODINGS)}")
    extended = sorted(set(names) - {"polarity"})
    if len(extended) > 1:   # each adds its own channels after the polarity ones: no input holds both
        raise ValueError(f"members extend the 'polarity' channels in different ways {extended}: no one input "
                         "holds them all")
    widest = max(names, key=ENCODINGS.__getitem__)  # every encoding starts with the polarity channels
    resolutions = {c.get("resolution") for c in configs}
    shared = {k: v for k, v in first.items() if k not in PER_MEMBER}
    support = {read["baf_dt_ns"] for read in map(model_input, configs) if read["encoding"] == "polarity_baf"}
    if len(support) > 1:
        raise ValueError(f"'polarity_baf' members filter with different support times (ns): {sorted(support)}")
    return {"arch": "ensemble", **shared, **({"baf_dt_ns": support.pop()} if support else {}),
            "encoding": widest, "in_channels": ENCODINGS[widest],
            "resolution": resolutions.pop() if len(resolutions) == 1 else "mixed",
            "members": [dict(c) for c in configs]}
