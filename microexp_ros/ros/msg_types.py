"""Message classes by their ROS type name, for code that handles topics generically (bag player, tests)."""

from __future__ import annotations

import importlib


def message_class(type_name: str) -> type:
    """The rclpy message class of 'pkg/msg/Name' (or 'pkg/Name'); ValueError naming what is missing."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"'{type_name}' is not a message type name of the form pkg/msg/Name")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type '{type_name}' is not installed (no {package}.{kind}.{name})") from None
