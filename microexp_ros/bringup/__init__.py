"""Bringup: one description of each node graph, run by `ros2 launch` (launch/*.launch.py) and by `microexp launch`."""
