"""ROS adapters shared by every node: QoS, DDS transport, parameters, message conversion, time."""
