"""Dataset clips -> a rosbag2 MCAP bag that replays like the real rig, plus a JSON sidecar saying what is in it.

Clips are laid one after another on one sensor timeline with gaps between them. Events of both sensors go out
as 1 ms EVT3 EventPackets (`Packetizer`, self-contained packets, time_base 0 as metavision_driver writes),
webcam frames as bgr8 Images stamped at their exposure centre, and ground truth as AUGroundTruth whenever the
label state changes (clip start, each AU onset/apex/offset, clip end). Host time = sensor time + a fixed
offset recorded in the sidecar; each message's bag record time is its header stamp.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from microexp_ros.data.bag_io import BagWriter, TopicQos
from microexp_ros.data.dataset import load_clip, load_manifest
from microexp_ros.data.typestore import EVENT_PACKET, IMAGE, typestore
from microexp_ros.events.packetizer import Packetizer

EVENT_TOPICS = {"high": "/event_camera/events", "low": "/event_camera_low/events"}
RGB_TOPIC = "/rgb/image_raw"
GROUND_TRUTH_TOPIC = "/ground_truth/au"
GROUND_TRUTH = "microexp_ros/msg/AUGroundTruth"
FRAME_IDS = {"high": "event_camera_optical_frame", "low": "event_camera_low_optical_frame", "rgb": "rgb_optical_frame"}
# Host time = sensor time + HOST_OFFSET_NS (2026-01-01T00:00:00Z), as if the sensors started then.
HOST_OFFSET_NS = 1_767_225_600_000_000_000
TIMELINE_START_NS = 1_000_000_000
GAP_NS = 500_000_000
PACKET_NS = 1_000_000
PHASES = {"neutral": 0, "onset": 1, "apex": 2, "offset": 3}
APEX_NS = 1_000_000  # the apex is an instant; its ground-truth phase lasts 1 ms


def _time(ns: int):
    return typestore().types["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(ns: int, frame_id: str):
    return typestore().types["std_msgs/msg/Header"](stamp=_time(ns), frame_id=frame_id)


def label_changes(meta: dict) -> list[tuple[int, list[dict], int]]:
    """(clip time ns, active AUs, phase) at every change of the clip's label state, from 0 to the clip end.
    The phase follows the main AU: onset from its onset, apex for APEX_NS from its apex, offset until its
    offset, neutral otherwise; every AU occurrence (distractor blinks too) is listed while it is active."""
    points = {0, int(meta["duration_ns"])}
    for a in meta["aus"]:
        points |= {int(a["onset_ns"]), int(a["apex_ns"]), int(a["apex_ns"]) + APEX_NS, int(a["offset_ns"])}
    main = next((a for a in meta["aus"] if a.get("role", "main") == "main"), None)
    changes = []
    for t in sorted(points):
        active = [a for a in meta["aus"] if a["onset_ns"] <= t < a["offset_ns"]]
        if main is None or not main["onset_ns"] <= t < main["offset_ns"]:
            phase = PHASES["neutral"]
        elif t < main["apex_ns"]:
            phase = PHASES["onset"]
        elif t < main["apex_ns"] + APEX_NS:
            phase = PHASES["apex"]
        else:
            phase = PHASES["offset"]
        changes.append((t, active, phase))
    return changes


def write_clip_bag(dataset: str | os.PathLike, out: str | os.PathLike, clip_ids: list[str] | None = None,
                   command: str = "", gap_ns: int = GAP_NS) -> dict:
    """Write the clips `clip_ids` (default all) of `dataset` as an MCAP bag at `out` and the sidecar
    `<out>.json`; returns the sidecar. ValueError naming unknown clip ids; BagError if `out` exists."""
    manifest = load_manifest(dataset)
    by_id = {c["id"]: c for c in manifest["clips"]}
    clip_ids = list(clip_ids) if clip_ids else list(by_id)
    unknown = [i for i in clip_ids if i not in by_id]
    if unknown:
        raise ValueError(f"clip(s) {', '.join(unknown)} not in {dataset}")
    if gap_ns < 0:
        raise ValueError(f"gap between clips must be >= 0 ns, got {gap_ns}")
    out = Path(out)
    store = typestore()
    EventPacket, Image = store.types[EVENT_PACKET], store.types[IMAGE]
    GroundTruth = store.types[GROUND_TRUTH]
    res = manifest["resolutions"]
    packetizers = {r: Packetizer(time_threshold_ns=PACKET_NS) for r in EVENT_TOPICS}
    seq = dict.fromkeys(EVENT_TOPICS, 0)
    sidecar_clips = []
    with BagWriter(out) as bag:
        for r, topic in EVENT_TOPICS.items():
            bag.add_topic(topic, EVENT_PACKET, TopicQos("best_effort", depth=100))
        bag.add_topic(RGB_TOPIC, IMAGE, TopicQos("best_effort", depth=5))
        bag.add_topic(GROUND_TRUTH_TOPIC, GROUND_TRUTH, TopicQos("reliable", depth=10))
        start = TIMELINE_START_NS
        for clip_id in clip_ids:
            clip = load_clip(dataset, by_id[clip_id])
            meta = clip.meta
            # Messages are collected per clip and written in stamp order (a bag is read in record-time order).
            pending: list[tuple[int, int, str, bytes]] = []
            counts = {}
            for r, topic in EVENT_TOPICS.items():
                events = clip.events[r].copy()
                events["t"] += start
                packets = packetizers[r].add(events) + packetizers[r].flush()
                for packet in packets:
                    stamp = packet.first_t + HOST_OFFSET_NS
                    msg = EventPacket(header=_header(stamp, FRAME_IDS[r]), height=res[r]["height"],
                                      width=res[r]["width"], seq=seq[r], time_base=0, encoding="evt3",
                                      is_bigendian=False, events=np.frombuffer(packet.data, np.uint8))
                    seq[r] += 1
                    pending.append((stamp, 0, topic, store.serialize_cdr(msg, EVENT_PACKET)))
                counts[topic] = len(packets)
            for frame, t in zip(clip.rgb, clip.rgb_t):
                stamp = int(t) + start + HOST_OFFSET_NS
                h, w = frame.shape[:2]
                msg = Image(header=_header(stamp, FRAME_IDS["rgb"]), height=h, width=w, encoding="bgr8",
                            is_bigendian=0, step=w * 3, data=np.ascontiguousarray(frame).reshape(-1))
                pending.append((stamp, 1, RGB_TOPIC, store.serialize_cdr(msg, IMAGE)))
            counts[RGB_TOPIC] = len(clip.rgb)
            changes = label_changes(meta)
            main = next((a for a in meta["aus"] if a.get("role", "main") == "main"), None)
            for t, active, phase in changes:
                stamp = t + start + HOST_OFFSET_NS
                when = (lambda key: _time(int(main[key]) + start + HOST_OFFSET_NS)) if main else (lambda key: _time(0))
                msg = GroundTruth(header=_header(stamp, FRAME_IDS["rgb"]), clip_id=clip_id,
                                  identity=meta["identity"], lighting=meta["lighting"],
                                  active_aus=np.array([a["au"] for a in active], np.uint8),
                                  intensities=np.array([a["intensity"] for a in active], np.float32),
                                  phase=phase, onset=when("onset_ns"), apex=when("apex_ns"), offset=when("offset_ns"))
                pending.append((stamp, 2, GROUND_TRUTH_TOPIC, store.serialize_cdr(msg, GROUND_TRUTH)))
            counts[GROUND_TRUTH_TOPIC] = len(changes)
            for stamp, _, topic, cdr in sorted(pending, key=lambda m: (m[0], m[1])):
                bag.write(topic, stamp, cdr)
            sidecar_clips.append({
                "id": clip_id, "label": meta["label"], "lighting": meta["lighting"], "identity": meta["identity"],
                "macro": bool(meta.get("macro", False)), "aus": meta["aus"],
                "sensor_start_ns": start, "host_start_ns": start + HOST_OFFSET_NS,
                "duration_ns": int(meta["duration_ns"]),
                "events": {r: int(len(clip.events[r])) for r in EVENT_TOPICS}, "messages": counts,
            })
            start += int(meta["duration_ns"]) + gap_ns
        drops = {r: dict(p.drops) for r, p in packetizers.items() if p.drops}
        topic_counts = dict(bag.counts)
    if drops:
        raise ValueError(f"packetizer dropped events while writing {out}: {drops}")
    bag_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    types = {t: EVENT_PACKET for t in EVENT_TOPICS.values()} | {RGB_TOPIC: IMAGE, GROUND_TRUTH_TOPIC: GROUND_TRUTH}
    sidecar = {
        "format": "microexp-clip-bag/1", "command": command, "dataset": str(dataset),
        "dataset_seed": manifest["seed"], "dataset_command": manifest.get("command", ""),
        "host_minus_sensor_ns": HOST_OFFSET_NS, "gap_ns": gap_ns, "packet_ns": PACKET_NS, "encoding": "evt3",
        "resolutions": res, "rgb": manifest["rgb"],
        "topics": {t: {"type": types[t], "count": n} for t, n in topic_counts.items()},
        "qos": {**{t: "best_effort" for t in EVENT_TOPICS.values()}, RGB_TOPIC: "best_effort",
                GROUND_TRUTH_TOPIC: "reliable"},
        "bag_bytes": bag_bytes, "clips": sidecar_clips,
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
    return sidecar
