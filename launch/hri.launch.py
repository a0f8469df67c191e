"""ros2 launch microexp_ros hri.launch.py — the 'hri' graph of microexp_ros.bringup.graphs.

The same graph runs without ROS launch as `microexp launch hri` (same nodes, parameters and remappings).
Arguments: `ros2 launch microexp_ros hri.launch.py --show-args`.
"""

from microexp_ros.bringup.ros_launch import launch_description


def generate_launch_description():
    return launch_description("hri")
