"""ros2 launch microexp_ros sim.launch.py — the 'sim' graph of microexp_ros.bringup.graphs.

The same graph runs without ROS launch as `microexp launch sim` (same nodes, parameters and remappings).
Arguments: `ros2 launch microexp_ros sim.launch.py --show-args`.
"""

from microexp_ros.bringup.ros_launch import launch_description


def generate_launch_description():
    return launch_description("sim")
