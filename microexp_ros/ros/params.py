"""Declaring node parameters with descriptors, ranges and validation, in one call per node.

rclpy enforces numeric ranges on `ros2 param set`; this also checks choices and ranges of the values a node
starts with (from YAML or launch overrides) and rejects later invalid sets with a reason that names the
parameter, so a bad configuration is a clear error instead of a misbehaving node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
