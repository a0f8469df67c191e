"""Datasets, manifests, splits and bag I/O (rosbags needs no ROS install)."""
