"""launch/*.launch.py and `microexp launch` start the same nodes with the same parameters and remappings.

ROS launch is not installable here, so the launch files run against small stand-ins for the launch and
launch_ros classes they use, which record what the files construct; a real ROS 2 install runs the same files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from microexp_ros.bringup.graphs import GRAPHS, arguments, resolve
from microexp_ros.bringup.runner import node_command
from microexp_ros.resources import share_dir

LAUNCH_DIR = share_dir() / "launch"


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class OpaqueFunction(Recorded):
    def execute(self, context):
        return self.kwargs["function"](context, *self.kwargs.get("args", []))


class LaunchContext:
    def __init__(self, values):
        self.launch_configurations = values


@pytest.fixture
def launch_stand_ins(monkeypatch):
    """Stand-ins for the launch/launch_ros names the launch files use (only where ROS launch is absent)."""
    if importlib.util.find_spec("launch_ros") is not None:
        pytest.skip("real launch_ros installed: use launch_testing there")
    modules = {
        "launch": {"LaunchDescription": Recorded, "LaunchContext": LaunchContext},
        "launch.actions": {"DeclareLaunchArgument": Recorded, "OpaqueFunction": OpaqueFunction,
                           "SetEnvironmentVariable": Recorded},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Recorded},
        "launch_ros.parameter_descriptions": {"ParameterValue": Recorded},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "microexp_ros.bringup.ros_launch", raising=False)


def run_launch_file(path: Path, overrides: dict[str, str]) -> tuple[list[Recorded], list[Recorded]]:
    """(declared arguments, Node actions) of a launch file, as `ros2 launch file.py k:=v` would build them."""
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description().args[0]
    declared = [e for e in entities if e.__class__.__name__ == "Recorded" and "default_value" in e.kwargs]
    values = {d.args[0]: d.kwargs["default_value"] for d in declared} | overrides
    actions = [a for e in entities if isinstance(e, OpaqueFunction) for a in e.execute(LaunchContext(values))]
    return declared, [a for a in actions if "executable" in a.kwargs]


def launcher_view(node: Recorded) -> dict:
    """A launch_ros Node reduced to what the runner's command line carries."""
    kw = node.kwargs
    *files, overrides = kw["parameters"]
    return {"executable": kw["executable"], "name": kw["name"], "params_files": [Path(f).name for f in files],
            "parameters": {k: json.dumps(parameter_value(v)) for k, v in overrides.items()},
            "remappings": [list(r) for r in kw["remappings"]], "respawn": kw["respawn"]}


def parameter_value(value):
    """A parameter as launch_ros would pass it: strings must come wrapped so they stay strings."""
    if isinstance(value, Recorded):
        assert value.kwargs == {"value_type": str}, value.kwargs
        return value.args[0]
    assert not isinstance(value, str), f"bare string parameter {value!r} would be read as YAML by launch_ros"
    return value


def command_view(cmd: list[str], respawn: bool) -> dict:
    """The runner's command line reduced to the same fields."""
    args = cmd[2:]
    pairs = list(zip(args[::2], args[1::2]))
    remaps = [v.split(":=", 1) for k, v in pairs if k == "-r"]
    return {"executable": Path(cmd[0]).name, "name": remaps[0][1],
            "params_files": [Path(v).name for k, v in pairs if k == "--params-file"],
            "parameters": dict(v.split(":=", 1) for k, v in pairs if k == "-p"),
            "remappings": remaps[1:], "respawn": respawn}


def test_every_graph_has_a_launch_file_and_back():
    files = {p.name.removesuffix(".launch.py") for p in LAUNCH_DIR.glob("*.launch.py")}
    assert files == set(GRAPHS)


ARGUMENT_CASES = {
    "sensors": [{}, {"use_external_event_camera": "true", "event_topic": "/cam/events", "rgb_source": "0"},
                {"event_source": "sim", "dds_transport": "large_data"}, {"event_source": "face"}],
    "replay": [{}, {"bag": "/data/x", "rate": "2.0", "loop": "true", "events_only": "true"}],
    "record": [{}, {"topics": "/a,/b", "output": "/tmp/out"}],
    "hri": [{}, {"source": "bag", "resolution": "low", "rate": "2.0"},
            {"use_external_event_camera": "false", "event_file": "/data/x.raw", "rgb_source": "",
             "au_model": "/m/a.safetensors", "recon_model": "/m/r.safetensors"}],
    "sim": [{}, {"resolution": "low", "lighting": "flicker", "seed": "7"}, {"video": "/data/face.mp4"},
            {"resolution": "low", "video": "/data/face.mp4"}],
}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_launch_file_and_runner_start_the_same_nodes(launch_stand_ins, graph):
    for overrides in ARGUMENT_CASES[graph]:
        declared, nodes = run_launch_file(LAUNCH_DIR / f"{graph}.launch.py", overrides)
        assert {d.args[0]: d.kwargs["default_value"] for d in declared} == {
            name: arg.default for name, arg in arguments(graph).items()}
        _, specs = resolve(graph, overrides)
        assert [launcher_view(n) for n in nodes] == [command_view(node_command(s), s.respawn) for s in specs]
        for node in nodes:
            for params_file in node.kwargs["parameters"][:-1]:
                assert Path(params_file).is_file(), f"{graph}: missing parameter file {params_file}"


def test_sim_graph_defaults_to_the_synthetic_face_and_watches_a_video_on_request():
    from microexp_ros.events.sources import SOURCE_KINDS
    from microexp_ros.nodes.event_camera_driver import PARAMS
    from microexp_ros.sim.lighting import CONDITIONS

    _, specs = resolve("sim", {})
    driver = next(s for s in specs if s.executable == "event_camera_driver")
    assert dict(driver.parameters) == {"source": "face", "lighting": "normal", "width": 128, "height": 128,
                                       "sensor_model": "high", "seed": 0}
    _, specs = resolve("sim", {"video": "/data/face.mp4", "resolution": "low", "seed": "3"})
    driver = next(s for s in specs if s.executable == "event_camera_driver")
    assert dict(driver.parameters) == {"source": "sim", "file": "/data/face.mp4", "width": 48, "height": 48,
                                       "sensor_model": "low", "seed": 3}
    # every parameter the graph sets is one the driver declares, with a value it accepts
    declared = {p.name: p for p in PARAMS}
    assert set(driver.parameters) <= set(declared) and {"face", "sim", "camera"} <= set(SOURCE_KINDS)
    assert set(arguments("sim")["lighting"].choices) == set(CONDITIONS)
    with pytest.raises(ValueError, match="seed"):
        resolve("sim", {"seed": "-1"})


def test_the_hri_bag_player_waits_for_the_graphs_processing_nodes():
    _, specs = resolve("hri", {"source": "bag"})
    player = next(s for s in specs if s.name == "bag_player")
    waits = ["/time_sync/ready", "/au_classifier/ready", "/reconstruction/ready", "/face_region/ready"]
    assert player.parameters["wait_for_ready"] == waits
    assert player.parameters["wait_for_readers"] == ["/event_camera/events", "/rgb/image_raw"]  # time_sync's inputs
    _, low = resolve("hri", {"source": "bag", "resolution": "low"})
    low_player = next(s for s in low if s.name == "bag_player")
    assert low_player.parameters["wait_for_readers"][0] == "/event_camera_low/events"
    assert {"time_sync", "au_classifier", "reconstruction", "face_region"} <= {s.name for s in specs}
    # on the command line the launcher gives the player, too
    assert json.loads(command_view(node_command(player), False)["parameters"]["wait_for_ready"]) == waits
    # time_sync and au_classifier hold their first outputs for their readers: with the visualizer 4 and 2
    wanted = {s.name: s.parameters.get("wait_for_subscribers") for s in specs}
    assert (wanted["time_sync"], wanted["au_classifier"]) == (4, 2)
    _, specs = resolve("hri", {"source": "bag", "visualize": "false"})
    wanted = {s.name: s.parameters.get("wait_for_subscribers") for s in specs}
    assert (wanted["time_sync"], wanted["au_classifier"]) == (3, 1)


def test_low_resolution_events_get_the_low_resolution_au_model():
    from microexp_ros.models.shipped import DEFAULT_LOW_EVENTS_MODEL
    from microexp_ros.resources import share_path

    def classifier(args: dict) -> dict:
        return dict(next(s for s in resolve("hri", args)[1] if s.name == "au_classifier").parameters)

    assert "model_path" not in classifier({"source": "bag"})     # the node's own default: high resolution
    low = classifier({"source": "bag", "resolution": "low"})["model_path"]
    assert low == str(share_path("models", DEFAULT_LOW_EVENTS_MODEL)) and Path(low).is_file()
    assert classifier({"source": "sim", "resolution": "low", "au_model": "/w.safetensors"})["model_path"] == \
        "/w.safetensors"


def test_au_fuse_rgb_turns_fusion_on_only_where_an_rgb_stream_exists():
    def fusing(args: dict) -> bool:
        return next(s for s in resolve("hri", args)[1] if s.name == "au_classifier").parameters["fuse_rgb"]

    assert not fusing({"source": "bag"})
    assert fusing({"source": "bag", "au_fuse_rgb": "true"})
    assert not fusing({"source": "sim", "au_fuse_rgb": "true"})          # the simulator has no webcam
    assert not fusing({"source": "live", "rgb_source": "", "au_fuse_rgb": "true"})
    with pytest.raises(ValueError, match="au_fuse_rgb"):
        resolve("hri", {"au_fuse_rgb": "maybe"})


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown argument"):
        resolve("replay", {"bagg": "x"})
    with pytest.raises(ValueError, match="dds_transport"):
        resolve("replay", {"dds_transport": "tcp"})
    with pytest.raises(ValueError, match="unknown graph"):
        resolve("nope", {})
