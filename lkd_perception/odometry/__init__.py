"""odometry subpackage of lkd_perception."""
