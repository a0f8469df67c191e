"""Health's watch on continuous inputs: a stream that stops while its publishers are still matched is reported
(WARN, gauge, one log line); one that has not started, or whose publishers are gone, is not."""

from __future__ import annotations

import types

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Empty

from microexp_ros.ros.diagnostics import Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("health_probe", context=context)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_a_stream_that_stops_while_publishers_are_matched_is_reported_until_it_arrives_or_they_leave(node):
    clock = Clock()
    health = Health(node, clock=clock)
    events = types.SimpleNamespace(topic_name="/event_camera/events", publishers=1)
    events.get_publisher_count = lambda: events.publishers
    health.watch(events, "in:packets", silent_after_s=5.0)

    clock.now += 60.0   # a publisher but nothing yet (a bag player waiting for the graph): not a silence
    assert health.status().level == DiagnosticStatus.OK
    health.count("in:packets", 3)
    assert health.status().level == DiagnosticStatus.OK
    clock.now += 4.9
    status = health.status()
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    clock.now += 0.2
    status = health.status()
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "no in:packets for 5 s from 1 matched publisher(s) of /event_camera/events"
    assert float({kv.key: kv.value for kv in status.values}["silent_s/in:packets"]) == pytest.approx(5.1)
    health.count("in:packets")          # it arrives again
    assert health.status().level == DiagnosticStatus.OK
    clock.now += 6.0
    assert health.status().level == DiagnosticStatus.WARN
    events.publishers = 0               # the camera driver ended: nobody to hear from
    assert health.status().level == DiagnosticStatus.OK
    events.publishers = 1               # a new one: the silence counts from the report that sees it
    assert health.status().level == DiagnosticStatus.OK
    clock.now += 4.9
    assert health.status().level == DiagnosticStatus.OK
    clock.now += 0.2
    assert health.status().level == DiagnosticStatus.WARN


def test_a_silence_and_errors_are_both_named_errors_setting_the_level(node):
    clock = Clock()
    health = Health(node, clock=clock)
    samples = types.SimpleNamespace(topic_name="/time_sync/samples", get_publisher_count=lambda: 2)
    health.watch(samples, "in:samples", silent_after_s=1.0)
    health.count("in:samples")
    health.status()
    clock.now += 2.0
    health.error("bad_sample", "width 0")
    status = health.status()
    assert status.level == DiagnosticStatus.ERROR
    assert status.message == ("no in:samples for 2 s from 2 matched publisher(s) of /time_sync/samples; "
                              "errors since last report: 1")


def test_where_rclpy_has_no_matched_publisher_count_the_graph_count_stands_in(node):
    # Humble's rclpy Subscription has no get_publisher_count: the node's count of the topic's publishers is used.
    clock = Clock()
    health = Health(node, clock=clock)
    health.watch(types.SimpleNamespace(topic_name="/humble_input"), "in:humble", silent_after_s=1.0)
    publisher = node.create_publisher(Empty, "/humble_input", 10)
    health.count("in:humble")
    assert health.status().level == DiagnosticStatus.OK
    clock.now += 2.0
    assert health.status().message == "no in:humble for 2 s from 1 matched publisher(s) of /humble_input"
    node.destroy_publisher(publisher)
    assert health.status().level == DiagnosticStatus.OK
