"""lidar_odometry_node outputs for other ROS tools, over real DDS: covariance in lkd/odometry,
``publish_tf: false`` (robot_localization / AMCL own the tree), the latched path reaching a late
subscriber, the scan and local map for RViz, and the LiDAR mounting through a /tf_static chain."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage

from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.io import messages
from lkd_perception.io.codecs import Cloud
from lkd_perception.nodes import qos
from lkd_perception.nodes.conversions import cloud_to_pointcloud2, ns_to_stamp, pointcloud2_to_cloud, ros_message
from lkd_perception.nodes.lidar_odometry_node import LidarOdometryNode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "odometry"))
import scene  # noqa: E402


def _graph(ros_ctx, name: str, **params):
    node = LidarOdometryNode(context=ros_ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    probe = Node(name, context=ros_ctx)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    return node, probe, ex


def test_covariance_no_tf_latched_path_and_clouds(ros_ctx, spin_until):
    seq = scene.make_sequence(seconds=0.6, seed=0)
    node, probe, ex = _graph(ros_ctx, "probe_outputs", publish_tf=False, path_period_s=0.0, scan_cloud_period_s=0.0,
                             map_cloud_period_s=0.25)
    odoms, tfs, scans, maps = [], [], [], []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    probe.create_subscription(TFMessage, "/tf", tfs.append, qos.output_qos(100))
    probe.create_subscription(PointCloud2, "lkd/scan", scans.append, qos.output_qos(10))
    probe.create_subscription(PointCloud2, "lkd/local_map", maps.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(10))
    try:
        assert spin_until(
            ex, lambda: pub.get_subscription_count() > 0 and node.pub_map.get_subscription_count() > 0, 10.0
        )
        for stamp, cloud in seq.scans:
            n = len(odoms)
            pub.publish(cloud_to_pointcloud2(cloud, ns_to_stamp(stamp), "lidar"))
            assert spin_until(ex, lambda: len(odoms) > n, 10.0)
        assert spin_until(ex, lambda: len(scans) == len(seq.scans), 5.0)
        spin_until(ex, lambda: False, 0.5)  # a /tf message would have arrived by now
        # a subscriber that joins after the path went out still gets it (transient local)
        late: list = []
        probe.create_subscription(PathMsg, "lkd/path", late.append, qos.latched_qos(1))
        assert spin_until(ex, lambda: len(late) == 1, 10.0), "the latched path did not reach a late subscriber"
        map_poses: list = []
        probe.create_subscription(PoseWithCovarianceStamped, "lkd/map_pose", map_poses.append, qos.latched_qos(1))
        assert spin_until(ex, lambda: len(map_poses) == 1, 10.0), "the latched map pose did not reach a late subscriber"
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()

    assert tfs == []
    assert late[0].header.frame_id == "map" and len(late[0].poses) >= 2
    # the newest keyframe's map pose with the pose graph's marginal covariance: grown from the
    # anchored first keyframe by the odometry factors' sigmas (5 cm, 0.01 rad each)
    mp = map_poses[0]
    assert mp.header.frame_id == "map" and mp.header.stamp == late[0].poses[-1].header.stamp
    cov = np.array(mp.pose.covariance).reshape(6, 6)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    assert 0.04 < np.sqrt(cov[0, 0]) < 0.5 and 0.005 < np.sqrt(cov[5, 5]) < 0.1
    for o in odoms:
        for cov in (np.array(o.pose.covariance).reshape(6, 6), np.array(o.twist.covariance).reshape(6, 6)):
            assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    # structure all round: centimetres of position sigma, not zero and not metres
    sig = np.sqrt(np.diag(np.array(odoms[-1].pose.covariance).reshape(6, 6))[:3])
    assert np.all(sig > 1e-4) and np.all(sig < 0.1), sig
    # the scan in base_link at every scan (period 0); the map in odom every 0.25 s of scan time
    assert all(s.header.frame_id == "base_link" for s in scans)
    assert 2 <= len(maps) <= 3 and all(m.header.frame_id == "odom" for m in maps)
    assert len(pointcloud2_to_cloud(maps[-1])) > len(pointcloud2_to_cloud(scans[-1])) > 100


def test_mounting_through_a_tf_static_chain(ros_ctx, spin_until):
    """base_link -> sensor_mount -> lidar_yawed: the mounting is composed along the chain."""
    seq = scene.make_sequence(seconds=0.5, seed=0)
    T_base_mount = make_pose(yaw_pitch_roll_matrix(0.0, 0.0, 0.1), [0.5, 0.0, 1.0])
    T_base_lidar = make_pose(yaw_pitch_roll_matrix(np.pi / 2), [0.5, 0.0, 1.2])
    node, probe, ex = _graph(ros_ctx, "probe_chain")
    odoms: list = []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(10))
    pub_static = probe.create_publisher(TFMessage, "/tf_static", qos.latched_qos(10))
    try:
        pub_static.publish(
            messages.tf_message(
                ros_message,
                [
                    messages.transform_stamped(
                        ros_message,
                        ns_to_stamp(0),
                        "sensor_mount",
                        "lidar_yawed",
                        pose_inverse(T_base_mount) @ T_base_lidar,
                    ),
                    messages.transform_stamped(ros_message, ns_to_stamp(0), "base_link", "sensor_mount", T_base_mount),
                ],
            )
        )
        assert spin_until(ex, lambda: "lidar_yawed" in node._static and "sensor_mount" in node._static, 10.0)
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)
        for stamp, cloud in seq.scans:
            xyz = transform_points(pose_inverse(T_base_lidar), cloud.xyz.astype(np.float64)).astype(np.float32)
            n = len(odoms)
            pub.publish(cloud_to_pointcloud2(Cloud(xyz, None, cloud.time), ns_to_stamp(stamp), "lidar_yawed"))
            assert spin_until(ex, lambda: len(odoms) > n, 10.0)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
    assert np.allclose(node.pipeline.T_base_lidar, T_base_lidar, atol=1e-9)
    p = odoms[-1].pose.pose.position
    assert abs(p.x - seq.gt_poses[len(seq.scans) - 1][0, 3]) < 0.2 and abs(p.y) < 0.2
