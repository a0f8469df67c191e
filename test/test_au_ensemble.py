"""AU model ensembles: members fed the leading channels of one encoding, logits averaged, built by the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from microexp_ros.events.array import synthetic_events
from microexp_ros.models.au_ensemble import ensemble_config
from microexp_ros.models.au_inference import AUPredictor, build_au_model
from microexp_ros.models.weights import read_sidecar, save_model

SIZE, BINS = 32, 4
BASE = {"arch": "snn", "modality": "events", "bins": BINS, "size": SIZE, "window_ns": 100_000_000, "resolution": "both"}
POLARITY = {**BASE, "in_channels": 2, "encoding": "polarity"}
NET = {**BASE, "in_channels": 3, "encoding": "polarity_net"}
BAF = {**BASE, "in_channels": 4, "encoding": "polarity_baf", "baf_dt_ns": 3_000_000}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _member(tmp_path, name: str, config: dict, seed: int):
    torch.manual_seed(seed)
    model = build_au_model(config)
    # BatchNorm running statistics of a fresh model would make every window's output alike: give them spread.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.05, 0.2)
    return save_model(tmp_path / f"{name}.safetensors", model, config,
                      {"command": f"microexp train au --seed {seed} ({name})", "seed": seed,
                       "data": {"path": "/data/x"}, "metrics": {"best": {"epoch": 2}, "history": [
                           {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_accuracy": 0.3 * e,
                            "val_accuracy": 0.25 * e} for e in (1, 2, 3)]}})


def test_cli_ensemble_averages_its_members_logits_on_the_same_window(tmp_path):
    from microexp_ros.cli import main

    paths = [_member(tmp_path, "pol", POLARITY, 1), _member(tmp_path, "net", NET, 2)]
    out = tmp_path / "ens.safetensors"
    assert main(["train", "au-ensemble", *map(str, paths), "--out", str(out), "--json"]) == 0
    record = read_sidecar(out)
    assert record["config"]["arch"] == "ensemble" and record["config"]["encoding"] == "polarity_net"
    assert record["config"]["in_channels"] == 3 and len(record["config"]["members"]) == 2
    members = record["meta"]["members"]
    assert [m["sha256"] for m in members] == [read_sidecar(p)["sha256"] for p in paths]
    assert members[1]["command"].endswith("(net)") and members[1]["seed"] == 2
    assert record["meta"]["data"]["path"] == "/data/x" and "au-ensemble" in record["meta"]["command"]
    assert members[0]["best"] == {"epoch": 2} and (tmp_path / "ens_curve.png").stat().st_size > 1000

    ensemble = AUPredictor.from_file(out)
    singles = [AUPredictor.from_file(p) for p in paths]
    window = (synthetic_events(SIZE, SIZE, 0, 100_000_000, count=4000, seed=5), 0, 100_000_000, (0, 0, SIZE, SIZE),
              (SIZE, SIZE))
    result = ensemble.predict(*window)
    logits = []
    for single in singles:
        with torch.inference_mode():
            logits.append(single.model(torch.from_numpy(single.encode(*window))[None]))
    au_mean = (logits[0][0] + logits[1][0]) / 2
    class_mean = (logits[0][1] + logits[1][1]) / 2
    assert not torch.allclose(logits[0][1], logits[1][1])  # the members disagree: the mean is not a copy of one
    assert np.allclose(result.probabilities, torch.sigmoid(au_mean[0]).numpy(), atol=1e-6)
    assert np.allclose(result.class_probabilities, torch.softmax(class_mean[0], dim=0).numpy(), atol=1e-6)
    assert ensemble.runner == "traced"


def test_ensemble_config_rejects_members_that_do_not_fit_together(tmp_path):
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_config([POLARITY])
    with pytest.raises(ValueError, match=r"member 2 differs from member 1 in \['bins'\]"):
        ensemble_config([POLARITY, {**NET, "bins": 8}])
    with pytest.raises(ValueError, match="ensembles are for events models"):
        ensemble_config([{**POLARITY, "modality": "rgb"}] * 2)
    with pytest.raises(ValueError, match="unknown member encodings"):
        ensemble_config([POLARITY, {**NET, "encoding": "voxel"}])
    with pytest.raises(ValueError, match=r"extend the 'polarity' channels in different ways \['polarity_baf', "
                                         r"'polarity_net'\]"):
        ensemble_config([NET, BAF])
    with pytest.raises(ValueError, match="different support times"):
        ensemble_config([BAF, {**BAF, "baf_dt_ns": 1_000_000}])
    config = ensemble_config([POLARITY, BAF])
    assert config["encoding"] == "polarity_baf" and config["in_channels"] == 4 and config["baf_dt_ns"] == 3_000_000
    config = ensemble_config([NET, POLARITY, NET])
    assert config["encoding"] == "polarity_net" and config["in_channels"] == 3 and config["resolution"] == "both"
    json.dumps(config)


def test_bad_members_end_the_command_with_one_line(tmp_path, capsys):
    from microexp_ros.cli import main

    member = _member(tmp_path, "pol", POLARITY, 1)
    cases = [([str(tmp_path / "absent.safetensors"), str(member)], "weights file not found: .*absent.safetensors"),
             ([str(member)], "an ensemble needs at least 2 members, got 1"),
             ([str(member), str(_member(tmp_path, "net8", {**NET, "bins": 8}, 2))],
              r"member 2 differs from member 1 in \['bins'\]: \{'bins': \(4, 8\)\}")]
    for members, message in cases:
        capsys.readouterr()
        assert main(["train", "au-ensemble", *members, "--out", str(tmp_path / "e.safetensors")]) == 2
        err = capsys.readouterr().err
        assert re.fullmatch(f"microexp train au-ensemble: error: {message}\n", err), err
    assert not (tmp_path / "e.safetensors").exists()
