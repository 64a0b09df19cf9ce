"""ROS 2 messages <-> numpy, for the nodes (no cv_bridge: it is not on the pip wheels, and
numpy covers every encoding a camera driver sends).

The byte layouts live in :mod:`lkd_perception.io.codecs` and are shared with the bag readers;
this module only moves fields between rclpy message objects and those codecs. The product's
output messages are built by :mod:`lkd_perception.io.messages` with :func:`ros_message` as the
message factory (the same builders write ``lkd run``'s recordings).
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from lkd_perception.common.errors import InputError
from lkd_perception.io.codecs import (
    Cloud,
    CodecError,
    decode_compressed_image,
    decode_image,
    decode_pointcloud2,
    encode_image,
    encode_pointcloud2,
    image_to_rgb_array,
)

ConversionError = CodecError  # one clear error type for every malformed or unsupported message

__all__ = [
    "Cloud",
    "ConversionError",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_image",
    "pointcloud2_to_cloud",
    "cloud_to_pointcloud2",
    "ros_message",
    "stamp_to_ns",
    "ns_to_stamp",
]


# -- time -------------------------------------------------------------------------------------
def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


# -- images -----------------------------------------------------------------------------------
def image_to_numpy(msg: Image) -> np.ndarray:
    """Pixels in the message's own layout ((H, W) mono, (H, W, C) colour or packed YUV)."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


def image_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """Pixels as (H, W, 3) uint8 RGB, whatever the encoding; JPEG/PNG ``CompressedImage`` too."""
    if isinstance(msg, CompressedImage):
        return decode_compressed_image(msg.format, msg.data)
    return image_to_rgb_array(image_to_numpy(msg), msg.encoding)


def numpy_to_image(arr: np.ndarray, encoding: str, stamp: Time | None = None, frame_id: str = "") -> Image:
    step, data = encode_image(arr, encoding)
    msg = Image()
    msg.header = Header(stamp=stamp or Time(), frame_id=frame_id)
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data
    return msg


# -- point clouds -----------------------------------------------------------------------------
def pointcloud2_to_cloud(msg: PointCloud2) -> Cloud:
    """Points of a PointCloud2 (any field order/padding; NaN and inf points dropped)."""
    stamp_s = stamp_to_ns(msg.header.stamp) * 1e-9
    return decode_pointcloud2(
        msg.fields, msg.data, msg.point_step, msg.row_step, msg.width, msg.height, msg.is_bigendian, stamp_s
    )


def cloud_to_pointcloud2(cloud: Cloud, stamp: Time | None = None, frame_id: str = "") -> PointCloud2:
    fields, point_step, data = encode_pointcloud2(cloud)
    msg = PointCloud2()
    msg.header = Header(stamp=stamp or Time(), frame_id=frame_id)
    msg.height, msg.width = 1, len(cloud)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    msg.is_bigendian = False
    msg.point_step = point_step
    msg.row_step = point_step * len(cloud)
    msg.data = data
    msg.is_dense = True
    return msg


# -- results ----------------------------------------------------------------------------------
# The output messages are built by lkd_perception.io.messages, shared with `lkd run` (which
# writes them to a recording); here they get the rclpy classes.
def ros_message(msgtype: str, **fields) -> object:
    """An rclpy message of ``pkg/msg/Name`` from keyword fields: the nodes' ``make`` for io.messages."""
    return message_class(msgtype)(**fields)


@lru_cache(maxsize=None)
def message_class(msgtype: str) -> type:
    """The rclpy class of ``pkg/msg/Name`` (InputError when this ROS environment lacks it)."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"message type {msgtype} is not available in this ROS environment") from exc
