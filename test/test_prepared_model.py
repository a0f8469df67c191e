"""A model node's default model is prepared before rclpy starts only when its command line leaves `model_path`
at the default: the parameter is read from the ROS arguments as rclpy reads it (checked against rclpy itself),
on the command lines the launcher really builds."""

from __future__ import annotations

import sys

import pytest
import rclpy
import yaml

from microexp_ros.bringup.graphs import resolve
from microexp_ros.bringup.runner import node_command
from microexp_ros.models.au_inference import AUPredictor
from microexp_ros.ros.params import command_line_value
from microexp_ros.ros.prepared_model import PreparedModel


def hri_command(node: str, **arguments: str) -> list[str]:
    """The command line `microexp launch hri` starts `node` with."""
    _, specs = resolve("hri", {"source": "bag", **arguments})
    return node_command(next(spec for spec in specs if spec.name == node))


def test_the_launchers_command_lines_give_the_model_path_they_set():
    assert command_line_value(hri_command("au_classifier", au_model="/w/au.safetensors"), "au_classifier",
                              "model_path") == "/w/au.safetensors"
    assert command_line_value(hri_command("reconstruction", au_model="/w/au.safetensors"), "reconstruction",
                              "model_path") == ""   # config/models.yaml's default
    assert command_line_value(hri_command("reconstruction", recon_model="/w/cvae.safetensors"), "reconstruction",
                              "model_path") == "/w/cvae.safetensors"


@pytest.fixture
def params_files(tmp_path):
    def write(name: str, entries: dict) -> str:
        """A params file of `model_path` per node key (a dict: those parameters)."""
        path = tmp_path / name
        path.write_text(yaml.safe_dump({key: {"ros__parameters": value if isinstance(value, dict) else
                                              {"model_path": value}}
                                        for key, value in entries.items()}, sort_keys=False))
        return str(path)
    return {"both": write("both.yaml", {"/**": "wild.st", "au_classifier": "own.st"}),
            "own_first": write("own_first.yaml", {"au_classifier": "own.st", "/**": "wild.st"}),
            "own": write("own.yaml", {"au_classifier": "own.st"}),
            "own_threads": write("own_threads.yaml", {"au_classifier": {"threads": 2}}),
            "wild": write("wild.yaml", {"/**": "wild.st"}),
            "in_ns": write("in_ns.yaml", {"/robot/au_classifier": "robot.st"})}


CASES = {   # ROS arguments (files by key) as a process gets them after its executable, and the value they give
    "-p after the node's entry wins (the launcher's overrides)": (
        ["--params-file", "own", "-p", "model_path:=cli.st"], "cli.st"),
    "the node's entry after -p wins": (["-p", "model_path:=cli.st", "--params-file", "both"], "own.st"),
    "a /** file after the node's entry wins": (["--params-file", "own", "--params-file", "wild"], "wild.st"),
    "a /** key after the node's in one file wins": (["--params-file", "own_first"], "wild.st"),
    "a later /** value wins over an earlier one": (["--params-file", "wild", "-p", "model_path:=cli.st"], "cli.st"),
    "a /** key keeps its first place, with its latest value": (
        ["-p", "model_path:=cli.st", "--params-file", "own", "--params-file", "wild"], "own.st"),
    "a node key keeps the place where it first appeared, whatever it set": (
        ["--params-file", "own_threads", "-p", "model_path:=cli.st", "--params-file", "own"], "cli.st"),
    "a renamed node takes only the /** entries": (["--params-file", "both", "-r", "__node:=other"], "wild.st"),
    "a namespaced node takes its full name's": (["--params-file", "in_ns", "-r", "__ns:=/robot"], "robot.st"),
    "nothing set": (["-p", "threads:=2"], None),
    "arguments after -- are not ROS arguments": (
        ["-p", "model_path:=cli.st", "--", "-p", "model_path:=not.st"], "cli.st"),
}


@pytest.mark.parametrize("case", CASES)
def test_command_line_value_reads_what_rclpy_gives_the_node(case, params_files, ros_env):
    ros_args, expected = CASES[case]
    args = ["au_classifier", "--ros-args", *(params_files.get(a, a) for a in ros_args)]
    assert command_line_value(args, "au_classifier", "model_path") == expected
    # and rclpy agrees
    context = rclpy.Context()
    rclpy.init(args=args, context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        node = rclpy.create_node("au_classifier", context=context, start_parameter_services=False,
                                 enable_rosout=False)
        assert node.declare_parameter("model_path", "").value == (expected or "")
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_a_missing_params_file_is_left_to_rclpy_to_report(tmp_path):
    args = ["au_classifier", "--ros-args", "--params-file", str(tmp_path / "missing.yaml")]
    assert command_line_value(args, "au_classifier", "model_path") is None


def test_the_default_model_is_prepared_only_for_a_node_that_uses_it(monkeypatch, tmp_path):
    loaded: list[str | None] = []
    warmed: list[AUPredictor] = []

    def load(path: str | None) -> AUPredictor:
        loaded.append(path)
        return AUPredictor.from_file(path)

    def prepared(argv: list[str]) -> PreparedModel:
        monkeypatch.setattr(sys, "argv", argv)
        slot = PreparedModel("au_classifier", load, warmed.append)
        slot.prepare()
        return slot

    custom = str(tmp_path / "au.safetensors")
    prepared(hri_command("au_classifier", au_model=custom))
    assert loaded == [] and warmed == []   # the node will load its own weights: nothing wasted on the default

    slot = prepared(hri_command("au_classifier"))
    assert loaded == [None] and len(warmed) == 1
    assert slot.take("") is warmed[0] and loaded == [None]   # the prepared default, not loaded again
    assert slot.take("") is not warmed[0] and loaded == [None, None]   # taken once: the next loads its own
    with pytest.raises(FileNotFoundError):
        slot.take(custom)
    assert loaded[-1] == custom
