"""DDS transport settings and per-run isolation.

FastDDS's default transports lose most best-effort messages of 1 MiB or more sent at a steady rate between
processes on one host; a shared-memory-only profile with a 64 MiB segment delivered all of them
(shared/notes/pip-ros2.md §3). That profile is the default here. A multi-host robot (sensors on the robot,
viewers on a workstation) needs a network transport: `large_data` or `default`.
The setting must be in the environment before the first rclpy node is created.
"""

from __future__ import annotations

import os
import random
from collections.abc import MutableMapping

from microexp_ros.resources import share_path

TRANSPORT_ENV = "MICROEXP_DDS_TRANSPORT"
# A writer sees a new reader before that reader has matched the writer; data sent in between is dropped by the
# reader. Publishers that wait for subscribers wait this much longer before their first message.
DISCOVERY_SETTLE_S = 0.3
TRANSPORTS = ("shm", "large_data", "default")
_FASTDDS_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def dds_environment(transport: str) -> dict[str, str]:
    """The environment variables that select `transport` (one of TRANSPORTS) for FastDDS."""
    if transport == "shm":
        profile = share_path("config", "fastdds_shm.xml")
        if not profile.is_file():
            raise FileNotFoundError(f"FastDDS shared-memory profile missing: {profile}")
        return {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}
    if transport == "large_data":
        return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    if transport == "default":
        return {}
    raise ValueError(f"unknown DDS transport '{transport}' (expected one of {', '.join(TRANSPORTS)})")


def configure_transport(env: MutableMapping[str, str] | None = None) -> str:
    """Apply the transport named by $MICROEXP_DDS_TRANSPORT (default shm) unless FastDDS is already configured.

    Returns a description of what is in force, for the node's startup log.
    """
    env = os.environ if env is None else env
    preset = {name: env[name] for name in _FASTDDS_VARS if env.get(name)}
    if preset:
        return "FastDDS configured by the environment: " + ", ".join(f"{k}={v}" for k, v in preset.items())
    transport = env.get(TRANSPORT_ENV, "shm")
    env.update(dds_environment(transport))
    return f"DDS transport '{transport}'"


def private_domain_id(rng: random.Random | None = None) -> int:
    """A random ROS_DOMAIN_ID for one test session or launch, so parallel runs never cross-talk."""
    return (rng or random.SystemRandom()).randint(1, 101)
