"""Shared fixtures: the real recordings in ../shared/data/real, skipped with a reason where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("MICROEXP_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))


def pytest_configure(config: pytest.Config) -> None:
    """The test process's own DDS participants (watchers, probes) get the node processes' transport. FastDDS
    reads its profile once per process, at the first participant, so it is set before any test can make one."""
    from microexp_ros.ros.dds import configure_transport

    configure_transport()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the shared real recordings; skips the test where a clone has no ../shared/data."""
    if not (REAL_DATA / "SOURCES.md").is_file():
        pytest.skip(f"real recordings not found at {REAL_DATA} (set MICROEXP_REAL_DATA); CI has them")
    return REAL_DATA


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for ROS test processes: a private domain id for this session and the project's DDS transport."""
    from microexp_ros.ros.dds import configure_transport, private_domain_id

    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(private_domain_id())
    env["PYTHONUNBUFFERED"] = "1"
    configure_transport(env)
    return env
