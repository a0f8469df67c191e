"""Where the face is: detection in RGB frames and the RGB → event-camera pixel mapping, without ROS."""
