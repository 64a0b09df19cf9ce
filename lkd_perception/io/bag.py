"""ROS 2 bags without ROS: read (mcap and sqlite3) into numpy, write (mcap) from numpy.

Built on ``rosbags``. A bag path may be a single ``.mcap`` / ``.db3`` file or a rosbag2
directory (with ``metadata.yaml``). :class:`BagWriter` writes a single self-contained ``.mcap``
file when the path ends in ``.mcap`` (what ``lkd simulate`` produces) and a rosbag2 directory
otherwise. Readers yield typed items in time order; asking for a topic the bag lacks is an
:class:`InputError` that lists the topics it has.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, matrix_from_quat, quat_from_matrix
from lkd_perception.io.codecs import (
    Cloud,
    decode_compressed_image,
    decode_image,
    decode_pointcloud2,
    encode_compressed_image,
    encode_image,
    encode_pointcloud2,
    image_to_rgb_array,
)
from lkd_perception.io.imu_series import ImuSeries
from lkd_perception.io.topics import IMAGE, IMU, LIDAR, TF_STATIC
from lkd_perception.io.typestore import build_message, typestore

# ---------------------------------------------------------------------------------------------
# QoS profiles recorded with the topics (so a replay can offer the same ones)
# ---------------------------------------------------------------------------------------------

_ZERO = QosTime(0, 0)
_INFINITE = QosTime(2147483647, 4294967295)


def _qos(reliable: bool, transient_local: bool = False, depth: int = 10) -> Qos:
    return Qos(
        QosHistory.KEEP_LAST, depth,
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        _INFINITE, _INFINITE, QosLiveliness.AUTOMATIC, _INFINITE, False,
    )


SENSOR_QOS = _qos(reliable=False, depth=5)
RELIABLE_QOS = _qos(reliable=True)
LATCHED_QOS = _qos(reliable=True, transient_local=True, depth=1)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def stamp(ns: int) -> dict[str, int]:
    """A ``builtin_interfaces/Time`` mapping from integer nanoseconds."""
    ns = int(ns)
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def header(ns: int, frame_id: str) -> dict[str, Any]:
    """A ``std_msgs/Header`` mapping."""
    return {"stamp": stamp(ns), "frame_id": frame_id}


def transform_fields(ns: int, parent: str, child: str, T: np.ndarray) -> dict[str, Any]:
    """A ``geometry_msgs/TransformStamped`` mapping from a 4x4 pose ``T_parent_child``."""
    q = quat_from_matrix(T[:3, :3])
    t = T[:3, 3]
    return {
        "header": header(ns, parent),
        "child_frame_id": child,
        "transform": {
            "translation": {"x": t[0], "y": t[1], "z": t[2]},
            "rotation": {"x": q[0], "y": q[1], "z": q[2], "w": q[3]},
        },
    }


class BagWriter:
    """Context manager writing a bag: ``with BagWriter("out/drive.mcap") as w: w.write_image(...)``.

    Topics are registered on first use with the QoS given then (sensor topics best effort,
    others reliable, ``/tf_static`` transient local). Messages must be written in time order
    per topic for readers that stream; the file is valid only after the context exits.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise InputError(f"bag {self.path} exists already; not overwriting")
        if storage not in ("mcap", "sqlite3"):
            raise InputError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        self._single_file = self.path.suffix == ".mcap"
        if self._single_file and storage != "mcap":
            raise InputError(f"{self.path}: a .mcap path needs mcap storage")
        self._dir = self.path.with_name(self.path.name + ".partial") if self._single_file else self.path
        if self._dir.exists():
            raise InputError(f"{self._dir} exists (left by an interrupted write?); remove it first")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._dir, version=9, storage_plugin=plugin)
        self._store = typestore()
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        self._dir.parent.mkdir(parents=True, exist_ok=True)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        if exc_type is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            return
        if self._single_file:
            inner = self._dir / f"{self._dir.name}.mcap"
            inner.replace(self.path)
            shutil.rmtree(self._dir)

    def _connection(self, topic: str, msgtype: str, qos: Qos | None):
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self._store.types:
                raise InputError(f"unknown message type {msgtype!r} for topic {topic}")
            profile = qos if qos is not None else RELIABLE_QOS
            conn = self._writer.add_connection(topic, msgtype, typestore=self._store,
                                               offered_qos_profiles=[profile])
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise InputError(f"topic {topic} already carries {conn.msgtype}, not {msgtype}")
        return conn

    def write(self, topic: str, msgtype: str, msg_or_fields: Any, stamp_ns: int, qos: Qos | None = None) -> None:
        """Write any registered message type, given as a message object or a (nested) mapping."""
        conn = self._connection(topic, msgtype, qos)
        msg = build_message(msgtype, msg_or_fields) if isinstance(msg_or_fields, Mapping) else msg_or_fields
        self._writer.write(conn, int(stamp_ns), self._store.serialize_cdr(msg, msgtype))

    def write_image(self, topic: str, stamp_ns: int, image: np.ndarray, frame_id: str,
                    encoding: str = "rgb8") -> None:
        """``sensor_msgs/Image`` from an (H, W, 3) or (H, W) array in ``encoding``."""
        step, data = encode_image(image, encoding)
        self.write(topic, "sensor_msgs/msg/Image", {
            "header": header(stamp_ns, frame_id), "height": image.shape[0], "width": image.shape[1],
            "encoding": encoding, "is_bigendian": 0, "step": step,
            "data": np.frombuffer(data, np.uint8),
        }, stamp_ns, SENSOR_QOS)

    def write_compressed_image(self, topic: str, stamp_ns: int, rgb: np.ndarray, frame_id: str,
                               codec: str = "jpeg", quality: int = 90) -> None:
        """``sensor_msgs/CompressedImage`` (JPEG or PNG) of an (H, W, 3) uint8 RGB image."""
        fmt, data = encode_compressed_image(rgb, codec, quality)
        self.write(topic, "sensor_msgs/msg/CompressedImage", {
            "header": header(stamp_ns, frame_id), "format": fmt, "data": np.frombuffer(data, np.uint8),
        }, stamp_ns, SENSOR_QOS)

    def write_cloud(self, topic: str, stamp_ns: int, cloud: Cloud, frame_id: str, log_ns: int | None = None) -> None:
        """Dense ``sensor_msgs/PointCloud2`` (x y z [intensity] [t] float32).

        ``log_ns`` is the bag time when it differs from the header stamp (a sweep is stamped at
        its start but only complete, and published, at its end)."""
        fields, point_step, data = encode_pointcloud2(cloud)
        self.write(topic, "sensor_msgs/msg/PointCloud2", {
            "header": header(stamp_ns, frame_id), "height": 1, "width": len(cloud),
            "fields": [{"name": n, "offset": o, "datatype": d, "count": c} for n, o, d, c in fields],
            "is_bigendian": False, "point_step": point_step, "row_step": point_step * len(cloud),
            "data": np.frombuffer(data, np.uint8), "is_dense": True,
        }, stamp_ns if log_ns is None else log_ns, SENSOR_QOS)

    def write_imu(self, topic: str, series: ImuSeries, gyro_var: float = 0.0, accel_var: float = 0.0) -> None:
        """One ``sensor_msgs/Imu`` per sample; orientation unknown (covariance[0] = -1, REP-145)."""
        ocov = np.zeros(9)
        ocov[0] = -1.0
        gcov = np.eye(3).ravel() * gyro_var
        acov = np.eye(3).ravel() * accel_var
        for ns, w, a in zip(series.stamps_ns, series.gyro, series.accel):
            self.write(topic, "sensor_msgs/msg/Imu", {
                "header": header(int(ns), series.frame_id),
                "orientation": {"w": 1.0}, "orientation_covariance": ocov,
                "angular_velocity": {"x": w[0], "y": w[1], "z": w[2]}, "angular_velocity_covariance": gcov,
                "linear_acceleration": {"x": a[0], "y": a[1], "z": a[2]}, "linear_acceleration_covariance": acov,
            }, int(ns), SENSOR_QOS)

    def write_tf_static(self, stamp_ns: int, transforms: Sequence[tuple[str, str, np.ndarray]],
                        topic: str = TF_STATIC.path) -> None:
        """``tf2_msgs/TFMessage`` of (parent, child, T_parent_child) on the latched static topic."""
        self.write(topic, "tf2_msgs/msg/TFMessage",
                   {"transforms": [transform_fields(stamp_ns, p, c, T) for p, c, T in transforms]},
                   stamp_ns, LATCHED_QOS)

    def write_camera_info(self, topic: str, stamp_ns: int, K: np.ndarray, width: int, height: int,
                          frame_id: str, D: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0)) -> None:
        """``sensor_msgs/CameraInfo`` of a pinhole camera (plumb_bob, no rectification)."""
        P = np.zeros((3, 4))
        P[:3, :3] = K
        self.write(topic, "sensor_msgs/msg/CameraInfo", {
            "header": header(stamp_ns, frame_id), "height": height, "width": width,
            "distortion_model": "plumb_bob", "d": list(D), "k": np.asarray(K, float).ravel(),
            "r": np.eye(3).ravel(), "p": P.ravel(),
        }, stamp_ns, RELIABLE_QOS)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag: type, message count and the recorded QoS profiles (may be empty)."""

    name: str
    msgtype: str
    count: int
    qos: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class BagInfo:
    """What a bag holds: topics, time span (ns) and duration (s)."""

    path: str
    topics: tuple[TopicSummary, ...]
    start_ns: int
    end_ns: int
    message_count: int

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) * 1e-9

    def topic(self, name: str) -> TopicSummary:
        """The summary of ``name``; an :class:`InputError` listing the topics if absent."""
        for t in self.topics:
            if t.name == name:
                return t
        raise InputError(f"topic {name!r} is not in {self.path}; it has: {[t.name for t in self.topics]}")


def open_bag(path: str | Path) -> AnyReader:
    """An open reader of a rosbag2 (mcap or sqlite3) bag; anything unreadable is an :class:`InputError`."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"bag not found: {p}")
    try:
        reader = AnyReader([p], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable files
        raise InputError(f"cannot read bag {p}: {exc}") from exc
    return reader


def _qos_dict(q: Any) -> dict[str, Any]:
    if isinstance(q, Qos):
        return {"history": q.history.name, "depth": q.depth, "reliability": q.reliability.name,
                "durability": q.durability.name}
    return dict(q) if isinstance(q, Mapping) else {"profile": str(q)}


def bag_info(path: str | Path) -> BagInfo:
    """Topics, types, counts, time span and recorded QoS profiles of a bag."""
    reader = open_bag(path)
    try:
        topics = []
        for name, info in sorted(reader.topics.items()):
            qos: list[dict[str, Any]] = []
            for c in info.connections:
                qos.extend(_qos_dict(q) for q in getattr(c.ext, "offered_qos_profiles", []) or [])
            topics.append(TopicSummary(name, info.msgtype or "", int(info.msgcount), tuple(qos)))
        return BagInfo(str(path), tuple(topics), int(reader.start_time), int(reader.end_time),
                       int(reader.message_count))
    finally:
        reader.close()


def read_messages(path: str | Path, topics: Sequence[str]) -> Iterator[tuple[str, int, Any]]:
    """(topic, bag time ns, deserialized message) for ``topics`` in time order."""
    reader = open_bag(path)
    try:
        have = set(reader.topics)
        missing = [t for t in topics if t not in have]
        if missing:
            raise InputError(f"topic(s) {missing} not in {path}; it has: {sorted(have)}")
        conns = [c for c in reader.connections if c.topic in set(topics)]
        for conn, ns, raw in reader.messages(connections=conns):
            yield conn.topic, int(ns), reader.deserialize(raw, conn.msgtype)
    finally:
        reader.close()


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def image_topic_in(info: "BagInfo", topic: str) -> str:
    """The bag's camera topic for ``topic``: itself, or image_transport's ``<topic>/compressed``.

    Robots record ``sensor_msgs/CompressedImage`` on ``<base>/compressed``; a user who names the
    base topic of a compressed recording gets its images without knowing the convention.
    """
    names = {t.name for t in info.topics}
    if topic in names or f"{topic}/compressed" not in names:
        return topic
    return f"{topic}/compressed"


def rgb_of(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``."""
    if hasattr(msg, "format"):
        return decode_compressed_image(msg.format, msg.data)
    arr = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    return image_to_rgb_array(arr, msg.encoding)


def read_images(path: str | Path, topic: str = IMAGE.path) -> Iterator[tuple[int, np.ndarray]]:
    """(header stamp ns, (H, W, 3) uint8 RGB) for each image on ``topic`` (raw or compressed;
    ``<topic>/compressed`` is read when only that is recorded)."""
    for _, _, msg in read_messages(path, [image_topic_in(bag_info(path), topic)]):
        yield stamp_ns(msg), rgb_of(msg)


def read_clouds(path: str | Path, topic: str = LIDAR.path) -> Iterator[tuple[int, Cloud]]:
    """(header stamp ns, :class:`Cloud`) for each PointCloud2 on ``topic``."""
    for _, _, msg in read_messages(path, [topic]):
        ns = stamp_ns(msg)
        yield ns, decode_pointcloud2(msg.fields, msg.data, msg.point_step, msg.row_step, msg.width,
                                     msg.height, msg.is_bigendian, stamp_s=ns * 1e-9)


def read_imu(path: str | Path, topic: str = IMU.path) -> ImuSeries:
    """All IMU samples on ``topic`` as arrays (header stamps)."""
    stamps, gyro, accel = [], [], []
    frame = "imu"
    for _, _, msg in read_messages(path, [topic]):
        stamps.append(stamp_ns(msg))
        w, a = msg.angular_velocity, msg.linear_acceleration
        gyro.append((w.x, w.y, w.z))
        accel.append((a.x, a.y, a.z))
        frame = msg.header.frame_id
    return ImuSeries(np.asarray(stamps, np.int64), np.asarray(gyro, float).reshape(-1, 3),
                     np.asarray(accel, float).reshape(-1, 3), frame)


@dataclass(frozen=True)
class StaticTransform:
    """One transform from ``/tf_static``: ``T`` maps ``child`` coordinates into ``parent``."""

    parent: str
    child: str
    T: np.ndarray


def read_tf_static(path: str | Path, topic: str = TF_STATIC.path) -> list[StaticTransform]:
    """All static transforms of a bag (later messages override earlier ones per child)."""
    out: dict[str, StaticTransform] = {}
    for _, _, msg in read_messages(path, [topic]):
        for tf in msg.transforms:
            r, t = tf.transform.rotation, tf.transform.translation
            T = make_pose(matrix_from_quat(np.array([r.x, r.y, r.z, r.w])), [t.x, t.y, t.z])
            out[tf.child_frame_id] = StaticTransform(tf.header.frame_id, tf.child_frame_id, T)
    return list(out.values())
