"""Test process: subscribe to topics and write every message received as length-prefixed CDR to files.

Usage: cdr_recorder.py SPEC_JSON TIMEOUT_S — a list of {"topic", "type", "file", "qos" (reliable, latched or
best-effort), "count"} and optionally
"publishers": N, for a node already running — then "ready" waits until N publishers of that topic are matched
(and the discovery settle time), so nothing it publishes next is missed. Prints "ready" once subscribed; exits 0
when every topic got its count, 4 on timeout (the files then hold what did arrive).

Once every subscription has matched a publisher (this reader's side of the match, which a publisher cannot see:
data sent before it is lost to a volatile reader), it publishes True on the latched READY_TOPIC, for a bag
player to wait on (`wait_for_ready`).
"""

import json
import sys
import time

import rclpy
from std_msgs.msg import Bool

from microexp_ros.ros import qos
from microexp_ros.ros.dds import DISCOVERY_SETTLE_S, configure_transport
from microexp_ros.ros.msg_types import message_class
from cdr_files import write_blobs

READY_TOPIC = "/cdr_recorder/ready"


def main() -> int:
    spec, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
    configure_transport()
    rclpy.init()
    node = rclpy.create_node("cdr_recorder")
    received: dict[str, list[bytes]] = {item["topic"]: [] for item in spec}
    subscriptions = []
    for item in spec:
        profile = {"reliable": qos.predictions_qos, "latched": qos.latched_qos}.get(item["qos"], qos.events_qos)()
        subscriptions.append(node.create_subscription(message_class(item["type"]), item["topic"],
                                                      received[item["topic"]].append, profile, raw=True))
    deadline = time.monotonic() + timeout
    if any(item.get("publishers", 0) for item in spec):
        while any(sub.get_publisher_count() < item.get("publishers", 0) for sub, item in zip(subscriptions, spec)):
            if time.monotonic() > deadline:
                print("publishers never matched", file=sys.stderr)
                return 3
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(DISCOVERY_SETTLE_S)
    print("ready", flush=True)
    flag = node.create_publisher(Bool, READY_TOPIC, qos.latched_qos())
    flagged = False

    def complete() -> bool:
        return all(len(received[item["topic"]]) >= item["count"] for item in spec)

    while not complete() and time.monotonic() < deadline:
        if not flagged and all(sub.get_publisher_count() for sub in subscriptions):
            flag.publish(Bool(data=True))
            flagged = True
        rclpy.spin_once(node, timeout_sec=0.05)
    for item in spec:
        write_blobs(item["file"], received[item["topic"]])
    node.destroy_node()
    rclpy.shutdown()
    return 0 if complete() else 4


if __name__ == "__main__":
    sys.exit(main())
