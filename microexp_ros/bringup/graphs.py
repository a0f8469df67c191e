"""The node graphs of microexp_ros, described once.

`launch/<graph>.launch.py` turns a graph into launch_ros Nodes (microexp_ros.bringup.ros_launch) and
`microexp launch <graph>` runs the same graph as separate processes (microexp_ros.bringup.runner), so the two
cannot drift apart. Launch arguments are strings (as on the `ros2 launch` command line); a graph function
turns them into node specs with parameter files from `config/` and overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from microexp_ros.data.dataset import RESOLUTIONS
from microexp_ros.models.shipped import DEFAULT_LOW_EVENTS_MODEL
from microexp_ros.resources import share_path


@dataclass(frozen=True)
class Argument:
    default: str
    description: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodeSpec:
    """One node process: what `ros2 launch` and `microexp launch` both start."""

    executable: str
    name: str
    params_files: tuple[str, ...] = ()              # file names under share/microexp_ros/config
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    respawn: bool = False
    respawn_delay_s: float = 1.0


# Respawn delay of the HRI graphs' nodes: short, since a robot waits on /au_predictions while a node restarts.
FAST_RESPAWN_S = 0.1
# ... and a node that hears neither its sensor-rate input nor the other nodes' /diagnostics for this long, both
# matched, is deaf and leaves to be respawned (`deaf_restart_s`, ros.diagnostics): after the 5 s at which it
# reports a silent input, and soon enough that a robot gets its AUs back within seconds (session 15: was 15 s).
DEAF_RESTART_S = 8.0

# The processing nodes a bag player waits for (they take seconds to load torch and their weights): it starts
# the replay only when each of them in its graph has said on `~/ready` that it is up and, for the nodes of
# READERS, that its readers have matched, so every window flows through in real time.
READY_NODES = ("time_sync", "au_classifier", "reconstruction", "face_region")
# The nodes that read what time_sync and au_classifier publish. Each of the two holds its first outputs until
# as many of these as its graph runs have matched it (`wait_for_subscribers`, microexp_ros.ros.publish_gate):
# under load a reader can match a writer after the first messages were sent, and never gets them.
READERS = {"time_sync": ("face_region", "au_classifier", "reconstruction", "visualizer"),
           "au_classifier": ("hri_bridge", "visualizer")}

COMMON_ARGUMENTS: dict[str, Argument] = {
    "dds_transport": Argument("shm", "FastDDS transport: shm (one host, large messages), large_data "
                                     "(multi-host robots), default (FastDDS defaults)",
                              ("shm", "large_data", "default")),
}


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got '{value}'")
    return lowered in ("true", "1")


def _seed(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"seed must be a non-negative integer, got '{value}'")
    return int(value)


def sensors(args: Mapping[str, str]) -> list[NodeSpec]:
    """Event camera driver, RGB driver and time sync."""
    events_topic = args["event_topic"]
    nodes = []
    if not _flag(args["use_external_event_camera"]):
        driver_params: dict[str, Any] = {"source": args["event_source"]}
        if args["event_file"]:
            driver_params["file"] = args["event_file"]
        nodes.append(NodeSpec("event_camera_driver", "event_camera", ("sensors.yaml",), driver_params,
                              respawn=True))
        events_topic = "/event_camera/events"
    if args["rgb_source"]:
        nodes.append(NodeSpec("rgb_driver", "rgb", ("sensors.yaml",), {"source": args["rgb_source"]},
                              respawn=True))
    nodes.append(NodeSpec("time_sync", "time_sync", ("sensors.yaml",),
                          {"events_only": not args["rgb_source"]},
                          (("events", events_topic), ("image", "/rgb/image_raw"))))
    return nodes


def replay(args: Mapping[str, str]) -> list[NodeSpec]:
    """A recorded bag played back into time sync, as the drivers would have published it."""
    player: dict[str, Any] = {"rate": float(args["rate"]), "loop": _flag(args["loop"]),
                              "start_offset": float(args["start_offset"])}
    if args["bag"]:
        player["bag"] = args["bag"]
    return [
        NodeSpec("bag_player", "bag_player", ("replay.yaml",), player),
        NodeSpec("time_sync", "time_sync", ("replay.yaml",), {"events_only": _flag(args["events_only"])},
                 (("events", args["event_topic"]), ("image", args["image_topic"]))),
    ]


def record(args: Mapping[str, str]) -> list[NodeSpec]:
    """Record topics to an MCAP bag."""
    recorder: dict[str, Any] = {}
    if args["topics"]:
        recorder["topics"] = [t for t in args["topics"].split(",") if t]
    if args["output"]:
        recorder["output"] = args["output"]
    return [NodeSpec("bag_recorder", "bag_recorder", ("record.yaml",), recorder)]


def _event_sources(args: Mapping[str, str], config: tuple[str, ...]) -> tuple[list[NodeSpec], str, bool]:
    """The sensor end of the HRI and sim graphs: (nodes, event topic, whether an RGB stream exists)."""
    source = args["source"]
    if source == "bag":
        loop = _flag(args["loop"])
        player: dict[str, Any] = {"exit_when_done": not loop, "loop": loop}
        if args["bag"]:
            player["bag"] = args["bag"]
        if args["rate"]:
            player["rate"] = float(args["rate"])
        topic = "/event_camera_low/events" if args["resolution"] == "low" else "/event_camera/events"
        # time_sync's inputs: its ready flag says its readers matched it, not that it matched the player
        player["wait_for_readers"] = [topic, "/rgb/image_raw"]
        player_spec = NodeSpec("bag_player", "bag_player", config, player, respawn=loop, respawn_delay_s=FAST_RESPAWN_S)
        return [player_spec], topic, True
    if source == "sim":
        # The synthetic face (or a video) seen by the dataset's simulated sensor of that resolution.
        size = SIM_SENSORS[args["resolution"]]
        driver: dict[str, Any] = ({"source": "sim", "file": args["video"]} if args["video"]
                                  else {"source": "face", "lighting": args["lighting"]})
        driver.update(width=size, height=size, sensor_model=args["resolution"], seed=_seed(args["seed"]))
        return [NodeSpec("event_camera_driver", "event_camera", config, driver, respawn=True)], \
            "/event_camera/events", False
    nodes, events_topic = [], args["event_topic"]
    if not _flag(args["use_external_event_camera"]):
        driver = {"source": "file", "file": args["event_file"]}
        nodes.append(NodeSpec("event_camera_driver", "event_camera", config, driver, respawn=True))
        events_topic = "/event_camera/events"
    if args["rgb_source"]:
        nodes.append(NodeSpec("rgb_driver", "rgb", config, {"source": args["rgb_source"]}, respawn=True))
    return nodes, events_topic, bool(args["rgb_source"])


def wait_for_ready(specs: list[NodeSpec], outside_readers: Mapping[str, int] | None = None) -> list[NodeSpec]:
    """`specs` with the bag player (if any) waiting for the `~/ready` flags (microexp_ros.ros.ready) of the
    READY_NODES among them, and the nodes of READERS waiting for their readers among them plus
    `outside_readers[node]` (e.g. a collector)."""
    names = {spec.name for spec in specs}
    waits = [f"/{node}/ready" for node in READY_NODES if node in names]
    added: dict[str, dict[str, Any]] = {"bag_player": {"wait_for_ready": waits}}
    for node, readers in READERS.items():
        wanted = len(names.intersection(readers)) + (outside_readers or {}).get(node, 0)
        added[node] = {"wait_for_subscribers": wanted}
    return [replace(spec, parameters={**spec.parameters, **added[spec.name]}) if spec.name in added else spec
            for spec in specs]


def _respawning(name: str, config: tuple[str, ...], parameters: Mapping[str, Any],
                remappings: tuple[tuple[str, str], ...] = ()) -> NodeSpec:
    """A processing node of the HRI graphs (executable and node name alike), respawned FAST_RESPAWN_S after
    it dies or leaves deaf (nodes without watched inputs ignore `deaf_restart_s`)."""
    return NodeSpec(name, name, config, {"deaf_restart_s": DEAF_RESTART_S, **parameters}, remappings, respawn=True,
                    respawn_delay_s=FAST_RESPAWN_S)


def hri(args: Mapping[str, str]) -> list[NodeSpec]:
    """The whole system: sensors (or a bag, or the simulator) → sync → AUs, reconstruction, face, ROS4HRI."""
    config = ("sensors.yaml", "models.yaml", "hri.yaml")
    nodes, events_topic, has_rgb = _event_sources(args, config)
    samples = (("samples", "/time_sync/samples"),)
    # Live RGB: detect the face and crop both streams to it. A bag or the simulator already frames the face
    # (the generated recordings are face regions), so the region is the static one of hri.yaml.
    detect = has_rgb and args["source"] == "live"
    region = (("face_region", "/face_region/region"),)
    classifier: dict[str, Any] = {"use_face_region": detect, "fuse_rgb": has_rgb and _flag(args["au_fuse_rgb"])}
    recon: dict[str, Any] = {"use_face_region": detect}
    if args["au_model"]:
        classifier["model_path"] = args["au_model"]
    elif args["resolution"] == "low":   # the shipped default of that sensor (empty = the high-resolution one)
        classifier["model_path"] = str(share_path("models", DEFAULT_LOW_EVENTS_MODEL))
    if args["recon_model"]:
        recon["model_path"] = args["recon_model"]
    # Processing nodes respawn like the drivers: a robot keeps its AU stream through a crashed node.
    nodes += [
        _respawning("time_sync", config, {"events_only": not has_rgb},
                    (("events", events_topic), ("image", "/rgb/image_raw"))),
        _respawning("face_region", config, {"source": "samples" if detect else "static"}, samples),
        _respawning("au_classifier", config, classifier, samples + region),
        _respawning("reconstruction", config, recon, samples + region),
        _respawning("hri_bridge", config, {}),
    ]
    if _flag(args["visualize"]):
        nodes.append(_respawning("visualizer", config, {"use_face_region": True}, samples + region))
    return wait_for_ready(nodes)


# Event sensor sizes of the simulated face region, as in the generated datasets (EVK4-like and DAVIS346-like).
SIM_SENSORS = {"high": 128, "low": 48}
# Lighting conditions of the synthetic face (microexp_ros.sim.lighting.CONDITIONS; kept here so describing a
# graph does not import the simulator).
LIGHTING = ("normal", "bright", "dim", "very_dim", "flicker", "shadow")

_HRI_ARGUMENTS = {
    "source": Argument("live", "live cameras, a recorded bag, or the simulated face", ("live", "bag", "sim")),
    "bag": Argument("", "with source:=bag, the bag to replay; empty = the embedded default bag"),
    "rate": Argument("", "with source:=bag, the playback rate factor; empty = replay.yaml's"),
    "loop": Argument("false", "with source:=bag, replay in a loop (the player then respawns too)", ("true", "false")),
    "visualize": Argument("true", "publish /visualizer/events and /visualizer/au_overlay images",
                          ("true", "false")),
    "resolution": Argument("high", "event resolution to use from a bag or the simulator; low also selects the "
                                   "low-resolution AU model (unless au_model is given)", RESOLUTIONS),
    "video": Argument("", "with source:=sim, a face video for the event simulator to watch; empty = the "
                          "synthetic face generator"),
    "lighting": Argument("normal", "with source:=sim and no video, the synthetic face's lighting", LIGHTING),
    "seed": Argument("0", "with source:=sim, the simulator's seed (and the synthetic face's AU episodes)"),
    "use_external_event_camera": Argument("true", "with source:=live, true: events from event_topic "
                                                  "(metavision_driver / libcaer_driver); false: our driver "
                                                  "plays event_file", ("true", "false")),
    "event_file": Argument("", "with use_external_event_camera:=false, the recording our driver plays"),
    "rgb_source": Argument("0", "with source:=live, the RGB camera: device index or video file; empty = none"),
    "event_topic": Argument("/event_camera/events", "EventPacket topic of an external driver"),
    "au_model": Argument("", "AU classifier weights (.safetensors); empty = the shipped default"),
    "au_fuse_rgb": Argument("false", "fuse the AU events model with the webcam CNN where an RGB stream exists",
                            ("true", "false")),
    "recon_model": Argument("", "reconstruction weights (.safetensors); empty = the shipped default"),
}


GRAPHS: dict[str, tuple[Callable[[Mapping[str, str]], list[NodeSpec]], dict[str, Argument]]] = {
    "sensors": (sensors, {
        "event_source": Argument("file", "event source of the driver: file, face, sim (a video) or camera"),
        "event_file": Argument("", "recording played by the driver when event_source is file (.raw, .aedat4, bag)"),
        "rgb_source": Argument("", "RGB camera: a device index (e.g. 0) or a video file; empty = events only"),
        "use_external_event_camera": Argument("false", "true: do not start our driver, use event_topic "
                                                       "(metavision_driver / libcaer_driver)", ("true", "false")),
        "event_topic": Argument("/event_camera/events", "EventPacket topic of an external driver"),
    }),
    "replay": (replay, {
        "bag": Argument("", "bag to replay (rosbag2 MCAP/sqlite3 or ROS 1); empty = the embedded default bag"),
        "rate": Argument("1.0", "playback rate factor"),
        "loop": Argument("false", "replay in a loop", ("true", "false")),
        "start_offset": Argument("0.0", "seconds to skip at the start of the bag"),
        "event_topic": Argument("/event_camera/events", "EventPacket topic in the bag"),
        "image_topic": Argument("/rgb/image_raw", "Image topic in the bag"),
        "events_only": Argument("false", "true for a bag without RGB: fixed-rate windows", ("true", "false")),
    }),
    "hri": (hri, _HRI_ARGUMENTS),
    "sim": (hri, {**_HRI_ARGUMENTS, "source": Argument("sim", "the synthetic face (or video:=) through the "
                                                                "event simulator", ("sim",))}),
    "record": (record, {
        "topics": Argument("", "comma-separated topics to record; empty = record.yaml's list"),
        "output": Argument("", "bag directory to write; empty = record.yaml's (a timestamped name)"),
    }),
}


def arguments(graph: str) -> dict[str, Argument]:
    """Every launch argument of `graph`, with defaults; ValueError naming the known graphs."""
    if graph not in GRAPHS:
        raise ValueError(f"unknown graph '{graph}' (known: {', '.join(sorted(GRAPHS))})")
    return {**COMMON_ARGUMENTS, **GRAPHS[graph][1]}


def resolve(graph: str, overrides: Mapping[str, str]) -> tuple[dict[str, str], list[NodeSpec]]:
    """Launch arguments with defaults filled in and checked, and the node specs they give."""
    declared = arguments(graph)
    unknown = set(overrides) - set(declared)
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))} for graph '{graph}' "
                         f"(known: {', '.join(sorted(declared))})")
    values = {name: overrides.get(name, arg.default) for name, arg in declared.items()}
    for name, arg in declared.items():
        if arg.choices and values[name] not in arg.choices:
            raise ValueError(f"argument {name}:={values[name]} is not one of {', '.join(arg.choices)}")
    return values, GRAPHS[graph][0](values)
