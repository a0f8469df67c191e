"""Pictures of what the system sees and says: event images and AU overlays (plain numpy/OpenCV, no ROS)."""
