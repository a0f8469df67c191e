"""How node processes spin: the executor choice (MICROEXP_EXECUTOR) and its failure mode."""

from __future__ import annotations

import subprocess
import sys

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from microexp_ros.ros.runtime import EXECUTOR_ENV, make_executor


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def test_the_events_executor_where_rclpy_has_it_else_and_on_request_the_single_threaded_one(context, monkeypatch):
    experimental = pytest.importorskip("rclpy.experimental", reason="this rclpy has no EventsExecutor (before Kilted)")
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert isinstance(make_executor(context), type(experimental.EventsExecutor(context=context)))
    monkeypatch.setenv(EXECUTOR_ENV, "single")
    assert type(make_executor(context)) is SingleThreadedExecutor
    monkeypatch.setenv(EXECUTOR_ENV, "multi")
    with pytest.raises(ValueError, match="MICROEXP_EXECUTOR='multi': must be one of events, single"):
        make_executor(context)


def test_a_node_given_an_unknown_executor_exits_1_saying_why(ros_env):
    env = dict(ros_env, **{EXECUTOR_ENV: "multi"})
    proc = subprocess.run([sys.executable, "-m", "microexp_ros.nodes.face_region", "--ros-args", "-p",
                           "source:=static"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "failed to start: ValueError: MICROEXP_EXECUTOR='multi'" in proc.stderr
