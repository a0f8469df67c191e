"""Training loops of the models (plain Python + torch, no ROS)."""
