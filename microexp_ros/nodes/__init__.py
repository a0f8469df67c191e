"""ROS 2 nodes: one module per node; each reads parameters, calls the science core, publishes, counts drops."""
