"""Declaring node parameters with descriptors, ranges and validation, in one call per node.

rclpy enforces numeric ranges on `ros2 param set`; this also checks choices and ranges of the values a node
starts with (from YAML or launch overrides) and rejects later invalid sets with a reason that names the
parameter, so a bad configuration is a clear error instead of a misbehaving node. `command_line_value` reads a
parameter from the process's ROS arguments before rclpy starts (a node process's `prepare` step).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter


class ParameterError(ValueError):
    """A parameter value outside its declared range or choices."""


@dataclass(frozen=True)
class Param:
    """One parameter: its default fixes its type (declare floats as 0.0, not 0)."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        constraints = []
        if self.choices:
            constraints.append("one of: " + ", ".join(map(str, self.choices)))
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         additional_constraints="; ".join(constraints))
        if self.min is not None or self.max is not None:
            low = self.min if self.min is not None else -1e300
            high = self.max if self.max is not None else 1e300
            if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
                raise TypeError(f"parameter '{self.name}': a range needs a numeric default")
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(max(low, -2**63)),
                                                         to_value=int(min(high, 2**63 - 1)), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                                      to_value=float(high), step=0.0)]
        return descriptor

    def check(self, value: Any) -> None:
        """ParameterError naming the parameter when `value` is outside its range or choices."""
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is below its minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is above its maximum {self.max}")


def declare_parameters(node: Node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare `params` on `node`, validate the starting values, guard later sets; return name → value."""
    by_name = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for p in params:
        value = node.declare_parameter(p.name, p.default, p.descriptor()).value
        p.check(value)
        values[p.name] = value

    def on_set(changes: list[Parameter]) -> SetParametersResult:
        for change in changes:
            spec = by_name.get(change.name)
            if spec is None:
                continue
            try:
                spec.check(change.value)
            except ParameterError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


# ROS argument flags that take a value (rcl's), so their values are not read as flags.
_VALUED_FLAGS = {"-p", "--param", "-r", "--remap", "--params-file", "-e", "--enclave", "--log-level",
                 "--log-config-file", "--log-file-name"}
_UNSET = object()   # a node key that sets other parameters only


def _ros_arguments(args: Sequence[str]) -> list[tuple[str, str]]:
    """(flag, value) of the valued flags inside `--ros-args ... [--]` sections, in order."""
    out, inside, k = [], False, 0
    while k < len(args):
        arg = args[k]
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and arg in _VALUED_FLAGS and k + 1 < len(args):
            out.append((arg, args[k + 1]))
            k += 1
        k += 1
    return out


def _node_entries(ros_args: list[tuple[str, str]], full_name: str) -> Iterator[tuple[str, dict]]:
    """(node key, parameters) of each `-p` rule and each params-file entry for `/**` or `full_name`, in order."""
    for flag, value in ros_args:
        try:
            if flag in ("-p", "--param"):
                key, _, text = value.partition(":=")
                yield "/**", {key: yaml.safe_load(text)}
            elif flag == "--params-file":
                with open(value) as f:
                    entries = yaml.safe_load(f)
                for key, entry in (entries.items() if isinstance(entries, dict) else ()):
                    target = key if key.startswith("/") else "/" + key
                    if target in ("/**", full_name) and isinstance(entry, dict):
                        yield target, entry.get("ros__parameters") or {}
        except (OSError, yaml.YAMLError):
            continue


def command_line_value(args: Sequence[str], node_name: str, name: str) -> Any:
    """The value the ROS arguments `args` give parameter `name` of the node created as `node_name`, or None
    if they give none. Read as rclpy does: `-r __node:=` / `__ns:=` rename the node; `--params-file` entries
    for the node's full name or `/**`, and `-p` rules (`/**` entries), count. rcl keeps the latest parameters
    per node key, keys in the order they first appeared (whatever they set), and the node takes them in that
    order: the value under the last of them that sets `name` wins. Nested namespace keys in a params file are
    not read, nor a file or value that cannot be (rclpy reports it when the node starts)."""
    ros_args = _ros_arguments(args)
    node, namespace = node_name, "/"
    for flag, rule in ros_args:
        source, _, target = rule.partition(":=")
        if flag in ("-r", "--remap") and source in ("__node", "__name"):
            node = target
        elif flag in ("-r", "--remap") and source == "__ns":
            namespace = target
    found: dict[str, Any] = {}   # node key -> its latest value of `name` (_UNSET), in first-appearance order
    for key, params in _node_entries(ros_args, namespace.rstrip("/") + "/" + node):
        found.setdefault(key, _UNSET)
        if name in params:
            found[key] = params[name]
    values = [value for value in found.values() if value is not _UNSET]
    return values[-1] if values else None
