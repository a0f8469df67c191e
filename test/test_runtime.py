"""How node processes spin and stop: the executor choice (MICROEXP_EXECUTOR) and its failure mode, thread stacks
on request, a stop during start-up imports, a hanging teardown reported and ended, native stacks of a process
that does not stop."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from microexp_ros.bringup.runner import NATIVE_STACKS_AFTER_S, Launcher, _Process, executable_path, native_stacks
from microexp_ros.ros.runtime import EXECUTOR_ENV, STACKS_SIGNAL, TEARDOWN_SIGNAL, make_executor


@pytest.fixture
def context(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
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


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, stderr=subprocess.PIPE, bufsize=0)


def _read_until(proc: subprocess.Popen, marker: str, timeout_s: float = 60.0) -> str:
    """What the process writes to stderr until `marker` appears (a node's start-up log line), at most
    `timeout_s` seconds: never blocks past it, even on a process that prints nothing."""
    text, deadline = "", time.monotonic() + timeout_s
    while marker not in text and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stderr], [], [], left)
        chunk = os.read(proc.stderr.fileno(), 65536) if ready else b""
        if ready and not chunk:   # the process closed stderr (ended)
            break
        text += chunk.decode(errors="replace")
    assert marker in text, f"no {marker!r} in:\n{text}"
    return text


def test_a_running_node_prints_every_thread_stack_on_request_and_keeps_running(ros_env):
    proc = _start(["-m", "microexp_ros.nodes.face_region", "--ros-args", "-p", "source:=static"], ros_env)
    try:
        _read_until(proc, "executor:")
        proc.send_signal(STACKS_SIGNAL)
        stacks = _read_until(proc, "File ", 10.0)
        assert "Thread 0x" in stacks or "Current thread 0x" in stacks
        time.sleep(0.5)
        assert proc.poll() is None, "the node ended after printing its stacks"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler installed for `signum` (the SigCgt mask of /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return bool(int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16) >> (signum - 1) & 1)


def test_a_node_executable_stopped_while_it_imports_exits_0_without_a_traceback(ros_env):
    # What `microexp launch --duration 3` or a quick Ctrl-C in `ros2 launch` does to au_classifier (torch import).
    proc = subprocess.Popen([str(executable_path("au_classifier"))], env=ros_env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10.0
        while not _catches(proc.pid, signal.SIGTERM):   # Python itself never catches SIGTERM: remember_stop ran
            assert time.monotonic() < deadline, "the executable installed no SIGTERM handler"
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert "executor:" not in stderr, f"it joined the graph before it stopped:\n{stderr}"
    finally:
        proc.kill()
        proc.wait()


HANGING_TEARDOWN = """
import sys, time
from rclpy.node import Node
from microexp_ros.ros import runtime

class StuckOnClose(Node):
    def __init__(self):
        super().__init__("stuck_on_close")
    def close(self):
        time.sleep(60)

runtime.TEARDOWN_TIMEOUT_S = 1.0
sys.exit(runtime.run_node(StuckOnClose))
"""


def test_a_teardown_that_hangs_prints_where_and_is_ended_by_its_signal(ros_env):
    """The limit's end is an exit of its own (-SIGALRM), which `microexp launch` reports apart from failures."""
    proc = _start(["-c", HANGING_TEARDOWN], ros_env)
    try:
        _read_until(proc, "executor:")
        stopped = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == -TEARDOWN_SIGNAL
        assert time.monotonic() - stopped < 5.0
        assert "in close" in proc.stderr.read().decode(errors="replace")
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def gdb() -> None:
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed: the launcher logs Python stacks only")


def _skip_if_attach_denied(gdb_output: str) -> None:
    if "Operation not permitted" in gdb_output:
        pytest.skip("this user may not attach gdb to another process (ptrace_scope)")


def test_native_stacks_of_a_running_process_leave_it_running(gdb):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        stacks = native_stacks(proc.pid)
        _skip_if_attach_denied(stacks)
        assert "Thread 1" in stacks and "#0" in stacks, stacks
        assert proc.poll() is None, "the process ended after gdb detached"
    finally:
        proc.kill()
        proc.wait()


SLOW_TO_STOP = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("up", flush=True)
time.sleep(7)
"""


def test_the_launcher_logs_native_stacks_of_nodes_slow_to_stop_then_lets_them_finish(gdb):
    procs = {name: subprocess.Popen([sys.executable, "-c", SLOW_TO_STOP], stdout=subprocess.PIPE, text=True)
             for name in ("slow_a", "slow_b")}
    assert all(proc.stdout.readline().strip() == "up" for proc in procs.values())
    lines: list[str] = []
    launcher = object.__new__(Launcher)   # only the stop sequence, on processes that ignore SIGINT for 7 s
    launcher.processes = {name: _Process(types.SimpleNamespace(name=name), proc) for name, proc in procs.items()}
    launcher.exit_codes, launcher.stop_s, launcher.stop_timeout_s, launcher.log = {}, None, 10.0, lines.append
    launcher._stop_all()
    text = "\n".join(lines)
    _skip_if_attach_denied(text)
    for name in procs:   # one log entry per node: its line, then its stacks
        entry = [line for line in lines if line.startswith(f"[launch] {name} still running")]
        logged = re.match(r".* (\d+\.\d) s after SIGINT; its native stacks:\n", entry[0]) if entry else None
        assert logged and float(logged.group(1)) >= NATIVE_STACKS_AFTER_S and "#0" in entry[0], text
    assert "did not stop in time" not in text, "they ended on their own at 7 s, before the 10 s escalation"
    assert launcher.exit_codes == {"slow_a": [0], "slow_b": [0]}


def test_the_launcher_reports_a_cut_teardown_apart_from_failures():
    lines: list[str] = []
    launcher = object.__new__(Launcher)   # only the graph's result, from the exits recorded
    launcher.log = lines.append
    launcher.exit_codes = {"time_sync": [0], "reconstruction": [-TEARDOWN_SIGNAL]}
    assert launcher._result() == 0 and launcher.teardown_cut == ["reconstruction"]
    assert lines == ["[launch] nodes whose DDS teardown hung and was cut short by their limit (SIGALRM; their "
                     "stacks above): reconstruction"]
    launcher.exit_codes["time_sync"].append(1)          # a real failure still fails the graph
    launcher.exit_codes["au_classifier"] = [-TEARDOWN_SIGNAL, 0]   # cut, respawned, then clean: clean
    assert launcher._result() == 1 and launcher.teardown_cut == ["reconstruction"]
    assert lines[-1] == "[launch] nodes that ended with non-zero exits: {'time_sync': [0, 1]}"
