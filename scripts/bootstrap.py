#!/usr/bin/env python3
"""Set up `.venv`: pinned wheels (ROS 2 Kilted from PyPI, torch CPU, science stack) and our message packages.

Every step is skipped when its inputs have not changed since it last succeeded (a stamp in the install prefix
records a hash of the inputs), so re-running is cheap. A stamp is removed before its step runs and written only
after it succeeds, so an interrupted or failed step is never left marked as done. A failing step names itself,
its log file and what to do.

Usage: python3 scripts/bootstrap.py [--venv DIR] [--prefix DIR] [--source DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TAG = (3, 11)  # the ROS 2 Kilted wheels on PyPI are cp311
# Paths baked into the rosidl CMake exports of the wheels (shared/notes/pip-ros2.md §1, fix-up 2).
BAKED_PY_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BAKED_NP_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
# The FastDDS wheel's `fastdds` tool (`fastdds shm clean`) runs whatever `python3` is on PATH, which lacks the
# venv's psutil when nothing is sourced: point it at the venv's interpreter, next to it in bin/.
FASTDDS_PATH_PYTHON = 'python3 "$dir/../tools/fastdds/fastdds.py"'
FASTDDS_VENV_PYTHON = '"$dir/python3" "$dir/../tools/fastdds/fastdds.py"'
# Inputs of the microexp_ros CMake build: a change to any of these re-runs it.
PACKAGE_INPUTS = ("CMakeLists.txt", "cmake", "package.xml", "setup.cfg", "setup.py", "msg", "microexp_ros", "launch",
                  "config", "models", "bags")


class StepFailed(Exception):
    """A bootstrap step failed; the message says which, where its log is and what to do."""


def log(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


def tree_hash(base: Path, entries: Iterable[str]) -> str:
    """Hash of the names and contents of files under `base/entry` (caches and bytecode excluded)."""
    digest = hashlib.sha256()
    for entry in entries:
        path = base / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            digest.update(str(f.relative_to(base)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


class Bootstrap:
    def __init__(self, venv: Path, prefix: Path, source: Path, logs: Path, build: Path, jobs: int) -> None:
        self.venv, self.prefix, self.source = venv, prefix, source
        self.logs, self.build, self.jobs = logs, build, jobs
        self.python = venv / "bin" / "python3"

    def stamp(self, step: str) -> Path:
        """Stamps of the venv's own steps live in the venv, those of built packages in their install prefix."""
        home = self.venv if step in ("venv", "wheels") else self.prefix
        return home / ".microexp-stamps" / step

    # -- helpers -------------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        prefixes = [str(self.prefix)] + ([str(self.venv)] if self.prefix != self.venv else [])
        for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
            extra = [p for p in env.get(var, "").split(os.pathsep) if p]
            env[var] = os.pathsep.join(prefixes + extra)
        env.pop("PYTHONPATH", None)
        return env

    def run(self, step: str, cmd: list[str], hint: str, cwd: Path | None = None) -> None:
        """Run one command of a step, appending to the step's log; StepFailed with the log's tail on failure."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{step}.log"
        with log_path.open("a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=cwd)
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            errors = [line for line in tail if "rror" in line] or tail[-8:]
            raise StepFailed(
                f"step '{step}' failed (exit {proc.returncode}) running: {' '.join(cmd[:4])} ...\n"
                + "\n".join(f"    {line}" for line in errors)
                + f"\n  full log: {log_path}\n  what to do: {hint}"
            )

    def stamp_matches(self, step: str, key: str) -> bool:
        stamp = self.stamp(step)
        return stamp.is_file() and stamp.read_text() == key

    def begin(self, step: str) -> float:
        self.stamp(step).unlink(missing_ok=True)
        (self.logs / f"{step}.log").unlink(missing_ok=True)
        return time.monotonic()

    def done(self, step: str, key: str, started: float) -> None:
        self.stamp(step).parent.mkdir(parents=True, exist_ok=True)
        self.stamp(step).write_text(key)
        log(f"{step}: done in {time.monotonic() - started:.1f} s")

    def up_to_date(self, step: str) -> None:
        log(f"{step}: up to date")

    # -- steps ---------------------------------------------------------------------------------------------
    def venv_step(self) -> None:
        step = "venv"
        if self.python.exists():
            probe = subprocess.run([str(self.python), "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == str(PYTHON_TAG):
                self.up_to_date(step)
                return
            log(f"{step}: {self.venv} is broken or not Python {PYTHON_TAG[0]}.{PYTHON_TAG[1]} "
                f"({(probe.stderr or probe.stdout).strip()[:200]}); recreating it")
            shutil.rmtree(self.venv)
        elif self.venv.exists():
            log(f"{step}: {self.venv} exists but has no bin/python3; recreating it")
            shutil.rmtree(self.venv)
        started = self.begin(step)
        self.run(step, [find_python(), "-m", "venv", str(self.venv)],
                 f"install Python {PYTHON_TAG[0]}.{PYTHON_TAG[1]} with its venv module (Debian: python3-venv)")
        self.done(step, "1", started)

    def wheels_step(self) -> None:
        step = "wheels"
        lock, top_level = self.source / "requirements.lock", self.source / "requirements.in"
        for required in (lock, top_level):
            if not required.is_file():
                raise StepFailed(f"step '{step}' failed: {required} is missing\n"
                                 "  what to do: restore it from the repository (git checkout -- <file>)")
        torch = next((line.strip() for line in top_level.read_text().splitlines() if line.startswith("torch==")),
                     None)
        if torch is None:
            raise StepFailed(f"step '{step}' failed: {top_level} pins no torch==<version>\n"
                             "  what to do: pin torch (torch==2.13.0, the CPU build) in requirements.in")
        key = hashlib.sha256((torch + "\n").encode() + lock.read_bytes()).hexdigest()
        if self.stamp_matches(step, key):
            self.up_to_date(step)
            return
        started = self.begin(step)
        hint = ("check that PyPI is reachable (pip config list shows the index) and that the pins in "
                "requirements.lock exist for this Python; re-run `make setup`")
        pip = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        self.run(step, pip + [torch], hint)
        self.run(step, pip + ["-r", str(lock)], hint)
        self.run(step, [str(self.python), "-c", "import rclpy, torch, snntorch, cv2, rosbags, numba"],
                 "the wheels installed but do not import: see the log; delete .venv and re-run `make setup`")
        self.done(step, key, started)

    def wheel_fixups_step(self) -> None:
        """Rewrite the build-container include paths baked into the wheels' CMake exports, and the `fastdds`
        tool's interpreter (idempotent)."""
        step = "wheel-fixups"
        py_inc = self.query("import sysconfig; print(sysconfig.get_paths()['include'])")
        np_inc = self.query("import numpy; print(numpy.get_include())")
        if not (Path(py_inc) / "Python.h").is_file():
            raise StepFailed(f"step '{step}' failed: Python headers not found at {py_inc}\n"
                             "  what to do: install them (Debian: python3.11-dev) and re-run `make setup`")
        patched = 0
        for cmake_file in (self.venv / "share").glob("*/cmake/*.cmake"):
            text = cmake_file.read_text()
            if BAKED_PY_INCLUDE in text or BAKED_NP_INCLUDE in text:
                cmake_file.write_text(text.replace(BAKED_NP_INCLUDE, np_inc).replace(BAKED_PY_INCLUDE, py_inc))
                patched += 1
        fastdds = self.venv / "bin" / "fastdds"
        if fastdds.is_file() and FASTDDS_PATH_PYTHON in fastdds.read_text():
            fastdds.write_text(fastdds.read_text().replace(FASTDDS_PATH_PYTHON, FASTDDS_VENV_PYTHON))
            patched += 1
        log(f"{step}: patched {patched} files" if patched else f"{step}: up to date")

    def query(self, code: str) -> str:
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip()

    def cmake_package_step(self, step: str, source: Path, inputs: Iterable[str]) -> None:
        key = tree_hash(source, inputs)
        if self.stamp_matches(step, key):
            self.up_to_date(step)
            return
        started = self.begin(step)
        build = self.build / step
        hint = (f"read the first error in the log; for a .msg syntax error fix the file under {source}, "
                "then re-run `make setup`")
        self.run(step, ["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={self.prefix}",
                        f"-DCMAKE_PREFIX_PATH={self.prefix}", f"-DPython3_EXECUTABLE={self.python}",
                        "-DBUILD_TESTING=OFF"], hint)
        self.run(step, ["cmake", "--build", str(build), "-j", str(self.jobs)], hint)
        self.run(step, ["cmake", "--install", str(build)], hint)
        self.done(step, key, started)

    def external_package(self, package: str) -> Path | None:
        """The share dir of `package` from a sourced ROS install outside our prefix, if there is one."""
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
            if prefix and Path(prefix).resolve() != self.prefix.resolve():
                share = Path(prefix) / "share" / package / "package.xml"
                if share.is_file():
                    return share.parent
        return None

    def interfaces_step(self, package: str) -> None:
        external = self.external_package(package)
        if external is not None:
            log(f"{package}: using the installed package at {external}")
            return
        self.cmake_package_step(package, self.source / "interfaces" / package, ("CMakeLists.txt", "package.xml",
                                                                                  "msg"))

    def all(self) -> None:
        total = time.monotonic()
        self.venv_step()
        self.wheels_step()
        self.wheel_fixups_step()
        self.interfaces_step("event_camera_msgs")
        self.interfaces_step("hri_msgs")
        self.cmake_package_step("microexp_ros", self.source, PACKAGE_INPUTS)
        log(f"ready in {time.monotonic() - total:.1f} s: {self.venv}")


def find_python() -> str:
    """An interpreter of the version the ROS wheels are built for."""
    if sys.version_info[:2] == PYTHON_TAG:
        return sys.executable
    name = f"python{PYTHON_TAG[0]}.{PYTHON_TAG[1]}"
    found = shutil.which(name)
    if found is None:
        raise StepFailed(f"step 'venv' failed: the ROS 2 wheels need {name}, and this is Python "
                         f"{sys.version_info[0]}.{sys.version_info[1]} with no {name} on PATH\n"
                         f"  what to do: install {name} (with venv and headers) and re-run `make setup`")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--prefix", type=Path, help="install prefix of our packages (default: the venv)")
    parser.add_argument("--source", type=Path, default=ROOT, help="package source tree (default: this repo)")
    parser.add_argument("--build-dir", type=Path, help="CMake build trees and logs (default: <source>/build)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    venv = args.venv.resolve()
    source = args.source.resolve()
    build = (args.build_dir or source / "build").resolve()
    boot = Bootstrap(venv, (args.prefix or venv).resolve(), source, build / "logs", build, args.jobs)
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".bootstrap.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs (two terminals, parallel tests) take turns
        try:
            boot.all()
        except StepFailed as failure:
            print(f"bootstrap: FAILED: {failure}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
