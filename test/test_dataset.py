"""Datasets: `microexp data generate` writes the contract layout, the loader reads back exactly what the
generator made, splits are identity-disjoint and balanced, `inspect` reports it, bad input is named."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from microexp_ros.cli import main
from microexp_ros.data.dataset import (FORMAT, clips, load_clip, load_manifest, plan_dataset, split_identities)
from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.facs import SINGLE_LABEL_CLASSES
from microexp_ros.sim.clip import Geometry, make_clip
from microexp_ros.sim.lighting import CONDITIONS

N_CLIPS = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 3-clip dataset made through the CLI, and the JSON it printed."""
    root = tmp_path_factory.mktemp("ds") / "set"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["data", "generate", str(root), "--clips", str(N_CLIPS), "--identities", "6", "--seed", "3",
                     "--workers", "1", "--json"])
    assert code == 0
    return root, json.loads(out.getvalue())


def test_generate_reports_what_it_wrote(dataset):
    root, printed = dataset
    assert printed["clips"] == N_CLIPS and printed["seconds"] > 0
    assert printed["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_manifest_follows_the_contract(dataset):
    root, _ = dataset
    m = load_manifest(root)
    assert m["format"] == FORMAT and m["seed"] == 3 and "data generate" in m["command"]
    assert m["rgb"]["fps"] == 30.0
    assert m["resolutions"]["high"]["width"] > m["resolutions"]["low"]["width"]
    assert len(m["clips"]) == N_CLIPS
    for c in m["clips"]:
        assert c["split"] in ("train", "val", "test") and c["source"] == "synthetic"
        assert c["label"] in SINGLE_LABEL_CLASSES and c["lighting"] in CONDITIONS
        assert (root / c["dir"]).is_dir()
        for a in c["aus"]:
            assert 0 <= a["onset_ns"] < a["apex_ns"] < a["offset_ns"] <= c["duration_ns"]
        main_aus = [a["au"] for a in c["aus"] if a["role"] == "main"]
        assert main_aus == ([] if c["label"] == 0 else [c["label"]])


def test_loader_reads_exactly_what_the_generator_made(dataset):
    """Re-making a clip from the plan (same seed) gives the arrays the loader returns: the writer and
    reader round-trip, and generation does not depend on worker processes."""
    root, _ = dataset
    m = load_manifest(root)
    specs, _ = plan_dataset(N_CLIPS, seed=3, n_identities=6)
    entry = m["clips"][1]
    spec = specs[1]
    assert spec.clip_id == entry["id"] and spec.identity.name == entry["identity"]
    fresh = make_clip(spec, Geometry(**m["geometry"]))
    loaded = load_clip(root, entry)
    for r in ("high", "low"):
        assert loaded.events[r].dtype == EVENT_DTYPE
        np.testing.assert_array_equal(loaded.events[r], fresh.events[r])
        np.testing.assert_array_equal(loaded.gray[r], fresh.gray[r])
        assert entry["n_events"][r] == len(fresh.events[r])
    np.testing.assert_array_equal(loaded.rgb, fresh.rgb)
    np.testing.assert_array_equal(loaded.rgb_t, fresh.rgb_t)
    assert loaded.meta is entry


def test_clips_filters(dataset):
    root, _ = dataset
    every = clips(root)
    assert len(every) == N_CLIPS
    assert clips(root, label=every[0]["label"])[0]["id"] == every[0]["id"]
    assert sum(len(clips(root, s)) for s in ("train", "val", "test")) == N_CLIPS
    with pytest.raises(ValueError, match="unknown clip field"):
        clips(root, colour="red")
    with pytest.raises(ValueError, match="split"):
        clips(root, "training")


def test_plan_is_balanced_and_identity_disjoint():
    specs, split_of = plan_dataset(156, seed=1, n_identities=40)
    labels = collections.Counter(s.label for s in specs)
    lights = collections.Counter(s.lighting for s in specs)
    assert set(labels.values()) == {12} and set(lights.values()) == {26}
    cells = collections.Counter((s.label, s.lighting) for s in specs)
    assert set(cells.values()) == {2}
    splits = collections.Counter(split_of[s.identity.name] for s in specs)
    assert 0.6 < splits["train"] / 156 < 0.8 and splits["val"] > 10 and splits["test"] > 10
    people = {s: {p for p, sp in split_of.items() if sp == s} for s in ("train", "val", "test")}
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert [len(people[s]) for s in ("train", "val", "test")] == [28, 6, 6]
    assert 0.05 < sum(s.macro for s in specs) / 156 < 0.3
    again, _ = plan_dataset(156, seed=1, n_identities=40)
    assert again == specs
    assert len({s.seed for s in specs}) == 156
    with pytest.raises(ValueError, match=">= 3 identities"):
        split_identities(["a", "b"], 0)


def test_inspect_prints_statistics_and_a_montage(dataset, tmp_path, capsys):
    root, _ = dataset
    png = tmp_path / "montage.png"
    assert main(["data", "inspect", str(root), "--json", "--montage", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == N_CLIPS and report["identity_overlap"] == []
    assert sum(report["per_label"].values()) == N_CLIPS
    assert report["events_per_clip"]["high"]["mean"] > report["events_per_clip"]["low"]["mean"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_bad_datasets_are_named(dataset, tmp_path, capsys):
    root, _ = dataset
    with pytest.raises(FileNotFoundError, match="no dataset"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other/2"}))
    with pytest.raises(ValueError, match="format"):
        load_manifest(tmp_path)
    entry = dict(load_manifest(root)["clips"][0], dir="clips/nowhere")
    with pytest.raises(FileNotFoundError, match="events_high.npy is missing"):
        load_clip(root, entry)
    assert main(["data", "generate", str(root), "--clips", "1"]) == 2  # refuses to overwrite
    assert "already holds a dataset" in capsys.readouterr().err


def test_generate_makes_clips_of_the_duration_asked(tmp_path, capsys):
    root = tmp_path / "long"
    assert main(["data", "generate", str(root), "--clips", "1", "--identities", "6", "--seed", "3",
                 "--duration", "2", "--workers", "1", "--json"]) == 0
    m = load_manifest(root)
    entry = m["clips"][0]
    assert m["geometry"]["duration_ns"] == entry["duration_ns"] == 2_000_000_000
    assert "--duration 2" in m["command"]
    clip = load_clip(root, entry)
    assert clip.rgb.shape[0] == 60 and clip.rgb_t[-1] < 2_000_000_000 < clip.rgb_t[-1] + 34_000_000
    for r in ("high", "low"):
        assert clip.events[r]["t"][-1] > 1_900_000_000   # the sensors saw the whole two seconds
    assert all(0 <= a["onset_ns"] < a["offset_ns"] <= 2_000_000_000 for a in entry["aus"])
    assert main(["data", "generate", str(tmp_path / "short"), "--clips", "1", "--duration", "0.2"]) == 2
    assert "clip duration must be >= 300 ms" in capsys.readouterr().err
    assert not (tmp_path / "short").exists()
