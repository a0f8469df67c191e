"""ros2 launch microexp_ros sim.launch.py — the 'sim' graph of microexp_ros.bringup.graphs.

No hardware: the event camera driver runs the synthetic face generator through the event simulator
(`lighting:=`, `seed:=`, `resolution:=`), or watches a face video with `video:=FILE`, into the whole HRI graph.

The same graph runs without ROS launch as `microexp launch sim` (same nodes, parameters and remappings).
Arguments: `ros2 launch microexp_ros sim.launch.py --show-args`.
"""

from microexp_ros.bringup.ros_launch import launch_description


def generate_launch_description():
    return launch_description("sim")
