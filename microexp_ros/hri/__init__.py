"""ROS4HRI (REP-155) conversions without ROS: our AU predictions as hri_msgs arrays."""
