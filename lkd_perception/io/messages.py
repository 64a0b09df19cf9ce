"""The product's output messages, built by one set of functions for the nodes and for ``lkd run``.

A node publishes rclpy message objects; ``lkd run`` writes rosbags message objects into an mcap
recording. Both message kinds share the ``.msg`` field names, so every builder here takes a
``make(msgtype, **fields)`` callable and passes *every* field it sets by keyword: the nodes give
the rclpy classes (``nodes.conversions.ros_message``), the offline run gives
:func:`bag_message` (rosbags, missing fields take zero values). What a result becomes on a
topic is therefore written once, and the offline recording holds the same messages the nodes
publish. This module imports no ROS.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lkd_perception.common.se3 import quat_from_matrix
from lkd_perception.io import topics
from lkd_perception.io.codecs import CodecError
from lkd_perception.io.typestore import build_message

MessageMaker = Callable[..., Any]  # make(msgtype, **fields) -> message object

# the message types of the outputs, from the topic table
DETECTION_ARRAY = topics.DETECTIONS.msgtype
IMAGE_MARKER = topics.LINE_MARKERS.msgtype
MARKER_ARRAY = topics.LOOP_CLOSURES.msgtype
ODOMETRY = topics.ODOMETRY.msgtype
PATH = topics.PATH.msgtype
TF_MESSAGE = topics.TF.msgtype
DIAGNOSTIC_ARRAY = topics.DIAGNOSTICS.msgtype

LINE_MARKER_RGBA = (1.0, 0.2, 0.1, 1.0)
LOOP_MARKER_RGBA = (1.0, 0.1, 0.8, 1.0)
IMAGE_MARKER_LINE_LIST = 2  # visualization_msgs/ImageMarker.LINE_LIST
MARKER_LINE_LIST = 5  # visualization_msgs/Marker.LINE_LIST


def bag_message(msgtype: str, **fields: Any) -> Any:
    """A rosbags message object (for recordings); the offline twin of the rclpy classes."""
    return build_message(msgtype, fields)


# -- small pieces -----------------------------------------------------------------------------
def time_msg(make: MessageMaker, ns: int) -> Any:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def header(make: MessageMaker, stamp: Any, frame_id: str) -> Any:
    return make("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)


def _rgba(make: MessageMaker, rgba: tuple[float, float, float, float]) -> Any:
    r, g, b, a = rgba
    return make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a)


def _point(make: MessageMaker, xyz: Sequence[float]) -> Any:
    return make("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _quaternion(make: MessageMaker, R: np.ndarray) -> Any:
    x, y, z, w = (float(v) for v in quat_from_matrix(R))
    return make("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w)


def _pose(make: MessageMaker, T: np.ndarray) -> Any:
    return make("geometry_msgs/msg/Pose", position=_point(make, T[:3, 3]), orientation=_quaternion(make, T[:3, :3]))


def _vector3(make: MessageMaker, v: Sequence[float] | None) -> Any:
    x, y, z = (0.0, 0.0, 0.0) if v is None else (float(c) for c in v)
    return make("geometry_msgs/msg/Vector3", x=x, y=y, z=z)


# -- detections and line segments -------------------------------------------------------------
def detection2d_array(
    make: MessageMaker,
    stamp: Any,
    frame_id: str,
    centers: np.ndarray,
    sizes: np.ndarray,
    thetas: np.ndarray | None,
    scores: np.ndarray,
    class_ids: Sequence[str],
) -> Any:
    """A Detection2DArray of (possibly rotated) boxes; one hypothesis per detection."""
    n = len(scores)
    if not (len(centers) == len(sizes) == len(class_ids) == n) or (thetas is not None and len(thetas) != n):
        raise CodecError("detection2d_array: centers, sizes, thetas, scores and class_ids differ in length")
    hdr = header(make, stamp, frame_id)
    dets = []
    for i in range(n):
        center = make("vision_msgs/msg/Pose2D",
                      position=make("vision_msgs/msg/Point2D", x=float(centers[i][0]), y=float(centers[i][1])),
                      theta=float(thetas[i]) if thetas is not None else 0.0)
        bbox = make("vision_msgs/msg/BoundingBox2D", center=center, size_x=float(sizes[i][0]),
                    size_y=float(sizes[i][1]))
        hyp = make("vision_msgs/msg/ObjectHypothesisWithPose",
                   hypothesis=make("vision_msgs/msg/ObjectHypothesis", class_id=str(class_ids[i]),
                                   score=float(scores[i])))
        dets.append(make("vision_msgs/msg/Detection2D", header=hdr, results=[hyp], bbox=bbox))
    return make(DETECTION_ARRAY, header=hdr, detections=dets)


def detections_msg(make: MessageMaker, stamp: Any, frame_id: str, det: Any) -> Any:
    """``/lkd/detections`` of one image from a :class:`~lkd_perception.detection.runtime.Detections`:
    axis-aligned boxes (centre, size), the class *name* as class_id."""
    b = det.boxes_xyxy
    if len(det):
        centers = np.stack(((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2), 1)
        sizes = np.stack((b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1)
    else:
        centers = sizes = np.zeros((0, 2))
    return detection2d_array(make, stamp, frame_id, centers, sizes, None, det.scores, det.labels)


def lines_msg(make: MessageMaker, stamp: Any, frame_id: str, found: Any) -> Any:
    """``/lkd/lines`` of one image from :class:`~lkd_perception.lines.runtime.LineSegments`: the
    oriented-box encoding of :mod:`lkd_perception.io.line_encoding`."""
    from lkd_perception.io.line_encoding import segments_to_boxes

    boxes = segments_to_boxes(found.segments, found.widths)
    sizes = np.stack([boxes.lengths, boxes.widths], axis=1)
    return detection2d_array(make, stamp, frame_id, boxes.centers, sizes, boxes.thetas, found.scores,
                             ["line"] * len(found))


def line_marker(make: MessageMaker, stamp: Any, frame_id: str, found: Any) -> Any:
    """``/lkd/lines/markers``: a LINE_LIST with one point pair per segment and one colour per point
    (newer RViz needs that)."""
    points = [make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=0.0) for x, y in found.segments.reshape(-1, 2)]
    return make(
        IMAGE_MARKER, header=header(make, stamp, frame_id), ns="lkd_lines", id=0, type=IMAGE_MARKER_LINE_LIST,
        action=0, scale=1.0, lifetime=make("builtin_interfaces/msg/Duration", sec=0, nanosec=0),
        outline_color=_rgba(make, LINE_MARKER_RGBA), points=points,
        outline_colors=[_rgba(make, LINE_MARKER_RGBA) for _ in points],
    )


# -- odometry ---------------------------------------------------------------------------------
def transform_stamped(make: MessageMaker, stamp: Any, parent: str, child: str, T: np.ndarray) -> Any:
    tf = make("geometry_msgs/msg/Transform", translation=_vector3(make, T[:3, 3]), rotation=_quaternion(make, T[:3,
                                                                                                                :3]))
    return make(
        "geometry_msgs/msg/TransformStamped", header=header(make, stamp, parent), child_frame_id=child, transform=tf
    )


def tf_message(make: MessageMaker, transforms: Sequence[Any]) -> Any:
    return make(TF_MESSAGE, transforms=list(transforms))


def odometry_msg(
    make: MessageMaker,
    stamp: Any,
    frame_id: str,
    child_frame_id: str,
    T: np.ndarray,
    twist_linear: np.ndarray | None = None,
    twist_angular: np.ndarray | None = None,
    pose_covariance: np.ndarray | None = None,
    twist_covariance: np.ndarray | None = None,
) -> Any:
    """Odometry with the pose of ``child_frame_id`` in ``frame_id``; twist in the child frame."""
    cov = np.zeros(36) if pose_covariance is None else np.asarray(pose_covariance, dtype=np.float64).reshape(36)
    tcov = np.zeros(36) if twist_covariance is None else np.asarray(twist_covariance, dtype=np.float64).reshape(36)
    pose = make("geometry_msgs/msg/PoseWithCovariance", pose=_pose(make, T), covariance=cov)
    twist = make(
        "geometry_msgs/msg/TwistWithCovariance",
        twist=make(
            "geometry_msgs/msg/Twist", linear=_vector3(make, twist_linear), angular=_vector3(make, twist_angular)
        ),
        covariance=tcov,
    )
    return make(ODOMETRY, header=header(make, stamp, frame_id), child_frame_id=child_frame_id, pose=pose, twist=twist)


def pose_with_covariance_stamped(
    make: MessageMaker, stamp: Any, frame_id: str, T: np.ndarray, covariance: np.ndarray
) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped`` (covariance 6x6, rotation-then-translation as ROS orders it)."""
    pose = make(
        "geometry_msgs/msg/PoseWithCovariance",
        pose=_pose(make, T),
        covariance=np.asarray(covariance, dtype=np.float64).reshape(36),
    )
    return make("geometry_msgs/msg/PoseWithCovarianceStamped", header=header(make, stamp, frame_id), pose=pose)


def path_msg(make: MessageMaker, stamp: Any, frame_id: str, stamps: Sequence[Any], poses: Sequence[np.ndarray]) -> Any:
    if len(stamps) != len(poses):
        raise CodecError("path_msg: stamps and poses differ in length")
    items = [
        make("geometry_msgs/msg/PoseStamped", header=header(make, st, frame_id), pose=_pose(make, T))
        for st, T in zip(stamps, poses)
    ]
    return make(PATH, header=header(make, stamp, frame_id), poses=items)


def loop_markers(
    make: MessageMaker,
    stamp: Any,
    frame_id: str,
    keyframe_poses: Mapping[int, np.ndarray],
    loop_closures: Sequence[Any],
) -> Any:
    """``/lkd/loop_closures``: one line between the two keyframes of every accepted loop."""
    points = [_point(make, keyframe_poses[kid][:3, 3]) for lc in loop_closures for kid in (lc.from_id, lc.to_id)]
    pose = make(
        "geometry_msgs/msg/Pose",
        position=_point(make, (0.0, 0.0, 0.0)),
        orientation=make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
    )
    m = make(
        "visualization_msgs/msg/Marker",
        header=header(make, stamp, frame_id),
        ns="loop_closures",
        id=0,
        type=MARKER_LINE_LIST,
        action=0,
        pose=pose,
        scale=_vector3(make, (0.3, 0.0, 0.0)),
        color=_rgba(make, LOOP_MARKER_RGBA),
        points=points,
    )
    return make(MARKER_ARRAY, markers=[m])


class OdometryOutputs:
    """What the odometry publishes for one scan, and when: odometry and TF every scan, the
    loop-corrected path after a loop closure or at a keyframe at most every ``path_period_s``
    (a path of every scan cost 160 ms a message after 10 minutes), the loop markers after a loop.

    Holds the only state of that policy (when the path went out last), so the node and
    ``lkd run`` publish the same messages at the same scans.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._last_path_ns: int | None = None

    def messages(self, make: MessageMaker, pipeline: Any, r: Any, stamp: Any) -> list[tuple[str, Any]]:
        """(relative topic, message) pairs for result ``r`` of ``pipeline`` (topics as the node names them)."""
        c = self.cfg
        u = r.uncertainty
        out: list[tuple[str, Any]] = [
            (
                topics.ODOMETRY.name,
                odometry_msg(
                    make,
                    stamp,
                    c.odom_frame,
                    c.base_frame,
                    r.pose,
                    r.twist.linear,
                    r.twist.angular,
                    u.pose_covariance,
                    u.twist_covariance,
                ),
            ),
        ]
        if c.publish_tf:  # off when robot_localization / AMCL own the TF tree and fuse lkd/odometry
            out.append(
                (
                    topics.TF.name,
                    tf_message(
                        make,
                        [
                            transform_stamped(make, stamp, c.map_frame, c.odom_frame, r.map_T_odom),
                            transform_stamped(make, stamp, c.odom_frame, c.base_frame, r.pose),
                        ],
                    ),
                )
            )
        due = self._last_path_ns is None or r.stamp_ns - self._last_path_ns >= c.path_period_s * 1e9
        if r.loop_closures or (r.keyframe and due):
            stamps, poses = pipeline.map_path()
            stamps_msg = [time_msg(make, int(s)) for s in stamps]
            out.append((topics.PATH.name, path_msg(make, stamp, c.map_frame, stamps_msg, list(poses))))
            self._last_path_ns = r.stamp_ns
        if r.loop_closures:
            out.append(
                (
                    topics.LOOP_CLOSURES.name,
                    loop_markers(make, stamp, c.map_frame, pipeline.keyframe_poses(), pipeline.loop_closures),
                )
            )
        return out
