"""How every node process starts and stops: DDS transport first, clean exit 0 on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from microexp_ros.ros.dds import configure_transport


def run_node(make_node: Callable[[], Node], argv: Sequence[str] | None = None) -> int:
    """Configure DDS, init rclpy, spin the node until SIGINT/SIGTERM, shut down; the process's exit code.

    A node that raises while being constructed (bad parameters, missing model file) logs why and exits 1,
    so a launcher can report it; SIGINT and SIGTERM end the process with 0.
    """
    transport = configure_transport()
    rclpy.init(args=list(sys.argv if argv is None else argv), signal_handler_options=SignalHandlerOptions.NO)
    stop = {"requested": False}
    executor = SingleThreadedExecutor()

    def request_stop(signum: int, _frame) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        node = make_node()
    except Exception as error:  # report any construction failure by name, then exit non-zero
        name = getattr(make_node, "__name__", "node")
        print(f"[{name}] failed to start: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    node.get_logger().info(transport)
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop["requested"]:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        close = getattr(node, "close", None)
        if close is not None:
            close()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
