"""hri_bridge node: /au_predictions as ROS4HRI (REP-155) per-face FacialActionUnits.

For each face id in AUPredictions (an empty id becomes `default_face_id`) it publishes
hri_msgs/FacialActionUnits on `/humans/faces/<id>/facs` (slot = FACS number, see `hri.facs`) and keeps
`/humans/faces/tracked` (hri_msgs/IdsList) current: published after every prediction and whenever a face is
forgotten, `face_timeout_s` after its last prediction (its publisher is then destroyed; REP-155 ids are not
persistent). Everything is reliable, as libhri subscribes with SystemDefaults.
"""

from __future__ import annotations

import sys

from hri_msgs.msg import FacialActionUnits, IdsList
from rclpy.exceptions import InvalidTopicNameException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.validate_full_topic_name import validate_full_topic_name
from std_msgs.msg import Header

from microexp_ros.hri.facs import AUState, facs_arrays
from microexp_ros.msg import AUPredictions
from microexp_ros.ros import qos
from microexp_ros.ros.diagnostics import Health
from microexp_ros.ros.params import Param, declare_parameters
from microexp_ros.ros.runtime import run_node

PARAMS = [
    Param("default_face_id", "f00000", "ROS4HRI id used for predictions whose face_id is empty", read_only=True),
    Param("face_timeout_s", 2.0, "forget a face this long after its last prediction", min=0.05, max=3600.0,
          read_only=True),
    Param("check_period_s", 0.1, "how often faces are checked for the timeout", min=0.01, max=10.0,
          read_only=True),
]


class HRIBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__("hri_bridge")
        p = declare_parameters(self, PARAMS)
        self.params = p
        self.default_id = p["default_face_id"]
        self._facs_topic(self.default_id)  # fail at start on an id that cannot name a topic
        self.health = Health(self)
        self.faces: dict[str, tuple[Publisher, int]] = {}  # id -> (facs publisher, last seen, node clock ns)
        self.tracked_pub = self.create_publisher(IdsList, "/humans/faces/tracked", qos.predictions_qos())
        self.create_subscription(AUPredictions, "/au_predictions", self.on_predictions, qos.predictions_qos())
        self.create_timer(p["check_period_s"], self.expire)

    @staticmethod
    def _facs_topic(face_id: str) -> str:
        topic = f"/humans/faces/{face_id}/facs"
        validate_full_topic_name(topic)  # InvalidTopicNameException naming the problem
        return topic

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def on_predictions(self, msg: AUPredictions) -> None:
        self.health.count("in:au_predictions")
        face_id = msg.face_id or self.default_id
        try:
            intensity, confidence = facs_arrays(
                AUState(u.number, u.probability, u.active, u.intensity) for u in msg.action_units)
        except ValueError as error:
            self.health.error("bad_prediction", str(error))
            return
        if face_id not in self.faces:
            try:
                topic = self._facs_topic(face_id)
            except InvalidTopicNameException as error:
                self.health.error("bad_face_id", f"face id {face_id!r}: {error}")
                return
            self.faces[face_id] = (self.create_publisher(FacialActionUnits, topic, qos.predictions_qos()), 0)
        publisher, _ = self.faces[face_id]
        self.faces[face_id] = (publisher, self._now_ns())
        publisher.publish(FacialActionUnits(header=msg.header, intensity=intensity.tolist(),
                                            confidence=confidence.tolist()))
        self.health.count("out:facs")
        self.publish_tracked(msg.header)

    def expire(self) -> None:
        limit = self._now_ns() - int(self.params["face_timeout_s"] * 1e9)
        gone = [face_id for face_id, (_, seen) in self.faces.items() if seen < limit]
        for face_id in gone:
            self.destroy_publisher(self.faces.pop(face_id)[0])
            self.health.count("forgotten_faces")
        if gone:
            self.publish_tracked(Header(stamp=self.get_clock().now().to_msg()))
        self.health.values["tracked_faces"] = len(self.faces)

    def publish_tracked(self, header: Header) -> None:
        self.tracked_pub.publish(IdsList(header=header, ids=sorted(self.faces)))


def main() -> None:
    sys.exit(run_node(HRIBridgeNode))


if __name__ == "__main__":
    main()
