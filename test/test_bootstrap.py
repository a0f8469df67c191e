"""The bootstrap is idempotent, rebuilds what changed, and fails clearly without leaving a step marked done."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = REPO / "scripts" / "bootstrap.py"
VENV = Path(sys.prefix)
SOURCE_ENTRIES = ("CMakeLists.txt", "cmake", "package.xml", "setup.cfg", "setup.py", "msg", "microexp_ros",
                  "launch", "config", "models", "bags", "interfaces", "requirements.in", "requirements.lock")


def bootstrap(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BOOTSTRAP), "--venv", str(VENV), *args], capture_output=True,
                          text=True, env=env, timeout=900)


def steps(output: str) -> dict[str, str]:
    """step name → what the bootstrap said of it ('up to date', 'done in …', …)."""
    lines = [line.removeprefix("bootstrap: ") for line in output.splitlines() if line.startswith("bootstrap: ")]
    return dict(line.split(": ", 1) for line in lines if not line.startswith("ready"))


def test_second_run_rebuilds_and_reinstalls_nothing():
    first = bootstrap()
    assert first.returncode == 0, first.stderr
    generated = next((VENV / "lib").glob("python3*/site-packages/microexp_ros/msg/_au_predictions.py"))
    before = generated.stat().st_mtime_ns
    second = bootstrap()
    assert second.returncode == 0, second.stderr
    said = steps(second.stdout)
    assert said == {"venv": "up to date", "wheels": "up to date", "wheel-fixups": "up to date",
                    "event_camera_msgs": "up to date", "hri_msgs": "up to date", "microexp_ros": "up to date"}, second.stdout
    assert generated.stat().st_mtime_ns == before


def test_msg_change_is_rebuilt_and_msg_error_is_reported(tmp_path):
    src, prefix, build = tmp_path / "src", tmp_path / "prefix", tmp_path / "build"
    src.mkdir()
    for entry in SOURCE_ENTRIES:
        path = REPO / entry
        if path.is_dir():
            shutil.copytree(path, src / entry, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.is_file():
            shutil.copy2(path, src / entry)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV))  # interface packages: the ones already in the venv
    args = ("--source", str(src), "--prefix", str(prefix), "--build-dir", str(build))

    built = bootstrap(*args, env=env)
    assert built.returncode == 0, built.stderr + built.stdout
    assert steps(built.stdout)["microexp_ros"].startswith("done in")
    assert "event_camera_msgs: using the installed package" in built.stdout

    msg = src / "msg" / "ReconstructionQuality.msg"
    msg.write_text(msg.read_text() + "float32 lpips\n")
    rebuilt = bootstrap(*args, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert steps(rebuilt.stdout)["microexp_ros"].startswith("done in")
    generated = next(prefix.glob("lib/python3*/site-packages/microexp_ros/msg/_reconstruction_quality.py"))
    assert "lpips" in generated.read_text()

    msg.write_text(msg.read_text() + "float32 has space in name\n")
    broken = bootstrap(*args, env=env)
    assert broken.returncode == 1
    assert "step 'microexp_ros' failed" in broken.stderr
    assert "full log:" in broken.stderr and "what to do:" in broken.stderr
    again = bootstrap(*args, env=env)  # the failed step was not marked done: it runs (and fails) again
    assert again.returncode == 1 and "microexp_ros: up to date" not in again.stdout


def test_broken_venv_is_recreated_and_a_failed_download_is_named(tmp_path):
    """A .venv whose interpreter does not run is recreated; a wheel that cannot be downloaded stops the
    bootstrap with the step, its log and what to do, and leaves the step unmarked."""
    venv, source = tmp_path / "venv", tmp_path / "src"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").write_text("#!/bin/sh\nexit 1\n")
    (venv / "bin" / "python3").chmod(0o755)
    source.mkdir()
    (source / "requirements.in").write_text("torch==0.0.1\n")  # no such release: the download fails
    (source / "requirements.lock").write_text("")
    result = subprocess.run([sys.executable, str(BOOTSTRAP), "--venv", str(venv), "--source", str(source)],
                            capture_output=True, text=True, timeout=300)
    assert "is broken" in result.stdout and "recreating it" in result.stdout
    assert "venv: done in" in result.stdout
    assert result.returncode == 1
    assert "step 'wheels' failed" in result.stderr and "torch==0.0.1" in result.stderr
    assert "full log:" in result.stderr and "what to do:" in result.stderr
    assert not (venv / ".microexp-stamps" / "wheels").exists()


def test_fastdds_tool_runs_with_nothing_sourced():
    """`fastdds shm clean` frees what killed nodes leave in /dev/shm (docs/robustness.md); its tools import psutil,
    which only the venv has."""
    tool = VENV / "bin" / "fastdds"
    done = subprocess.run([str(tool), "shm", "--help"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean" in done.stdout
