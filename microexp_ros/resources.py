"""Where installed data lives: message definitions, shipped weights, the embedded bag, config, launch.

Lookup order: the ament index (a sourced ROS 2 workspace), then `<sys.prefix>/share/<pkg>` (the pip venv,
which is the CMake install prefix, needs nothing sourced), then the source checkout (running from a clone).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

PACKAGE = "microexp_ros"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
# Source locations of packages whose definitions we carry for environments that lack them.
_SOURCE_SHARES = {
    PACKAGE: _SOURCE_ROOT,
    "event_camera_msgs": _SOURCE_ROOT / "interfaces" / "event_camera_msgs",
    "hri_msgs": _SOURCE_ROOT / "interfaces" / "hri_msgs",
}


@cache
def share_dir(package: str = PACKAGE) -> Path:
    """The share directory of an installed package; FileNotFoundError naming the places searched."""
    searched = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidate = Path(prefix) / "share" / package
            searched.append(str(candidate))
            if (candidate / "package.xml").is_file():
                return candidate
    candidate = Path(sys.prefix) / "share" / package
    searched.append(str(candidate))
    if (candidate / "package.xml").is_file():
        return candidate
    source = _SOURCE_SHARES.get(package)
    if source is not None:
        searched.append(str(source))
        if (source / "package.xml").is_file():
            return source
    raise FileNotFoundError(f"share directory of package '{package}' not found; searched: {', '.join(searched)}")


def share_path(*parts: str, package: str = PACKAGE) -> Path:
    """A path inside a package's share directory (not checked for existence)."""
    return share_dir(package).joinpath(*parts)


def msg_definition(package: str, name: str) -> str:
    """The .msg text of `package/msg/name`, as installed (the single source of truth for bag type stores)."""
    path = share_path("msg", f"{name}.msg", package=package)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"message definition {package}/msg/{name} not found at {path}") from None


def real_data_dir() -> Path:
    """The shared real recordings (`../shared/data/real` beside the clone), or $MICROEXP_REAL_DATA.

    Looked for beside the source checkout and beside the working directory (make and CI run from the repo
    root); FileNotFoundError naming the places searched when none has them.
    """
    override = os.environ.get("MICROEXP_REAL_DATA")
    candidates = [Path(override)] if override else [
        _SOURCE_ROOT.parent / "shared" / "data" / "real",
        Path.cwd().parent / "shared" / "data" / "real",
        Path.cwd() / "shared" / "data" / "real",
    ]
    for candidate in candidates:
        if (candidate / "SOURCES.md").is_file():
            return candidate
    raise FileNotFoundError("real recordings not found (looked in "
                            + ", ".join(str(c) for c in candidates) + "); set MICROEXP_REAL_DATA")
