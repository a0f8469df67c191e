"""Event/RGB synchronisation without ROS: sensor↔host clock mapping and exact event windows per frame."""
