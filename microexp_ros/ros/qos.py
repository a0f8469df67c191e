"""QoS presets, chosen per stream on purpose.

Event and image streams are best-effort like metavision_driver / libcaer_driver publish them (a reliable
subscriber would silently never connect to those drivers); what robot behaviours and HRI stacks consume is
reliable (libhri subscribes with SystemDefaults).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def _profile(reliability: ReliabilityPolicy, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def events_qos(depth: int = 1000) -> QoSProfile:
    """Event packets: best-effort, deep queue for ~1 kHz packets (metavision_driver send_queue_size)."""
    return _profile(ReliabilityPolicy.BEST_EFFORT, depth)


def image_qos(depth: int = 10) -> QoSProfile:
    """Camera images: best-effort sensor data."""
    return _profile(ReliabilityPolicy.BEST_EFFORT, depth)


def samples_qos(depth: int = 300) -> QoSProfile:
    """Synchronised samples between our own nodes: reliable, with 10 s of windows at 30 Hz of history, so a
    model node that falls behind for a while catches up instead of losing windows."""
    return _profile(ReliabilityPolicy.RELIABLE, depth)


def predictions_qos(depth: int = 50) -> QoSProfile:
    """`/au_predictions`, ROS4HRI topics, quality and diagnostics: reliable, for any default subscriber."""
    return _profile(ReliabilityPolicy.RELIABLE, depth)


def latched_qos() -> QoSProfile:
    """A state that late subscribers must still get (a node's `~/ready` flag): reliable, transient local,
    the last message only."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
