"""How every node process starts and stops: DDS transport first, clean exit 0 on SIGINT/SIGTERM.

A node that does not stop can be asked where it is: SIGUSR1 prints the Python stack of every thread to stderr
(faulthandler, so it works while a thread is stuck in C++ holding the interpreter lock); `microexp launch` sends
it before escalating to SIGTERM. Teardown (executor, node, context) that has not finished TEARDOWN_TIMEOUT_S after
the spin loop ends prints the same stacks and is ended by TEARDOWN_SIGNAL (exit code -SIGALRM): a hang in DDS
teardown (FastDDS can deadlock deleting a writer, eProsima/Fast-DDS#6502) is reported as such, after the node's
work, rather than a process left for SIGKILL. A kernel timer sends the signal, since the stuck thread may hold
the interpreter lock.

A node process started with MICROEXP_STANDBY=1 is a hot standby (`microexp launch` keeps one per respawning
node): it does its imports and `prepare` work and joins the DDS domain under a hidden placeholder node, then
waits on stdin until the launcher promotes it with a `start` line. A killed node's replacement so skips the
second or more a Python node spends importing, and the graph has already discovered its DDS participant
(discovering a new participant under load took up to 2 s), so its topics match within milliseconds.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from microexp_ros.ros.dds import configure_transport
from microexp_ros.ros.early_stop import stop_requested

STANDBY_ENV = "MICROEXP_STANDBY"
START_LINE = "start"
EXECUTOR_ENV = "MICROEXP_EXECUTOR"
EXECUTORS = ("events", "single")
STACKS_SIGNAL = signal.SIGUSR1
TEARDOWN_TIMEOUT_S = 8.0   # within launch's 10 s before SIGKILL; node close() joins take up to 5 s
TEARDOWN_SIGNAL = signal.SIGALRM   # ends a stuck teardown (default action), TEARDOWN_STACKS_S after its stacks
TEARDOWN_STACKS_S = 0.5
_exit_codes: list[int] = []   # exits the node asked for (request_exit); the first one is the process's


def request_exit(code: int) -> None:
    """Ask `run_node` to end the node after the current callback, tear down as on SIGINT, and exit with `code`
    (a node that wants its launcher to respawn it)."""
    _exit_codes.append(code)


def make_executor(context: Context | None = None) -> Executor:
    """The executor a process of ours spins: rclpy's EventsExecutor where this rclpy has it
    (rclpy.experimental), else the SingleThreadedExecutor; MICROEXP_EXECUTOR=single forces the latter.

    The EventsExecutor dispatches from C++ instead of rebuilding a wait set in Python for every callback: at
    ~1,000 event packets/s on 2 cores that left the AU path's end-to-end p99 under 15 ms where the
    SingleThreadedExecutor's was 15-20 ms (`microexp bench au`, docs/benchmarks.md). It does not take
    subscription callbacks with a MessageInfo argument (rclpy 9.1 raises SystemError): node callbacks take the
    message alone.
    """
    choice = os.environ.get(EXECUTOR_ENV, "events")
    if choice not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: must be one of {', '.join(EXECUTORS)}")
    if choice == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # an rclpy without it
            pass
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def wait_for_promotion() -> bool:
    """In a standby process: say it is ready, then block until the launcher writes the start line (True) or
    closes stdin (False)."""
    print(f"[standby] {os.path.basename(sys.argv[0])} ready, pid {os.getpid()}", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == START_LINE


def run_node(make_node: Callable[[], Node], prepare: Callable[[], None] | None = None) -> int:
    """Configure DDS, init rclpy with the process's arguments, spin the node until SIGINT/SIGTERM, shut down;
    the process's exit code.

    `prepare` does start-up work that needs no ROS (loading compiled kernels, a default model), before a standby
    waits; it can read the ROS arguments the node will get in sys.argv (`ros.params.command_line_value`). A node
    that raises while being constructed (bad parameters, missing model file) logs why and exits 1, so a
    launcher can report it; SIGINT and SIGTERM end the process with 0, as does a standby that is not needed; a
    node that called `request_exit` ends with the code it gave.
    """
    stop = {"requested": False}

    def request_stop(signum: int, _frame) -> None:
        stop["requested"] = True

    # First of all: a SIGINT during `prepare` or construction (a launch stopped early) ends the process cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stop["requested"] |= stop_requested()   # one that came during the executable's imports (ros.early_stop)
    faulthandler.register(STACKS_SIGNAL, all_threads=True)
    if prepare is not None and not stop["requested"]:
        prepare()
    if stop["requested"]:   # asked to stop before joining the graph (during imports or prepare)
        return 0
    transport = configure_transport()
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    placeholder = None
    if os.environ.get(STANDBY_ENV) == "1":
        # The context's participant is created with its first node: a hidden one, free of the node's remappings.
        placeholder = rclpy.create_node(f"_standby_{os.getpid()}", use_global_arguments=False,
                                        enable_rosout=False, start_parameter_services=False)
        if not wait_for_promotion():
            rclpy.try_shutdown()
            return 0
    started = time.monotonic()
    try:
        executor = make_executor()
        node = make_node()
    except Exception as error:  # report any construction failure by name, then exit non-zero
        name = getattr(make_node, "__name__", "node")
        print(f"[{name}] failed to start: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    built = time.monotonic()
    if placeholder is not None:  # only now: the participant ends with the context's last node
        placeholder.destroy_node()
    promoted = "" if placeholder is None else (f"; promoted: node built in {built - started:.2f} s, placeholder "
                                               f"destroyed in {time.monotonic() - built:.2f} s")
    node.get_logger().info(f"{transport}; executor: {type(executor).__name__}{promoted}")
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop["requested"] and not _exit_codes:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        faulthandler.dump_traceback_later(TEARDOWN_TIMEOUT_S)
        signal.signal(TEARDOWN_SIGNAL, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, TEARDOWN_TIMEOUT_S + TEARDOWN_STACKS_S)
        close = getattr(node, "close", None)
        if close is not None:
            close()
        # The documented order: the executor lets go of the node's entities while they and the context exist,
        # then the node, then the context; nothing is left for the interpreter's exit to destroy.
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
    return _exit_codes[0] if _exit_codes else 0
