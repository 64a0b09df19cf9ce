"""The message type store used to read and write bags, and a generic message builder.

rosbags' LATEST store knows the common_interfaces and tf2_msgs but not vision_msgs, whose
definitions (vision_msgs 4.x, field for field) are registered here from message text, so
Detection2DArray outputs can be recorded and replayed without a ROS install.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Mapping

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from lkd_perception.common.errors import InputError

# vision_msgs 4.x definitions (comments stripped)
_VISION_MSGS: dict[str, str] = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/BoundingBox2DArray": "std_msgs/Header header\nvision_msgs/BoundingBox2D[] boxes\n",
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "vision_msgs/msg/BoundingBox3DArray": "std_msgs/Header header\nvision_msgs/BoundingBox3D[] boxes\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox2D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "vision_msgs/msg/Detection3D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox3D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections\n",
    "vision_msgs/msg/Classification": "std_msgs/Header header\nvision_msgs/ObjectHypothesis[] results\n",
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": (
        "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n"
    ),
}

_TF2_MSGS: dict[str, str] = {
    "tf2_msgs/msg/TFMessage": "geometry_msgs/TransformStamped[] transforms\n",
}


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """rosbags' latest ROS 2 store plus vision_msgs (and tf2_msgs where missing)."""
    store = get_typestore(Stores.LATEST)
    extra: dict[str, Any] = {}
    for name, text in {**_TF2_MSGS, **_VISION_MSGS}.items():
        if name not in store.types:
            extra.update(get_types_from_msg(text, name))
    store.register(extra)
    return store


def typestore_for(msgtypes: Iterable[str]) -> Typestore:
    """:func:`typestore`, refusing (InputError) any of ``msgtypes`` it does not know: what a
    recorder needs before it creates its output.

    It knows every message package the ROS wheels install (their definitions are rosbags' or, for
    vision_msgs, ours), so no ``.msg`` file is read from a ROS installation.
    """
    store = typestore()
    unknown = sorted({t for t in msgtypes if t not in store.fielddefs})
    if unknown:
        raise InputError(f"message type(s) {unknown} cannot be recorded: no definition in {Stores.LATEST.name} "
                         f"or vision_msgs")
    return store


def _default(store: Typestore, node: tuple) -> Any:
    kind, info = int(node[0]), node[1]
    if kind == 1:  # BASE
        name = info[0]
        if name == "string":
            return ""
        if name == "bool":
            return False
        return 0.0 if name in ("float32", "float64") else 0
    if kind == 2:  # NAME
        return build_message(info, {})
    if kind == 3:  # ARRAY
        sub, count = info
        if int(sub[0]) == 1 and sub[1][0] in _NP:
            return np.zeros(count, _NP[sub[1][0]])
        return [_default(store, sub) for _ in range(count)]
    # SEQUENCE
    sub = info[0]
    if int(sub[0]) == 1 and sub[1][0] in _NP:
        return np.zeros(0, _NP[sub[1][0]])
    return []


_NP = {
    "bool": np.bool_, "int8": np.int8, "uint8": np.uint8, "byte": np.uint8, "char": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def _convert(store: Typestore, node: tuple, value: Any) -> Any:
    kind, info = int(node[0]), node[1]
    if kind == 1:
        name = info[0]
        if name == "string":
            return str(value)
        if name == "bool":
            return bool(value)
        if name in ("float32", "float64"):
            return float(value)
        return int(value)
    if kind == 2:
        return build_message(info, value) if isinstance(value, Mapping) else value
    sub = info[0]
    if int(sub[0]) == 1 and sub[1][0] in _NP:
        return np.asarray(value, dtype=_NP[sub[1][0]]).reshape(-1)
    return [_convert(store, sub, v) for v in value]


def build_message(msgtype: str, fields: Mapping[str, Any]) -> Any:
    """A message object of ``msgtype`` from a (nested) mapping; missing fields take zero values.

    Nested messages may be given as mappings or as message objects, sequences of numbers as
    lists or numpy arrays. ``builtin_interfaces/msg/Time`` also accepts ``{"ns": int}``.
    """
    store = typestore()
    if msgtype not in store.types:
        raise InputError(f"unknown message type {msgtype!r}")
    if msgtype == "builtin_interfaces/msg/Time" and "ns" in fields:
        ns = int(fields["ns"])
        fields = {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}
    if msgtype == "geometry_msgs/msg/Quaternion" and "w" not in fields:
        fields = {**fields, "w": 1.0}  # the .msg default: an identity rotation, not a zero quaternion
    _, defs = store.fielddefs[msgtype]
    names = [n for n, _ in defs]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise InputError(f"{msgtype} has no field(s) {unknown}; fields: {names}")
    kwargs = {}
    for name, node in defs:
        kwargs[name] = _convert(store, node, fields[name]) if name in fields else _default(store, node)
    return store.types[msgtype](**kwargs)
