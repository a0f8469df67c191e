"""Test process: publish messages read from files of length-prefixed CDR blobs, then exit.

Usage: cdr_publisher.py SPEC_JSON [LINGER_S] — SPEC_JSON a list of {"topic", "type" (pkg/msg/Name), "file",
"qos" (reliable|best_effort), "rate_hz"}. Waits until every topic has a subscriber, publishes each blob once at
its rate (raw bytes: no decode/encode round trip), lingers LINGER_S seconds (default 0.5: reliable data is
acknowledged) with its publishers still matched, and exits 0.
"""

import json
import sys
import time

import rclpy
from rclpy.serialization import deserialize_message

from microexp_ros.ros import qos
from microexp_ros.ros.dds import DISCOVERY_SETTLE_S, configure_transport
from microexp_ros.ros.msg_types import message_class
from cdr_files import read_blobs


def main() -> int:
    spec = json.loads(sys.argv[1])
    linger_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    configure_transport()
    rclpy.init()
    node = rclpy.create_node("cdr_publisher")
    streams = []
    for item in spec:
        msg_type = message_class(item["type"])
        profile = qos.predictions_qos() if item["qos"] == "reliable" else qos.events_qos()
        blobs = read_blobs(item["file"])
        for blob in blobs:  # fail early on a blob that is not of this type
            deserialize_message(blob, msg_type)
        streams.append((node.create_publisher(msg_type, item["topic"], profile), blobs, 1.0 / item["rate_hz"]))
    deadline = time.monotonic() + 20.0
    while any(pub.get_subscription_count() == 0 for pub, _, _ in streams):
        if time.monotonic() > deadline:
            print("no subscriber matched", file=sys.stderr)
            return 3
        time.sleep(0.02)
    time.sleep(DISCOVERY_SETTLE_S)  # the subscribers must match us too
    for publisher, blobs, period in streams:
        start = time.monotonic()
        for i, blob in enumerate(blobs):
            time.sleep(max(0.0, start + i * period - time.monotonic()))
            publisher.publish(blob)
    time.sleep(linger_s)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
