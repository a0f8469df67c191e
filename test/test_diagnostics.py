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


def test_a_node_with_deaf_restart_s_leaves_when_it_hears_neither_its_input_nor_the_other_nodes(ros_env):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from microexp_ros.ros.diagnostics import DEAF_EXIT_CODE

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("deaf_probe", context=context,
                             parameter_overrides=[Parameter("deaf_restart_s", value=12.0)])
    try:
        clock, exits = Clock(), []
        health = Health(node, clock=clock, leave=exits.append)
        samples = types.SimpleNamespace(topic_name="/time_sync/samples", get_publisher_count=lambda: 1)
        health.watch(samples, "in:samples")
        assert health.restart_after_s == 12.0
        node.create_publisher(DiagnosticArray, "/diagnostics", 10)   # another node's reporter, matched
        report = lambda name: DiagnosticArray(status=[DiagnosticStatus(name=name)])  # noqa: E731
        health.count("in:samples")
        health.publish()
        clock.now += 11.0
        health.on_peer_report(report("/face_region"))    # the graph is still heard: a stalled input, not deafness
        clock.now += 1.1
        health.publish()
        assert exits == [] and health.status().level == DiagnosticStatus.WARN
        health.on_peer_report(report("/deaf_probe"))     # its own report does not count
        clock.now += 10.8
        health.publish()                                 # 22.9 s without input, 11.9 s without the others
        assert exits == [] and health.status().level == DiagnosticStatus.WARN
        clock.now += 0.2
        health.publish()                                 # deaf: confirmed by the next report, a period later
        assert exits == [] and health.status().level == DiagnosticStatus.WARN
        health.on_peer_report(report("/face_region"))    # a report that queued while the process was starved
        clock.now += 1.0
        health.publish()
        assert exits == [] and health.status().level == DiagnosticStatus.WARN
        clock.now += 11.5                                # 12.5 s without the others again
        health.publish()
        assert exits == []
        clock.now += 0.9
        assert health.status().level == DiagnosticStatus.WARN   # not a period since it was first found deaf
        clock.now += 0.2
        status = health.status()
        assert status.level == DiagnosticStatus.ERROR
        assert status.message == ("no in:samples for 37 s from 1 matched publisher(s) of /time_sync/samples, and no "
                                  "/diagnostics from 1 other node(s) for 14 s: deaf, leaving to be respawned with a "
                                  "new DDS participant")
        health.drop("late")                              # a drop does not lower the level
        assert health.status().level == DiagnosticStatus.ERROR
        health.publish()                                 # the report goes out first, then the node asks to end
        assert exits == [DEAF_EXIT_CODE]
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_deaf_restart_s_is_declared_with_the_first_watch_and_off_by_default(node):
    clock = Clock()
    health = Health(node, clock=clock, leave=lambda code: pytest.fail(f"left with {code}"))
    assert not node.has_parameter("deaf_restart_s")    # a node without watched inputs has no such parameter
    inputs = types.SimpleNamespace(topic_name="/in", get_publisher_count=lambda: 1)
    health.watch(inputs, "in:a", silent_after_s=1.0)
    health.watch(inputs, "in:b", silent_after_s=1.0)
    assert node.get_parameter("deaf_restart_s").value == 0.0 and health.restart_after_s == 0.0
    health.count("in:a")
    health.publish()
    clock.now += 3600.0
    health.publish()                     # silent for an hour: reported, never leaving
    assert health.status().level == DiagnosticStatus.WARN
