"""The product's topics, named once: what each node reads and publishes, with message types.

Everything that must agree on a topic reads it from here: the nodes' publishers and
subscriptions, the node graph (``nodes.graph``: launch remappings, the replay's wait for
subscribers and publishers), the recorder's default table, ``lkd run``'s recording, the reader
of a recording, the report and the soak. It lives in ``io`` rather than beside the graph in
``nodes`` because the evaluation side, which the core capabilities import, must read it too: a
table in ``nodes`` would make eval depend on the package that depends on every capability. This
module imports no ROS and nothing heavy: the launch file reads it through the graph.

Names are as a node creates them: relative names (``lkd/odometry``) resolve in the node's
namespace, absolute ones (``/tf``, ``/diagnostics``) do not; :attr:`Topic.path` is the name
without a namespace, as ``lkd replay --record`` and ``lkd run`` record it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """One topic: its name as the node creates it, and its message type (``pkg/msg/Name``)."""

    name: str
    msgtype: str

    @property
    def path(self) -> str:
        """The name in an un-namespaced graph (``/lkd/odometry``), as recordings hold it."""
        return self.name if self.name.startswith("/") else "/" + self.name


# -- inputs ------------------------------------------------------------------------------------
IMAGE = Topic("camera/image_raw", "sensor_msgs/msg/Image")
CAMERA_INFO = Topic("camera/camera_info", "sensor_msgs/msg/CameraInfo")  # recorded beside the images; no node reads it
LIDAR = Topic("lidar/points", "sensor_msgs/msg/PointCloud2")
IMU = Topic("imu/data", "sensor_msgs/msg/Imu")
TF_STATIC = Topic("/tf_static", "tf2_msgs/msg/TFMessage")  # latched extrinsics, read by the odometry

# -- outputs -----------------------------------------------------------------------------------
DETECTIONS = Topic("lkd/detections", "vision_msgs/msg/Detection2DArray")
DETECTIONS_DEBUG_IMAGE = Topic("lkd/detections/debug_image", "sensor_msgs/msg/Image")
LINES = Topic("lkd/lines", "vision_msgs/msg/Detection2DArray")
LINE_MARKERS = Topic("lkd/lines/markers", "visualization_msgs/msg/ImageMarker")
LINES_DEBUG_IMAGE = Topic("lkd/lines/debug_image", "sensor_msgs/msg/Image")
ODOMETRY = Topic("lkd/odometry", "nav_msgs/msg/Odometry")
PATH = Topic("lkd/path", "nav_msgs/msg/Path")
MAP_POSE = Topic("lkd/map_pose", "geometry_msgs/msg/PoseWithCovarianceStamped")
SCAN = Topic("lkd/scan", "sensor_msgs/msg/PointCloud2")
LOCAL_MAP = Topic("lkd/local_map", "sensor_msgs/msg/PointCloud2")
LOOP_CLOSURES = Topic("lkd/loop_closures", "visualization_msgs/msg/MarkerArray")
TF = Topic("/tf", "tf2_msgs/msg/TFMessage")
DIAGNOSTICS = Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")

#: published by every node (health, in every lifecycle state)
EVERY_NODE: tuple[Topic, ...] = (DIAGNOSTICS,)


@dataclass(frozen=True)
class NodeTopics:
    """What one node reads and publishes.

    ``inputs`` are the streams it answers (a replay waits until each has its subscriber);
    ``results`` are published once per answered input, ``results[0]`` answering ``inputs[0]``
    (a replay waits until the recorder sees their publishers; the report counts the first as
    processed frames); ``recorded`` are the other outputs a recording keeps (latched path, loop
    markers, TF; and :data:`EVERY_NODE`'s health); ``extra`` are published on demand for viewing and never recorded by
    default (debug images, clouds, the map pose).
    """

    inputs: tuple[Topic, ...]
    results: tuple[Topic, ...]
    recorded: tuple[Topic, ...] = ()
    extra: tuple[Topic, ...] = ()

    @property
    def result(self) -> Topic:
        """The node's result: one per processed frame of ``inputs[0]``."""
        return self.results[0]

    @property
    def paced_by(self) -> Topic:
        """The input whose every message the node should answer (the processed fraction's base)."""
        return self.inputs[0]

    @property
    def published(self) -> tuple[Topic, ...]:
        """Every topic the node publishes."""
        return self.results + self.recorded + EVERY_NODE + self.extra


#: node name (its ``NodeSpec.name``) -> its topics
NODE_TOPICS: dict[str, NodeTopics] = {
    "detector_node": NodeTopics(inputs=(IMAGE,), results=(DETECTIONS,), extra=(DETECTIONS_DEBUG_IMAGE,)),
    "line_node": NodeTopics(inputs=(IMAGE,), results=(LINES, LINE_MARKERS), extra=(LINES_DEBUG_IMAGE,)),
    "lidar_odometry_node": NodeTopics(
        inputs=(LIDAR, IMU), results=(ODOMETRY,), recorded=(PATH, LOOP_CLOSURES, TF),
        extra=(MAP_POSE, SCAN, LOCAL_MAP),
    ),
}


def recorded_topics() -> dict[str, str]:
    """Topic path -> message type of everything a recording of the nodes keeps, results first
    (the recorder's default table, and the types ``lkd run`` writes)."""
    ordered = [t for n in NODE_TOPICS.values() for t in n.results]
    ordered += [t for n in NODE_TOPICS.values() for t in n.recorded] + list(EVERY_NODE)
    return {t.path: t.msgtype for t in ordered}


#: the recorder's default table: topic path -> message type
RECORDED: dict[str, str] = recorded_topics()
