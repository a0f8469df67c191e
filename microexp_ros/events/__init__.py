"""Event data: codecs, file readers, event arrays, representations, windowing. No ROS imports."""
