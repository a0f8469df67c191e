"""Conversions between integer nanoseconds (the unit of every timestamp in the science core) and ROS Time."""

from __future__ import annotations

from builtin_interfaces.msg import Time

NS_PER_S = 1_000_000_000


def to_time_msg(ns: int) -> Time:
    """builtin_interfaces/Time from nanoseconds (non-negative)."""
    if ns < 0:
        raise ValueError(f"cannot represent negative time {ns} ns as builtin_interfaces/Time")
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def from_time_msg(stamp: Time) -> int:
    """Nanoseconds from builtin_interfaces/Time."""
    return stamp.sec * NS_PER_S + stamp.nanosec
