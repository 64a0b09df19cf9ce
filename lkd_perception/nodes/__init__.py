"""lkd_perception: nodes (the only ROS-importing package)."""
