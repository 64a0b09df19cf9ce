"""lkd_perception: distilled, lightweight perception for embedded vehicles.

The core (every subpackage except ``nodes``) is ROS-free: it takes numpy arrays and returns
frozen dataclasses, so it can be tested, benchmarked and used offline without a ROS graph.
"""

__version__ = "0.1.0"
