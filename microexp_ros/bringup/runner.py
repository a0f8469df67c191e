"""`microexp launch`: run a graph of microexp_ros.bringup.graphs as separate node processes, like `ros2 launch`.

Each node gets the same command line `ros2 launch` would give it (executable from <prefix>/lib/microexp_ros,
--params-file for its config files, -p overrides, -r remappings). The runner forwards SIGINT/SIGTERM, reports
each node's exit, respawns nodes marked respawn, and escalates to SIGTERM/SIGKILL for nodes that do not stop
(after logging their native stacks where gdb is installed, and asking each for its Python thread stacks,
ros.runtime.STACKS_SIGNAL).
For each respawning node it keeps a hot standby process, imports done (microexp_ros.ros.runtime), and promotes
it when the node dies, so the replacement is up in a fraction of a cold start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from microexp_ros.bringup.graphs import NodeSpec, resolve
from microexp_ros.resources import PACKAGE, share_dir
from microexp_ros.ros.dds import TRANSPORT_ENV, configure_transport
from microexp_ros.ros.runtime import STACKS_SIGNAL, STANDBY_ENV, START_LINE, TEARDOWN_SIGNAL

# A standby starts this long after its node (re)started: its imports take a core for a second or two, which
# the starting graph or a just-promoted node needs more. At launch they start one per STANDBY_STAGGER_S.
STANDBY_DELAY_S = 5.0
STANDBY_STAGGER_S = 1.0
STANDBY_RETIRE_S = 1.0   # how long standbys get to leave on their own when the graph stops
# A node still running this long after SIGINT gets its native stacks logged (gdb, where installed): before a
# node's own teardown limit (ros.runtime.TEARDOWN_TIMEOUT_S) ends it with only its Python stacks.
NATIVE_STACKS_AFTER_S = 5.0


def native_stacks(pid: int, timeout_s: float = 10.0) -> str | None:
    """Every thread's native backtrace of process `pid` (gdb attaches, prints, detaches; the process runs on),
    or None without gdb. For a node stuck inside rcl / the middleware, where its Python stack ends."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    try:
        done = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"gdb did not finish within {timeout_s:g} s"
    return done.stdout + done.stderr


def executable_path(name: str) -> Path:
    """Where the install put a node executable (<prefix>/lib/microexp_ros/<name>, as `ros2 run` expects)."""
    path = share_dir().parent.parent / "lib" / PACKAGE / name
    if not path.is_file():
        raise FileNotFoundError(f"node executable '{name}' not installed at {path} (run `make setup`)")
    return path


def parameter_value(value: object) -> str:
    """A parameter value in the YAML form `--ros-args -p name:=value` parses."""
    return json.dumps(value)


def node_command(spec: NodeSpec) -> list[str]:
    """The command line of one node process."""
    cmd = [str(executable_path(spec.executable)), "--ros-args", "-r", f"__node:={spec.name}"]
    for params_file in spec.params_files:
        cmd += ["--params-file", str(share_dir() / "config" / params_file)]
    for key, value in spec.parameters.items():
        cmd += ["-p", f"{key}:={parameter_value(value)}"]
    for source, target in spec.remappings:
        cmd += ["-r", f"{source}:={target}"]
    return cmd


@dataclass
class _Process:
    spec: NodeSpec
    popen: subprocess.Popen
    restarts: int = 0
    restart_at: float | None = None
    standby: subprocess.Popen | None = None
    standby_at: float | None = None


class Launcher:
    """Runs one graph until SIGINT/SIGTERM, a duration, every node exiting, or a chosen node exiting."""

    def __init__(self, graph: str, overrides: Mapping[str, str], env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] = print, stop_timeout_s: float = 10.0, standby: bool = True) -> None:
        self.args, self.specs = resolve(graph, overrides)
        self.env = dict(os.environ if env is None else env)
        self.env[TRANSPORT_ENV] = self.args["dds_transport"]
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        configure_transport(self.env)
        self.log = log
        self.stop_timeout_s = stop_timeout_s
        self.standby = standby
        self.processes: dict[str, _Process] = {}
        self.exit_codes: dict[str, list[int]] = {}
        self._stop_requested = False
        self.stop_s: float | None = None   # how long the nodes took to exit after SIGINT

    def _start(self, spec: NodeSpec, standby: bool = False) -> subprocess.Popen:
        # A session of its own: a terminal's Ctrl-C reaches the runner, which forwards it once.
        if not standby:
            return subprocess.Popen(node_command(spec), env=self.env, start_new_session=True)
        return subprocess.Popen(node_command(spec), env=self.env | {STANDBY_ENV: "1"}, stdin=subprocess.PIPE,
                                start_new_session=True)

    def _respawn(self, proc: _Process) -> None:
        """Promote the node's standby if it is still waiting (else start the node cold), then a new standby."""
        standby, proc.standby = proc.standby, None
        how = "cold start"
        if standby is not None and standby.poll() is None:
            try:
                standby.stdin.write(f"{START_LINE}\n".encode())
                standby.stdin.close()
                proc.popen, how = standby, "from standby"
            except BrokenPipeError:
                standby.wait()
        if how == "cold start":
            proc.popen = self._start(proc.spec)
        proc.restart_at = None
        proc.restarts += 1
        self.log(f"[launch] respawned {proc.spec.name} (restart {proc.restarts}, {how}), pid {proc.popen.pid}")
        self._plan_standby(proc)

    def _plan_standby(self, proc: _Process, later_s: float = 0.0) -> None:
        if self.standby and proc.spec.respawn:
            proc.standby_at = time.monotonic() + STANDBY_DELAY_S + later_s

    def _retire_standbys(self) -> None:
        """Close each standby's stdin: a waiting standby leaves the DDS domain and exits 0. One still importing
        would take seconds to get there and holds nothing yet: it is killed after a moment."""
        standbys = [p.standby for p in self.processes.values() if p.standby is not None]
        for standby in standbys:
            standby.stdin.close()
        deadline = time.monotonic() + STANDBY_RETIRE_S
        for standby in standbys:
            try:
                standby.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                standby.kill()
                standby.wait()

    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def run(self, duration_s: float | None = None, until_exit: str | None = None, grace_s: float = 0.0,
            settled: Callable[[], bool] | None = None) -> int:
        """Run the graph; 0 when every node ended cleanly (0, or stopped by our SIGINT; respawned crashes are
        logged, not failures), else 1.

        With `until_exit`, the graph stops once that node has exited and the rest of the graph has caught up:
        when `settled()` says so, or after `grace_s` seconds at the most.
        """
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for spec in self.specs:
                self.processes[spec.name] = _Process(spec, self._start(spec))
                self.log(f"[launch] started {spec.name} ({spec.executable}), pid "
                         f"{self.processes[spec.name].popen.pid}")
            for i, proc in enumerate(p for p in self.processes.values() if p.spec.respawn):
                self._plan_standby(proc, i * STANDBY_STAGGER_S)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            while not self._stop_requested:
                if deadline is not None and time.monotonic() >= deadline:
                    self.log(f"[launch] duration of {duration_s:g} s reached")
                    break
                if self._poll(until_exit):
                    if until_exit is not None and until_exit in self.exit_codes:
                        self._settle(until_exit, grace_s, settled)
                    break
                time.sleep(0.05)
            self._stop_all()
        finally:
            self._retire_standbys()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._result()

    def _result(self) -> int:
        """0 when every node ended cleanly, else 1 (logged). A node that crashed and was respawned is reported
        when it happens; the graph's result is how each node ended. A node whose DDS teardown hung after its work
        was done ended itself by its teardown limit: said, not failed."""
        if self.teardown_cut:
            self.log(f"[launch] nodes whose DDS teardown hung and was cut short by their limit ({TEARDOWN_SIGNAL.name}"
                     f"; their stacks above): {', '.join(self.teardown_cut)}")
        failed = {name: codes for name, codes in self.exit_codes.items()
                  if codes[-1] != 0 and name not in self.teardown_cut}
        if failed:
            self.log(f"[launch] nodes that ended with non-zero exits: {failed}")
        return 1 if failed else 0

    @property
    def teardown_cut(self) -> list[str]:
        """Nodes that last ended by their own teardown limit (`ros.runtime.TEARDOWN_SIGNAL`)."""
        return [name for name, codes in self.exit_codes.items() if codes[-1] == -TEARDOWN_SIGNAL]

    def _settle(self, finished: str, grace_s: float, settled: Callable[[], bool] | None) -> None:
        self.log(f"[launch] {finished} finished: stopping the graph when it has caught up (at most {grace_s:g} s)")
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not self._stop_requested:
            if settled is not None and settled():
                return
            time.sleep(0.1)

    def _poll(self, until_exit: str | None) -> bool:
        """Handle exits and respawns; True when the graph is finished."""
        now = time.monotonic()
        for name, proc in self.processes.items():
            if proc.standby_at is not None and now >= proc.standby_at:
                proc.standby, proc.standby_at = self._start(proc.spec, standby=True), None
            if proc.restart_at is not None:
                if now >= proc.restart_at:
                    self._respawn(proc)
                continue
            code = proc.popen.poll()
            if code is None or name in self.exit_codes and len(self.exit_codes[name]) > proc.restarts:
                continue
            self.exit_codes.setdefault(name, []).append(code)
            self.log(f"[launch] {name} exited with code {code}")
            if until_exit == name:
                return True
            if proc.spec.respawn:
                proc.restart_at = now + proc.spec.respawn_delay_s
        running = any(p.restart_at is not None or p.popen.poll() is None for p in self.processes.values())
        return not running

    @staticmethod
    def _wait_for(processes: list[_Process], deadline: float) -> None:
        """Until every process has exited or `deadline` (monotonic) has passed."""
        while time.monotonic() < deadline and any(p.popen.poll() is None for p in processes):
            time.sleep(0.05)

    def _stop_all(self) -> None:
        alive = [p for p in self.processes.values() if p.restart_at is None and p.popen.poll() is None]
        started = time.monotonic()
        for proc in alive:
            proc.popen.send_signal(signal.SIGINT)
        self._wait_for(alive, started + min(NATIVE_STACKS_AFTER_S, self.stop_timeout_s))
        stuck = [p for p in alive if p.popen.poll() is None]
        if stuck:   # one gdb per stuck node, side by side: together they take as long as the slowest
            waited = time.monotonic() - started
            with ThreadPoolExecutor(len(stuck)) as pool:
                found = list(pool.map(native_stacks, [p.popen.pid for p in stuck]))
            for proc, stacks in zip(stuck, found):
                if stacks is not None:
                    self.log(f"[launch] {proc.spec.name} still running {waited:.1f} s after SIGINT; its native "
                             f"stacks:\n{stacks}")
        end = started + self.stop_timeout_s
        for escalate in (signal.SIGTERM, signal.SIGKILL):
            self._wait_for(alive, end)
            stuck = [p for p in alive if p.popen.poll() is None]
            for proc in stuck:
                if escalate == signal.SIGTERM:   # first ask where it is stuck: stacks to its stderr
                    self.log(f"[launch] {proc.spec.name} did not stop in time: its thread stacks follow")
                    proc.popen.send_signal(STACKS_SIGNAL)
                    time.sleep(0.2)
                self.log(f"[launch] {proc.spec.name} did not stop in time: sending {escalate.name}")
                proc.popen.send_signal(escalate)
            end = time.monotonic() + 2.0
        for proc in alive:
            code = proc.popen.wait()
            self.stop_s = time.monotonic() - started
            self.exit_codes.setdefault(proc.spec.name, []).append(code)
            self.log(f"[launch] {proc.spec.name} exited with code {code}")
