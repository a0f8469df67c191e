"""launch_ros actions for a graph of microexp_ros.bringup.graphs: what every launch/*.launch.py returns."""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from microexp_ros.bringup.graphs import arguments, resolve
from microexp_ros.resources import PACKAGE, share_dir
from microexp_ros.ros.dds import TRANSPORT_ENV, dds_environment


def _parameter(value: object) -> object:
    """launch_ros reads a plain string parameter as YAML ("0" would become an int, "" None): keep strings."""
    return ParameterValue(value, value_type=str) if isinstance(value, str) else value


def _nodes(context: LaunchContext, graph: str) -> list:
    values = {name: LaunchConfiguration(name).perform(context) for name in arguments(graph)}
    values, specs = resolve(graph, values)
    actions = [SetEnvironmentVariable(TRANSPORT_ENV, values["dds_transport"])]
    actions += [SetEnvironmentVariable(k, v) for k, v in dds_environment(values["dds_transport"]).items()]
    config = share_dir() / "config"
    for spec in specs:
        actions.append(Node(
            package=PACKAGE, executable=spec.executable, name=spec.name, output="screen",
            parameters=[str(config / f) for f in spec.params_files]
            + [{k: _parameter(v) for k, v in spec.parameters.items()}],
            remappings=list(spec.remappings), respawn=spec.respawn, respawn_delay=spec.respawn_delay_s,
        ))
    return actions


def launch_description(graph: str) -> LaunchDescription:
    """Declare the graph's arguments, then build its nodes from their values at launch time."""
    declared = [DeclareLaunchArgument(name, default_value=arg.default, description=arg.description,
                                      **({"choices": list(arg.choices)} if arg.choices else {}))
                for name, arg in arguments(graph).items()]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes, args=[graph])])
