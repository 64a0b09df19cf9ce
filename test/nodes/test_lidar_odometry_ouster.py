"""The real Ouster OS1-128 clip (test/fixtures/odometry/ouster_os1_128.*) through
lidar_odometry_node over real DDS: PointCloud2 in the Ouster ROS driver's layout (organised
128 x 1024, point_step 48, zeros for no return) in the driver's frame, IMU beside it, and the
sensor mounting from /tf_static."""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Imu, PointCloud2, PointField
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from lkd_perception.common.se3 import make_pose
from lkd_perception.io import messages
from lkd_perception.io.ouster import OusterMetadata, load_frames, ouster_pointcloud2
from lkd_perception.nodes import qos
from lkd_perception.nodes.conversions import ns_to_stamp, ros_message
from lkd_perception.nodes.lidar_odometry_node import LidarOdometryNode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odometry"
T_BASE_SENSOR = make_pose(translation=[1.0, 0.0, 1.8])  # a roof mount


def _msg(frame, meta) -> PointCloud2:
    fields, step, width, height, data = ouster_pointcloud2(frame, meta)
    msg = PointCloud2(
        header=Header(stamp=ns_to_stamp(frame.stamp_ns), frame_id="os_sensor"),
        height=height,
        width=width,
        fields=[PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
        is_bigendian=False,
        point_step=step,
        row_step=step * width,
        is_dense=False,
    )
    msg.data = array("B", data)
    return msg


def test_real_ouster_clip_through_the_node(ros_ctx, spin_until):
    meta = OusterMetadata.load(FIXTURES / "ouster_os1_128.json")
    frames, imu = load_frames(FIXTURES / "ouster_os1_128.npz")
    node = LidarOdometryNode(context=ros_ctx)
    probe = Node("probe_ouster", context=ros_ctx)
    odoms: list = []
    probe.create_subscription(Odometry, "lkd/odometry", odoms.append, qos.output_qos(10))
    pub = probe.create_publisher(PointCloud2, "lidar/points", qos.output_qos(2))
    pub_imu = probe.create_publisher(Imu, "imu/data", qos.output_qos(100))
    pub_static = probe.create_publisher(TFMessage, "/tf_static", qos.latched_qos(10))
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    k = 0
    try:
        pub_static.publish(
            messages.tf_message(
                ros_message,
                [messages.transform_stamped(ros_message, ns_to_stamp(0), "base_link", "os_sensor", T_BASE_SENSOR)],
            )
        )
        assert spin_until(ex, lambda: "os_sensor" in node._static, 10.0)
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_imu.get_subscription_count() > 0, 10.0)
        for f in frames:
            while k < len(imu.stamps_ns) and imu.stamps_ns[k] <= f.stamp_ns + 100_000_000:
                m = Imu(header=Header(stamp=ns_to_stamp(int(imu.stamps_ns[k])), frame_id="os_imu"))
                m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in imu.gyro[k])
                m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (
                    float(v) for v in imu.accel[k]
                )
                pub_imu.publish(m)
                k += 1
            n = len(odoms)
            pub.publish(_msg(f, meta))
            assert spin_until(ex, lambda: len(odoms) > n, 30.0)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
    assert [o.header.stamp.sec * 10**9 + o.header.stamp.nanosec for o in odoms] == [f.stamp_ns for f in frames]
    assert np.allclose(node.pipeline.T_base_lidar, T_BASE_SENSOR)
    # the sensor moved 0.49 m forward over the clip (the capture's own odometry: 0.498 m); the
    # base 1 m in front of it moved the same way (no turn to speak of)
    p = odoms[-1].pose.pose.position
    assert abs(p.x - 0.498) < 0.04 and abs(p.y) < 0.04 and abs(p.z) < 0.04, (p.x, p.y, p.z)
    cov = np.array(odoms[-1].pose.covariance).reshape(6, 6)
    assert np.linalg.eigvalsh(cov).min() > 0
