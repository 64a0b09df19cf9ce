"""lidar_odometry_node: PointCloud2 (+ optional Imu) in, odometry, path and TF out.

Subscribes ``lidar/points`` (sensor QoS) and ``imu/data`` (sensor reliability, deep queue so a
slow scan does not drop gyro samples) and publishes

* ``lkd/odometry`` (``nav_msgs/Odometry``): odom -> base_link, twist in base_link;
  with the registration's pose and twist covariance (large along an axis the scene leaves free);
* ``lkd/path`` (``nav_msgs/Path``, frame map, transient local: RViz started later gets the
  latest): the loop-corrected keyframe poses (every
  ``keyframe.distance``) plus the latest scan's, re-published after every loop closure and
  otherwise at a keyframe at most every ``path_period_s``: a path of every scan, rebuilt at each
  keyframe, cost 160 ms a message after 10 minutes (6000 poses) and grew without bound;
* ``/tf``: ``odom -> base_link`` (odometry) and ``map -> odom`` (loop-closure correction), the
  REP-105 split; not with ``publish_tf: false`` (robot_localization or AMCL own the tree);
* ``lkd/map_pose`` (``geometry_msgs/PoseWithCovarianceStamped``, frame map, transient local):
  the newest keyframe's loop-corrected pose with its GTSAM marginal covariance, at keyframes;
* ``lkd/scan`` and ``lkd/local_map`` (``sensor_msgs/PointCloud2``, base_link / odom): the
  deskewed scan and the registration's local map for RViz, at most every
  ``scan_cloud_period_s`` / ``map_cloud_period_s`` and only while subscribed;
* ``lkd/loop_closures`` (``visualization_msgs/MarkerArray``): a line between the two keyframes
  of every accepted loop, in the map frame.

The algorithm is :class:`lkd_perception.odometry.pipeline.LioPipeline`; this node converts
messages and reports. The LiDAR and IMU mountings come from ``/tf_static`` (base_frame -> the
cloud's / the IMU messages' frame through any chain of frames) when that arrives before the first
scan, else from the ``base_T_lidar`` / ``base_T_imu`` parameters, with a warning. Bad scans
(empty, all-NaN, out of order) are warnings on /diagnostics and the node keeps going; so are
degenerate scans.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Imu, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from lkd_perception.common.frames import TransformTree
from lkd_perception.common.se3 import make_pose, matrix_from_quat
from lkd_perception.io import messages, topics
from lkd_perception.io.codecs import Cloud
from lkd_perception.io.messages import OdometryOutputs
from lkd_perception.nodes import qos as qos_profiles
from lkd_perception.nodes.base import LkdNode, run_node
from lkd_perception.nodes.conversions import (
    cloud_to_pointcloud2,
    ns_to_stamp,
    pointcloud2_to_cloud,
    ros_message,
    stamp_to_ns,
)
from lkd_perception.odometry.config import OdometryConfig
from lkd_perception.odometry.pipeline import LioPipeline, OdometryResult

_IMU_QUEUE = 400  # 2 s of a 200 Hz IMU


class LidarOdometryNode(LkdNode):
    """Runs the LiDAR-inertial odometry on every scan it receives."""

    def __init__(self, node_name: str = "lidar_odometry_node", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self.cfg = self.declare_config(OdometryConfig)

    def configure(self) -> None:
        """Build the pipeline (loads the descriptor model) and the outputs; subscribed while active."""
        self.pipeline = LioPipeline(self.cfg)
        self.diagnostics.report_values("scan", self._inertial_values)
        self.pub_odom = self.create_publisher(Odometry, topics.ODOMETRY.name, self.output_qos())
        self.pub_path = self.create_publisher(Path, topics.PATH.name, qos_profiles.latched_qos(1))
        self.pub_map_pose = self.create_publisher(
            PoseWithCovarianceStamped, topics.MAP_POSE.name, qos_profiles.latched_qos(1)
        )
        self.pub_scan = self.create_publisher(PointCloud2, topics.SCAN.name, self.output_qos(depth=1))
        self.pub_map = self.create_publisher(PointCloud2, topics.LOCAL_MAP.name, self.output_qos(depth=1))
        self._cloud_sent_ns: dict[topics.Topic, int] = {}  # topic -> stamp of the last one published
        self.pub_tf = self.create_publisher(TFMessage, topics.TF.name, self.output_qos(depth=100))
        self.pub_loops = self.create_publisher(MarkerArray, topics.LOOP_CLOSURES.name, self.output_qos(depth=1))
        imu_qos = qos_profiles.sensor_qos(
            self.io_config.sensor_qos_reliability, max(self.io_config.sensor_qos_depth, _IMU_QUEUE)
        )
        # The IMU queue holds the samples that arrive while a scan is registered (tens of ms at
        # 200 Hz), and the IMU subscription is created first, so a single-threaded executor (how
        # our nodes spin) takes a ready IMU sample before a ready scan. Its own callback group lets
        # a multi-threaded component container take IMU samples during a registration.
        self.create_subscription(
            Imu, topics.IMU.name, self.guarded("imu", self._on_imu), imu_qos,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.create_subscription(PointCloud2, topics.LIDAR.name, self.guarded("scan", self._on_scan), self.sensor_qos())
        self._static = TransformTree()  # every /tf_static edge, for chains base -> ... -> lidar
        self._imu_frame: str | None = None  # the first IMU message's frame_id
        self.outputs = OdometryOutputs(self.cfg)
        self.create_subscription(
            TFMessage, topics.TF_STATIC.name, self.guarded("tf_static", self._on_tf_static),
            qos_profiles.latched_qos(100),
        )
        self.get_logger().info(
            f"odometry: frames {self.cfg.map_frame} -> {self.cfg.odom_frame} -> {self.cfg.base_frame}, "
            f"descriptor {self.cfg.descriptor}, loop closure {'on' if self.cfg.loop.enabled else 'off'}"
        )

    def _on_imu(self, msg: Imu) -> None:
        if self._imu_frame is None:
            self._imu_frame = msg.header.frame_id
        w, a = msg.angular_velocity, msg.linear_acceleration
        self.pipeline.add_imu(stamp_to_ns(msg.header.stamp), np.array([w.x, w.y, w.z]), np.array([a.x, a.y, a.z]))

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            q, p = t.transform.rotation, t.transform.translation
            T = make_pose(matrix_from_quat(np.array([q.x, q.y, q.z, q.w])), [p.x, p.y, p.z])
            self._static.add(t.header.frame_id, t.child_frame_id, T)

    def _on_scan(self, msg: PointCloud2) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if not self.pipeline.started:
            self._take_extrinsic(msg.header.frame_id)
        result = self.pipeline.add_scan(stamp_ns, pointcloud2_to_cloud(msg))
        self._publish(result, msg.header.stamp)
        self._publish_clouds(result, msg.header.stamp)
        if result.keyframe:
            self._publish_map_pose()
        if result.warning:
            self.diagnostics.warn("scan", result.summary)

    def _inertial_values(self) -> dict[str, object]:
        """The IMU bias estimates, for the scan task's diagnostics (read at 1 Hz, not per scan)."""
        inertial = self.pipeline.inertial
        return {"imu_gyro_bias_rad_s": _vector(inertial.gyro_bias), "imu_accel_bias_m_s2": _vector(inertial.accel_bias)}

    def _take_extrinsic(self, lidar_frame: str) -> None:
        """The mountings, at the first scan: from /tf_static where it connects base_frame to the
        sensors' frames, else the parameters (warned: a wrong mounting is a silent error)."""
        sensors = [("LiDAR", "the clouds'", lidar_frame, "base_T_lidar", self.pipeline.set_lidar_extrinsic)]
        if self._imu_frame is not None:  # no IMU yet: nothing to mount (LiDAR-only, or it comes later)
            sensors.append(("IMU", "the IMU messages'", self._imu_frame, "base_T_imu",
                            self.pipeline.set_imu_extrinsic))
        for sensor, whose, frame, param, set_extrinsic in sensors:
            T = self._static.lookup(self.cfg.base_frame, frame)
            if T is not None:
                set_extrinsic(T)
                self.get_logger().info(f"{sensor} extrinsic {self.cfg.base_frame} <- {frame} from /tf_static")
            else:
                self.get_logger().warning(
                    f"/tf_static does not connect {self.cfg.base_frame!r} and {whose} frame {frame!r} "
                    f"({len(self._static)} static transforms so far): {sensor} extrinsic from {param} "
                    f"{getattr(self.cfg, param)}"
                )

    def _publish_map_pose(self) -> None:
        stamp_ns, T, cov = self.pipeline.keyframe_map_pose()
        self.pub_map_pose.publish(
            messages.pose_with_covariance_stamped(ros_message, ns_to_stamp(stamp_ns), self.cfg.map_frame, T, cov)
        )

    def _publish_clouds(self, r: OdometryResult, stamp) -> None:
        """The scan and the local map for RViz: throttled, and skipped while nobody listens (the
        local map is tens of thousands of points)."""
        c = self.cfg
        for topic, pub, period, frame, points in (
            (topics.SCAN, self.pub_scan, c.scan_cloud_period_s, c.base_frame, lambda: self.pipeline.last_scan_points),
            (topics.LOCAL_MAP, self.pub_map, c.map_cloud_period_s, c.odom_frame,
             lambda: self.pipeline.local_map().points),
        ):
            last = self._cloud_sent_ns.get(topic)
            if pub.get_subscription_count() == 0 or (last is not None and r.stamp_ns - last < period * 1e9):
                continue
            pub.publish(cloud_to_pointcloud2(Cloud(np.asarray(points(), dtype=np.float32)), stamp, frame))
            self._cloud_sent_ns[topic] = r.stamp_ns

    def _publish(self, r: OdometryResult, stamp) -> None:
        pubs = {
            topics.ODOMETRY.name: self.pub_odom,
            topics.TF.name: self.pub_tf,
            topics.PATH.name: self.pub_path,
            topics.LOOP_CLOSURES.name: self.pub_loops,
        }
        for topic, m in self.outputs.messages(ros_message, self.pipeline, r, stamp):
            pubs[topic].publish(m)
        for lc in r.loop_closures:
            self.get_logger().info(f"loop closed: keyframe {lc.to_id} -> {lc.from_id}, rmse {lc.rmse:.3f} m")


def _vector(v: np.ndarray) -> str:
    """A 3-vector for a diagnostics value: ``[x, y, z]``, 5 decimals."""
    return "[" + ", ".join(f"{float(x):.5f}" for x in v) + "]"


def main(args=None) -> None:
    run_node(LidarOdometryNode, args)
