"""Safe model files: tensors in safetensors, everything else in a JSON sidecar; nothing is ever unpickled.

A model file `name.safetensors` has a sidecar `name.json`:
    {"format": "microexp-weights/1", "config": {...architecture, passed to build()...},
     "meta": {...command, seed, data, metrics...}, "sha256": "<of the .safetensors file>",
     "tensors": {"<state_dict key>": [shape...]}}
The sha256 ties the two files together, so a sidecar that belongs to another weights file is rejected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "microexp-weights/1"


class WeightsError(ValueError):
    """A weights file or its sidecar is malformed or does not fit the model it is loaded into."""


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar next to a .safetensors file."""
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(path: str | Path, model: nn.Module, config: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write `model.state_dict()` to `path` (.safetensors) and the sidecar; returns the weights path.

    `config` must be what `build(config)` needs to recreate the architecture; `meta` records provenance
    (command, seed, data, metrics). Both must be JSON-serialisable.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights path must end in .safetensors, got {path}")
    # Clone so tensors sharing storage (tied or views) are saved independently; safetensors refuses aliases.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    record = {"format": FORMAT, "config": dict(config), "meta": dict(meta)}
    json.dumps(record)  # fail before writing anything if config/meta are not JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": FORMAT, "config": json.dumps(dict(config), sort_keys=True)})
    record["sha256"] = _sha256(path)
    record["tensors"] = {k: list(v.shape) for k, v in state.items()}
    sidecar_path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The parsed sidecar of a weights file, checked for format; errors name the file."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if not side.is_file():
        raise FileNotFoundError(f"weights sidecar not found: {side} (every .safetensors needs its .json)")
    try:
        record = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"weights sidecar {side} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise WeightsError(f"weights sidecar {side} has format {found!r}, expected {FORMAT!r}")
    for key in ("config", "meta", "sha256"):
        if key not in record:
            raise WeightsError(f"weights sidecar {side} lacks the '{key}' entry")
    return record


def load_model(path: str | Path, build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model with `build(config)`, load its tensors strictly, return (model in eval mode, meta).

    The returned meta is the sidecar's "meta" with the architecture "config" and the weights' (checked)
    "sha256" added under those keys.
    Raises FileNotFoundError for a missing file and WeightsError for a corrupt, mismatched or incompatible one.
    """
    path = Path(path)
    record = read_sidecar(path)
    if _sha256(path) != record["sha256"]:
        raise WeightsError(f"{path} does not match its sidecar {sidecar_path(path)} (sha256 differs)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from None
    try:
        model = build(dict(record["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"cannot build the model of {path} from its config: {exc}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong:
            details.append(
                "wrong shape " + ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:5])
            )
        raise WeightsError(f"weights {path} do not fit the model: " + "; ".join(details))
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = dict(record["meta"])
    meta["config"] = dict(record["config"])
    meta["sha256"] = record["sha256"]
    return model, meta


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (reported in sidecars and benchmarks)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["FORMAT", "WeightsError", "count_parameters", "load_model", "read_sidecar", "save_model", "sidecar_path"]
