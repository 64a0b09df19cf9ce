"""Shared, ROS-free building blocks: configuration dataclasses, SE(3) maths, timing, errors."""
