"""Named QoS profiles, so every node and the replay tool agree on them.

Sensor inputs default to best effort with depth 1: a perception node should always work on the
newest frame and drop what it cannot keep up with, and a best-effort subscriber also matches a
reliable publisher (the mismatch the other way is the top "no detections" complaint of
yolo_ros). Both are overridable by the ``sensor_qos_reliability``/``sensor_qos_depth`` parameters.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def sensor_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """QoS for sensor subscriptions (camera, LiDAR, IMU)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 10) -> QoSProfile:
    """QoS for results (detections, odometry): reliable so recorders and RViz get every one."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Transient-local QoS for state that late joiners need (``/tf_static``, the latest path)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
