"""A rosbags type store that knows our messages and event_camera_msgs, from their installed .msg files."""

from __future__ import annotations

from functools import cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from microexp_ros.resources import msg_definition

# Registration order matters: a type must be registered after the types it contains.
OUR_MESSAGES: tuple[tuple[str, str], ...] = (
    ("event_camera_msgs", "EventPacket"),
    ("microexp_ros", "ActionUnit"),
    ("microexp_ros", "AUPredictions"),
    ("microexp_ros", "SyncedSample"),
    ("microexp_ros", "ReconstructionQuality"),
    ("microexp_ros", "FaceRegion"),
    ("microexp_ros", "AUGroundTruth"),
)

EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
IMAGE = "sensor_msgs/msg/Image"


@cache
def typestore() -> Typestore:
    """The ROS 2 Kilted type store with every message this package records or replays registered."""
    store = get_typestore(Stores.ROS2_KILTED)
    for package, name in OUR_MESSAGES:
        store.register(get_types_from_msg(msg_definition(package, name), f"{package}/msg/{name}"))
    return store
