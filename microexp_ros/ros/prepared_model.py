"""A model node's default model, loaded and warmed up before the node exists.

`run_node` runs a node process's `prepare` step before rclpy starts, so a hot standby (microexp_ros.ros.runtime)
has spent the second or more a model takes to load and warm up while it waited. The shipped default is
prepared only when the command line leaves the node's `model_path` at its default (empty): a node given its
own weights loads those, and a prepared default would be load time and memory spent for nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Generic, TypeVar

from microexp_ros.ros.params import command_line_value

Model = TypeVar("Model")


class PreparedModel(Generic[Model]):
    """The slot for one node's default model: `prepare` fills it, `take` hands it to the node once.

    load(path) loads weights (None = the shipped default); warm_up(model) runs it once on a synthetic input.
    """

    def __init__(self, node_name: str, load: Callable[[str | None], Model],
                 warm_up: Callable[[Model], object]) -> None:
        self.node_name = node_name
        self._load, self._warm_up = load, warm_up
        self._model: Model | None = None

    def prepare(self) -> None:
        """`run_node`'s prepare: load and warm up the default, unless this process's ROS arguments (the ones
        rclpy will give the node) set `model_path`."""
        if command_line_value(sys.argv, self.node_name, "model_path"):
            return
        model = self._load(None)
        self._warm_up(model)
        self._model = model

    def take(self, model_path: str) -> Model:
        """The model for the node's `model_path` parameter: the prepared default (once) for "", else loaded now."""
        if not model_path and self._model is not None:
            model, self._model = self._model, None
            return model
        return self._load(model_path or None)
