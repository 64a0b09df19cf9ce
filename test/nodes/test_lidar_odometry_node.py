"""lidar_odometry_node over real DDS: frames and stamps of Odometry, Path and TF; bad scans survive;
the LiDAR and IMU mountings from /tf_static."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Imu, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.io import messages
from lkd_perception.io.codecs import Cloud
from lkd_perception.nodes import qos
from lkd_perception.nodes.conversions import cloud_to_pointcloud2, ns_to_stamp, ros_message, stamp_to_ns
from lkd_perception.nodes.lidar_odometry_node import LidarOdometryNode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "odometry"))
import scene  # noqa: E402


@pytest.mark.slow
def test_node_publishes_consistent_odometry_path_and_tf(ros_ctx, spin_until):
    seq = scene.make_sequence(seconds=0.6, seed=0)
    # path_period_s 0: the Path at every keyframe (the default throttles it to one per 2 s)
    node = LidarOdometryNode(context=ros_ctx, parameter_overrides=[Parameter("path_period_s", value=0.0)])
    probe = Node("probe", context=ros_ctx)
    odoms, paths, tfs, diags = [], [], [], []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    probe.create_subscription(PathMsg, "lkd/path", paths.append, qos.output_qos(10))
    probe.create_subscription(TFMessage, "/tf", tfs.append, qos.output_qos(100))
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(10))
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)

        def send(stamp_ns: int, cloud: Cloud, expect_odom: bool) -> None:
            n = len(odoms)
            pub.publish(cloud_to_pointcloud2(cloud, ns_to_stamp(stamp_ns), "lidar"))
            if expect_odom:
                assert spin_until(ex, lambda: len(odoms) > n, 10.0)
            else:
                spin_until(ex, lambda: False, 0.5)
                assert len(odoms) == n

        for stamp, cloud in seq.scans[:3]:
            send(stamp, cloud, True)
        # bad input: an empty cloud, an all-NaN cloud and an out-of-order scan are skipped
        send(seq.scans[3][0], Cloud(np.zeros((0, 3), np.float32)), False)
        send(seq.scans[3][0], Cloud(np.full((200, 3), np.nan, np.float32)), False)
        send(seq.scans[0][0], seq.scans[0][1], False)
        for stamp, cloud in seq.scans[3:6]:
            send(stamp, cloud, True)
        assert spin_until(ex, lambda: len(paths) >= 2 and len(tfs) >= 6, 5.0)
        assert spin_until(
            ex, lambda: any(s.level == DiagnosticStatus.WARN for d in diags for s in d.status), 5.0
        ), "bad scans were not reported on /diagnostics"
        # the scan task also shows the inertial state's bias estimates (no IMU here: still zero)
        assert spin_until(ex, lambda: any("imu_accel_bias_m_s2" in {v.key for v in s.values}
                                          for d in diags for s in d.status), 5.0)
        scan_status = [s for d in diags for s in d.status if s.name.endswith(": scan")][-1]
        values = {v.key: v.value for v in scan_status.values}
        for key, estimate in [("imu_gyro_bias_rad_s", node.pipeline.inertial.gyro_bias),
                              ("imu_accel_bias_m_s2", node.pipeline.inertial.accel_bias)]:
            np.testing.assert_allclose(np.array(values[key].strip("[]").split(", "), float), estimate, atol=1e-5)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()

    stamps = [s for s, _ in seq.scans[:6]]
    assert [stamp_to_ns(o.header.stamp) for o in odoms] == stamps
    assert all(o.header.frame_id == "odom" and o.child_frame_id == "base_link" for o in odoms)
    # the vehicle drives forward at 5 m/s: 0.5 m per scan
    x_last = odoms[-1].pose.pose.position.x
    gt_last = seq.gt_poses[5][0, 3]
    assert abs(x_last - gt_last) < 0.3
    # the path is re-published at keyframes (the first scan and every 2 m): the keyframes so far,
    # the last of them the scan that published it
    last_path = paths[-1]
    path_stamps = [stamp_to_ns(p.header.stamp) for p in last_path.poses]
    assert last_path.header.frame_id == "map" and len(path_stamps) >= 2
    assert path_stamps[0] == stamps[0] and path_stamps[-1] == stamp_to_ns(last_path.header.stamp)
    assert set(path_stamps) <= set(stamps) and path_stamps == sorted(set(path_stamps))
    assert all(p.header.frame_id == "map" for p in last_path.poses)
    # no loop closure yet: the map path is the odometry at the same stamps
    odom_x = {stamp_to_ns(o.header.stamp): o.pose.pose.position.x for o in odoms}
    for ps in last_path.poses:
        assert abs(ps.pose.position.x - odom_x[stamp_to_ns(ps.header.stamp)]) < 1e-6
    pairs = {(t.header.frame_id, t.child_frame_id) for m in tfs for t in m.transforms}
    assert pairs == {("map", "odom"), ("odom", "base_link")}
    for m in tfs:
        assert len({stamp_to_ns(t.header.stamp) for t in m.transforms}) == 1
    assert stamp_to_ns(tfs[-1].transforms[0].header.stamp) == stamps[-1]


def test_lidar_mounting_is_taken_from_tf_static(ros_ctx, spin_until):
    """Clouds in a LiDAR frame yawed by 90 deg: with /tf_static the vehicle still drives along +x."""
    seq = scene.make_sequence(seconds=0.5, seed=0)
    T_base_lidar = make_pose(yaw_pitch_roll_matrix(np.pi / 2), [0.5, 0.0, 1.2])
    node = LidarOdometryNode(context=ros_ctx)
    probe = Node("probe_tf", context=ros_ctx)
    odoms = []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(10))
    pub_static = probe.create_publisher(TFMessage, "/tf_static", qos.latched_qos(10))
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        pub_static.publish(
            messages.tf_message(
                ros_message,
                [messages.transform_stamped(ros_message, ns_to_stamp(0), "base_link", "lidar_yawed", T_base_lidar)],
            )
        )
        assert spin_until(ex, lambda: "lidar_yawed" in node._static, 10.0)
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
    p = odoms[-1].pose.pose.position
    assert abs(p.x - seq.gt_poses[len(seq.scans) - 1][0, 3]) < 0.2 and abs(p.y) < 0.2


def test_imu_mounting_is_taken_from_tf_static(ros_ctx, spin_until):
    """An IMU mounted upside down and turned by 90 deg, its messages in its own frame: the mounting
    comes from /tf_static (the parameter says identity), so gravity is estimated pointing down
    and the gyro's yaw rate is read as yaw (no bias taken up), and the vehicle follows its circle."""
    seq = scene.make_sequence(seconds=0.8, seed=0)
    R_base_imu = yaw_pitch_roll_matrix(np.pi / 2, 0.0, np.pi)
    T_base_imu = make_pose(R_base_imu, [0.3, -0.1, 0.4])
    node = LidarOdometryNode(context=ros_ctx)
    probe = Node("probe_imu_tf", context=ros_ctx)
    odoms = []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(10))
    pub_imu = probe.create_publisher(Imu, "imu/data", qos.output_qos(100))
    pub_static = probe.create_publisher(TFMessage, "/tf_static", qos.latched_qos(10))
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    k = 0
    try:
        pub_static.publish(messages.tf_message(ros_message, [
            messages.transform_stamped(ros_message, ns_to_stamp(0), "base_link", "imu_flipped", T_base_imu)
        ]))
        assert spin_until(ex, lambda: "imu_flipped" in node._static, 10.0)
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_imu.get_subscription_count() > 0, 10.0)
        for stamp, cloud in seq.scans:
            sent = 0
            while k < len(seq.imu) and seq.imu[k][0] <= stamp + 110_000_000:
                t, gyro, accel = seq.imu[k]
                m = Imu(header=Header(stamp=ns_to_stamp(t), frame_id="imu_flipped"))
                w = R_base_imu.T @ gyro
                m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in w)
                m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (
                    float(v) for v in R_base_imu.T @ accel
                )
                pub_imu.publish(m)
                k, sent = k + 1, sent + 1
            held = len(node.pipeline.imu)
            assert spin_until(ex, lambda: len(node.pipeline.imu) >= min(held + sent, 1000), 10.0)
            n = len(odoms)
            pub.publish(cloud_to_pointcloud2(cloud, ns_to_stamp(stamp), "lidar"))
            assert spin_until(ex, lambda: len(odoms) > n, 10.0)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
    np.testing.assert_allclose(node.pipeline.imu.R_base_imu, R_base_imu, atol=1e-9)
    inertial = node.pipeline.inertial
    assert inertial.gravity is not None and inertial.gravity[2] < -9.5, inertial.gravity
    assert np.linalg.norm(inertial.gyro_bias) < 0.01, inertial.gyro_bias
    p = odoms[-1].pose.pose.position
    gt = seq.gt_poses[len(seq.scans) - 1][:3, 3]
    assert abs(p.x - gt[0]) < 0.2 and abs(p.y - gt[1]) < 0.2, (p.x, p.y, gt)
