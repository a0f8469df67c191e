"""Clip bags: the MCAP bag written from a dataset opens with rosbags and with the independent `mcap` reader,
holds what its sidecar says, and its EventPackets decode to exactly the clips' events; the embedded default bag
shipped in the package does the same."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from microexp_ros.data.bag_io import BagReader
from microexp_ros.data.clip_bag import EVENT_TOPICS, GROUND_TRUTH, GROUND_TRUTH_TOPIC, RGB_TOPIC, write_clip_bag
from microexp_ros.data.dataset import generate_dataset, load_clip, load_manifest
from microexp_ros.data.typestore import EVENT_PACKET, IMAGE, typestore
from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.events.codecs import make_decoder
from microexp_ros.resources import share_path


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """A 3-clip dataset and the bag of clips 0 and 2 (order as given)."""
    root = tmp_path_factory.mktemp("bag")
    dataset = root / "set"
    generate_dataset(dataset, 3, seed=5, n_identities=4, workers=1)
    out = root / "clips_bag"
    sidecar = write_clip_bag(dataset, out, ["c00002", "c00000"], command="test")
    return dataset, out, sidecar


def _decoded_events(bag_dir: Path, topic: str, width: int, height: int) -> tuple[np.ndarray, list]:
    store = typestore()
    decoder = make_decoder("evt3", width, height)
    parts, messages = [], []
    for m in BagReader(bag_dir, [topic]).messages():
        msg = store.deserialize_cdr(m.cdr, EVENT_PACKET)
        messages.append((m.time_ns, msg))
        parts.append(decoder.decode(msg.events.tobytes(), time_base=int(msg.time_base)).events)
    assert sum(decoder.drops.values()) == 0, decoder.drops
    return (np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)), messages


def _check_bag(bag_dir: Path, sidecar: dict, dataset: Path | None) -> None:
    reader = BagReader(bag_dir)
    assert {t: v.count for t, v in reader.topics.items()} == {t: v["count"] for t, v in sidecar["topics"].items()}
    assert {t: v.msgtype for t, v in reader.topics.items()} == {t: v["type"] for t, v in sidecar["topics"].items()}
    for topic in (*EVENT_TOPICS.values(), RGB_TOPIC):
        assert reader.topics[topic].qos.reliability == "best_effort"
    assert reader.topics[GROUND_TRUTH_TOPIC].qos.reliability == "reliable"

    # the independent mcap reader sees the same channels and counts
    mcap_file = next(bag_dir.glob("*.mcap"))
    with open(mcap_file, "rb") as f:
        counts = collections.Counter(channel.topic for _, channel, _ in make_reader(f).iter_messages())
    assert dict(counts) == {t: v["count"] for t, v in sidecar["topics"].items()}

    offset = sidecar["host_minus_sensor_ns"]
    for r, topic in EVENT_TOPICS.items():
        w, h = sidecar["resolutions"][r]["width"], sidecar["resolutions"][r]["height"]
        decoded, messages = _decoded_events(bag_dir, topic, w, h)
        assert [int(m.seq) for _, m in messages] == list(range(len(messages)))
        for record_ns, m in messages:
            assert m.encoding == "evt3" and (m.width, m.height) == (w, h)
            assert record_ns == m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
        first_t = decoded["t"][np.searchsorted(decoded["t"], [rec - offset for rec, _ in messages])]
        np.testing.assert_array_equal(first_t, [rec - offset for rec, _ in messages])  # stamp = first event
        assert len(decoded) == sum(c["events"][r] for c in sidecar["clips"])
        if dataset is not None:
            by_id = {c["id"]: c for c in load_manifest(dataset)["clips"]}
            expected = []
            for c in sidecar["clips"]:
                ev = load_clip(dataset, by_id[c["id"]]).events[r].copy()
                ev["t"] += c["sensor_start_ns"]
                expected.append(ev)
            np.testing.assert_array_equal(decoded, np.concatenate(expected))
        else:  # without the dataset: events fall inside their clip's interval
            for c in sidecar["clips"]:
                inside = (decoded["t"] >= c["sensor_start_ns"]) & (decoded["t"] <= c["sensor_start_ns"] + c["duration_ns"])
                assert inside.sum() == c["events"][r]

    store = typestore()
    truth = [store.deserialize_cdr(m.cdr, GROUND_TRUTH) for m in BagReader(bag_dir, [GROUND_TRUTH_TOPIC]).messages()]
    for c in sidecar["clips"]:
        mine = [g for g in truth if g.clip_id == c["id"]]
        assert all(g.lighting == c["lighting"] and g.identity == c["identity"] for g in mine)
        main = [a for a in c["aus"] if a.get("role", "main") == "main"]
        active = {int(au) for g in mine for au in g.active_aus}
        assert active == {a["au"] for a in c["aus"]}
        if main:
            phases = [int(g.phase) for g in mine if main[0]["au"] in g.active_aus.tolist()]
            assert phases[:3] == [1, 2, 3]
            apex = next(g for g in mine if g.phase == 2)
            assert apex.header.stamp.sec * 10**9 + apex.header.stamp.nanosec == \
                c["host_start_ns"] + main[0]["apex_ns"]
    images = [(m.time_ns, store.deserialize_cdr(m.cdr, IMAGE)) for m in BagReader(bag_dir, [RGB_TOPIC]).messages()]
    assert all(img.encoding == "bgr8" and img.step == img.width * 3 for _, img in images)
    if dataset is not None:
        first = sidecar["clips"][0]
        clip = load_clip(dataset, {c["id"]: c for c in load_manifest(dataset)["clips"]}[first["id"]])
        rec, img = images[0]
        np.testing.assert_array_equal(img.data.reshape(img.height, img.width, 3), clip.rgb[0])
        assert rec == first["host_start_ns"] + int(clip.rgb_t[0])


def test_clip_bag_matches_dataset_and_sidecar(bag):
    dataset, out, sidecar = bag
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(sidecar))
    assert [c["id"] for c in sidecar["clips"]] == ["c00002", "c00000"]
    first, second = sidecar["clips"]
    assert second["sensor_start_ns"] == first["sensor_start_ns"] + first["duration_ns"] + sidecar["gap_ns"]
    _check_bag(out, sidecar, dataset)


def test_clip_bag_rejects_bad_input(bag, tmp_path):
    dataset, out, _ = bag
    with pytest.raises(ValueError, match="c09999"):
        write_clip_bag(dataset, tmp_path / "b", ["c09999"])
    with pytest.raises(ValueError, match="cannot create bag"):
        write_clip_bag(dataset, out, ["c00000"])  # exists already


def test_embedded_default_bag():
    bag_dir = share_path("bags", "default")
    sidecar = json.loads(share_path("bags", "default.json").read_text())
    assert bag_dir.is_dir(), f"embedded bag missing at {bag_dir}"
    size = sum(p.stat().st_size for p in bag_dir.rglob("*") if p.is_file())
    assert size <= 20_000_000 and size == sidecar["bag_bytes"]
    assert "--preset embedded" in sidecar["dataset_command"] and "data bag" in sidecar["command"]
    lightings = {c["lighting"] for c in sidecar["clips"]}
    assert {"normal", "dim"} <= lightings
    labels = [c["label"] for c in sidecar["clips"]]
    assert len(set(labels) - {0}) >= 3  # several different AUs
    _check_bag(bag_dir, sidecar, None)
