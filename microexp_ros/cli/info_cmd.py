"""`microexp info`: what this installation is made of, to check a setup at a glance."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

from microexp_ros import __version__
from microexp_ros.cli.output import add_json_flag, emit, format_table

_MODULES = ("rclpy", "microexp_ros.msg", "event_camera_msgs.msg", "numpy", "torch", "snntorch", "cv2", "rosbags",
            "numba")


def register(group) -> None:
    parser = group("system", "installation and environment").add_parser(
        "info", help="versions of the ROS and science stacks, and where package data is found")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def _probe(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # an install problem must be reported, whatever its kind
        return f"MISSING ({type(error).__name__}: {error})"
    return str(getattr(module, "__version__", "ok"))


def run(args: argparse.Namespace) -> int:
    from microexp_ros.resources import share_dir
    from microexp_ros.ros.shm_segments import unowned_segments

    modules = {name: _probe(name) for name in _MODULES}
    try:
        share = str(share_dir())
    except FileNotFoundError as error:
        share = f"MISSING ({error})"
    unowned = unowned_segments()
    left = sum(size for _, size in unowned)
    payload = {"microexp_ros": __version__, "python": platform.python_version(), "prefix": sys.prefix,
               "share_dir": share, "modules": modules,
               "fastdds_unowned_segments": {"count": len(unowned), "bytes": left}}
    rows = [["microexp_ros", __version__], ["python", payload["python"]], ["share dir", share]]
    rows += [[name, version] for name, version in modules.items()]
    rows.append(["FastDDS shm of exited processes", f"{len(unowned)} segments, {left / 2**20:.0f} MiB"
                 + ("; `fastdds shm clean` frees them when no ROS process is starting" if unowned else "")])
    emit(args, payload, format_table(["component", "version / status"], rows))
    return 0 if not any(v.startswith("MISSING") for v in modules.values()) else 1
