"""Byte layouts of ``sensor_msgs/Image`` and ``sensor_msgs/PointCloud2``, without ROS.

The same decoding serves live messages (``nodes/conversions.py``, rclpy objects) and recorded
ones (``io`` bag readers, rosbags objects): both expose the same field names, so the functions
here take the plain fields and never a message type. Everything malformed raises
:class:`CodecError` with what was wrong, so a node can report it and keep running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lkd_perception.common.errors import InputError


class CodecError(InputError):
    """An image or point cloud whose bytes do not match its declared layout or encoding."""


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageLayout:
    """How one encoding lays out a pixel: channels per pixel and the numpy dtype of a channel."""

    channels: int
    dtype: str  # numpy dtype name of one channel, little-endian form


# Encodings we accept; aliases map OpenCV-style names onto the ROS ones.
_IMAGE_LAYOUTS: dict[str, ImageLayout] = {
    "rgb8": ImageLayout(3, "u1"),
    "bgr8": ImageLayout(3, "u1"),
    "rgba8": ImageLayout(4, "u1"),
    "bgra8": ImageLayout(4, "u1"),
    "mono8": ImageLayout(1, "u1"),
    "mono16": ImageLayout(1, "u2"),
    "uyvy": ImageLayout(2, "u1"),
    "yuyv": ImageLayout(2, "u1"),
}
_ALIASES = {
    "yuv422": "uyvy",  # sensor_msgs/image_encodings: YUV422 is UYVY byte order
    "yuv422_yuy2": "yuyv",
    "8uc1": "mono8",
    "16uc1": "mono16",
    "8uc3": "bgr8",
    "8uc4": "bgra8",
}

SUPPORTED_IMAGE_ENCODINGS: tuple[str, ...] = tuple(sorted(set(_IMAGE_LAYOUTS) | set(_ALIASES)))


def canonical_encoding(encoding: str) -> str:
    """The canonical name of an encoding (``yuv422`` -> ``uyvy``); raises for unknown ones."""
    enc = encoding.strip().lower()
    enc = _ALIASES.get(enc, enc)
    if enc not in _IMAGE_LAYOUTS:
        raise CodecError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_IMAGE_ENCODINGS)}"
        )
    return enc


def decode_image(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool | int, data: bytes | Any
) -> np.ndarray:
    """The pixels of an Image as an array in the encoding's own layout.

    Returns (H, W) for mono encodings, (H, W, C) otherwise (C=2 for the packed YUV 4:2:2
    formats). Row padding (``step`` larger than the pixel bytes) is removed; 16-bit data is
    returned in native byte order whatever ``is_bigendian`` says.
    """
    enc = canonical_encoding(encoding)
    layout = _IMAGE_LAYOUTS[enc]
    if height <= 0 or width <= 0:
        raise CodecError(f"image has no pixels ({width}x{height})")
    if enc in ("uyvy", "yuyv") and width % 2:
        raise CodecError(f"{encoding} needs an even width, got {width}")
    itemsize = np.dtype(layout.dtype).itemsize
    row_bytes = width * layout.channels * itemsize
    if step < row_bytes:
        raise CodecError(f"step {step} is smaller than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data, dtype=np.uint8)
    needed = step * (height - 1) + row_bytes
    if buf.size < needed:
        raise CodecError(
            f"image data has {buf.size} bytes, {width}x{height} {encoding} with step {step} needs {needed}"
        )
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # last row unpadded
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, step), strides=(step, 1))
    pixels = np.ascontiguousarray(rows[:, :row_bytes])
    order = ">" if is_bigendian else "<"
    arr = pixels.view(np.dtype(order + layout.dtype)).astype(layout.dtype, copy=False)
    if layout.channels == 1:
        return arr.reshape(height, width)
    return arr.reshape(height, width, layout.channels)


def image_to_rgb_array(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded image (from :func:`decode_image`) to (H, W, 3) uint8 RGB."""
    import cv2

    enc = canonical_encoding(encoding)
    if enc == "rgb8":
        return arr
    if enc == "bgr8":
        return np.ascontiguousarray(arr[..., ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(arr[..., :3])
    if enc == "bgra8":
        return np.ascontiguousarray(arr[..., 2::-1])
    if enc == "mono8":
        return np.repeat(arr[..., None], 3, axis=2)
    if enc == "mono16":
        return np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2)
    code = cv2.COLOR_YUV2RGB_UYVY if enc == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


#: ``sensor_msgs/CompressedImage`` formats we write and read (image_transport's plugin names)
COMPRESSED_FORMATS = ("jpeg", "png")


def compressed_codec(fmt: str) -> str:
    """``jpeg`` or ``png`` from a CompressedImage ``format`` field.

    image_transport writes ``"rgb8; jpeg compressed bgr8"``; other drivers write just ``"jpeg"``,
    ``"jpg"`` or ``"png"``. The pixel order inside the stream is the codec's own (OpenCV decodes
    to BGR), so only the codec name matters.
    """
    text = fmt.strip().lower()
    for name, codec in (("jpeg", "jpeg"), ("jpg", "jpeg"), ("png", "png")):
        if name in text:
            return codec
    raise CodecError(f"unsupported compressed image format {fmt!r}; supported: {', '.join(COMPRESSED_FORMATS)}")


def decode_compressed_image(fmt: str, data: bytes | Any) -> np.ndarray:
    """A CompressedImage's pixels as (H, W, 3) uint8 RGB (grey and 16-bit streams converted)."""
    import cv2

    compressed_codec(fmt)
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise CodecError(f"compressed image ({fmt!r}, {buf.size} bytes) does not decode")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_compressed_image(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """(``format`` field, data) of a CompressedImage holding an (H, W, 3) uint8 RGB image.

    The format string is image_transport's, so ``ros2 bag`` tools and rqt show it as usual.
    """
    import cv2

    if codec not in COMPRESSED_FORMATS:
        raise CodecError(f"codec must be one of {COMPRESSED_FORMATS}, got {codec!r}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise CodecError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise CodecError(f"OpenCV could not encode a {rgb.shape} image as {codec}")
    return f"rgb8; {codec} compressed bgr8", buf.tobytes()


def encode_image(arr: np.ndarray, encoding: str) -> tuple[int, bytes]:
    """Bytes and step of an array in the encoding's layout (little-endian, no row padding)."""
    enc = canonical_encoding(encoding)
    layout = _IMAGE_LAYOUTS[enc]
    want_ndim = 2 if layout.channels == 1 else 3
    if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[2] != layout.channels):
        raise CodecError(f"array of shape {arr.shape} does not fit encoding {encoding}")
    if arr.dtype != np.dtype(layout.dtype):
        raise CodecError(f"array dtype {arr.dtype} does not fit encoding {encoding} ({layout.dtype})")
    out = np.ascontiguousarray(arr, dtype=np.dtype("<" + layout.dtype))
    step = arr.shape[1] * layout.channels * out.itemsize
    return step, out.tobytes()


# ---------------------------------------------------------------------------------------------
# Point clouds
# ---------------------------------------------------------------------------------------------

# sensor_msgs/PointField datatype constants -> numpy dtype names
POINTFIELD_DTYPES: dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT32 = 7

_TIME_FIELDS = ("t", "time", "offset_time", "timestamp")
_INTENSITY_FIELDS = ("intensity", "i", "reflectivity")


@dataclass(frozen=True)
class Cloud:
    """A point cloud: ``xyz`` (N, 3) float32 metres in the sensor frame; optional per-point
    ``intensity`` (N,) float32 and ``time`` (N,) float32 seconds since the scan's stamp."""

    xyz: np.ndarray
    intensity: np.ndarray | None = None
    time: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.xyz.shape[0]
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise CodecError(f"xyz must be (N, 3), got {self.xyz.shape}")
        for name in ("intensity", "time"):
            v = getattr(self, name)
            if v is not None and v.shape != (n,):
                raise CodecError(f"{name} must be ({n},), got {v.shape}")

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def select(self, mask: np.ndarray) -> "Cloud":
        """The points where ``mask`` is true (boolean or index array)."""
        return Cloud(
            self.xyz[mask],
            None if self.intensity is None else self.intensity[mask],
            None if self.time is None else self.time[mask],
        )


def _field_tuple(f: Any) -> tuple[str, int, int, int]:
    if isinstance(f, (tuple, list)):
        name, offset, datatype, count = f
    else:
        name, offset, datatype, count = f.name, f.offset, f.datatype, f.count
    return str(name), int(offset), int(datatype), int(count)


def decode_pointcloud2(
    fields: Sequence[Any],
    data: bytes | Any,
    point_step: int,
    row_step: int,
    width: int,
    height: int,
    is_bigendian: bool | int,
    stamp_s: float | None = None,
) -> Cloud:
    """Points of a PointCloud2 as a :class:`Cloud`, whatever the field order, offsets and padding.

    Non-finite points are dropped (organised clouds mark missing returns with NaN; the Ouster
    driver writes zeros instead, which the odometry's ``min_range`` drops). Per-point time is
    taken from ``t``/``time``/``offset_time``/``timestamp`` (see :func:`_relative_seconds`:
    relative integer nanoseconds, relative float seconds, absolute epoch seconds or
    nanoseconds) and made relative to ``stamp_s`` when given, else to the earliest point.
    """
    specs = {}
    for f in fields:
        name, offset, datatype, count = _field_tuple(f)
        if datatype not in POINTFIELD_DTYPES:
            raise CodecError(f"field {name!r} has unknown PointField datatype {datatype}")
        size = np.dtype(POINTFIELD_DTYPES[datatype]).itemsize * max(count, 1)
        if offset < 0 or offset + size > point_step:
            raise CodecError(f"field {name!r} (offset {offset}, {size} bytes) exceeds point_step {point_step}")
        specs[name] = (offset, datatype, count)
    missing = [c for c in ("x", "y", "z") if c not in specs]
    if missing:
        raise CodecError(f"point cloud lacks field(s) {missing}; has {sorted(specs)}")
    n = width * height
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data, dtype=np.uint8)
    if row_step < width * point_step:
        raise CodecError(f"row_step {row_step} < width {width} x point_step {point_step}")
    needed = row_step * (height - 1) + width * point_step
    if buf.size < needed:
        raise CodecError(f"point cloud data has {buf.size} bytes, {width}x{height} points need {needed}")
    if row_step != width * point_step:  # drop row padding
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, width * point_step), strides=(row_step, 1))
        buf = np.ascontiguousarray(rows).reshape(-1)
    else:
        buf = np.ascontiguousarray(buf[: n * point_step])
    order = ">" if is_bigendian else "<"
    names = list(specs)
    dtype = np.dtype(
        {
            "names": names,
            "formats": [order + POINTFIELD_DTYPES[specs[k][1]] for k in names],
            "offsets": [specs[k][0] for k in names],
            "itemsize": point_step,
        }
    )
    rec = buf.view(dtype)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)

    intensity = None
    for name in _INTENSITY_FIELDS:
        if name in specs:
            intensity = rec[name].astype(np.float32)
            break
    time = None
    for name in _TIME_FIELDS:
        if name in specs:
            time = _relative_seconds(rec[name], stamp_s)
            keep &= np.isfinite(time)
            break
    if intensity is not None:
        intensity = np.where(np.isfinite(intensity), intensity, 0.0).astype(np.float32)
    return Cloud(
        np.ascontiguousarray(xyz[keep]),
        None if intensity is None else intensity[keep],
        None if time is None else time[keep],
    )


# An absolute per-point time in a float field, by magnitude (epoch 2001-2286): the unit it is in.
# Livox's driver 2 writes ``timestamp`` as float64 nanoseconds, Hesai's as float64 seconds.
_ABSOLUTE_UNITS = ((1e17, 1e-9), (1e14, 1e-6), (1e11, 1e-3), (1e6, 1.0))


def _relative_seconds(raw: np.ndarray, stamp_s: float | None) -> np.ndarray:
    """Per-point time in seconds after the cloud's stamp, from the drivers' conventions.

    Integer fields are nanoseconds after the stamp (Ouster ``t`` uint32, Livox ``offset_time``
    uint32); float fields are seconds after the stamp (Velodyne ``time`` float32, negative when a
    driver stamps the end of the sweep) unless they are absolute epoch times (Hesai and Livox
    ``timestamp`` float64), which are told by their size and made relative to ``stamp_s`` (else
    to the earliest point). The subtraction is done in float64: epoch seconds in float32 would
    keep only 128 s steps.
    """
    if np.issubdtype(raw.dtype, np.integer):
        return (raw.astype(np.float64) * 1e-9).astype(np.float32)
    t = raw.astype(np.float64)
    finite = t[np.isfinite(t)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    for threshold, unit in _ABSOLUTE_UNITS:
        if peak > threshold:
            ref = stamp_s if stamp_s is not None else float(np.min(finite)) * unit
            if unit != 1.0 and stamp_s is not None:
                # nanoseconds as float64 (1.7e18) keep 256 ns steps; subtract in the raw unit
                return ((t - stamp_s / unit) * unit).astype(np.float32)
            return (t * unit - ref).astype(np.float32)
    return t.astype(np.float32)


def encode_pointcloud2(cloud: Cloud) -> tuple[list[tuple[str, int, int, int]], int, bytes]:
    """Fields, point_step and little-endian bytes of a dense (height 1) PointCloud2.

    Layout: x y z float32, then ``intensity`` and ``t`` float32 when the cloud has them.
    """
    names = ["x", "y", "z"]
    cols = [cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]]
    if cloud.intensity is not None:
        names.append("intensity")
        cols.append(cloud.intensity)
    if cloud.time is not None:
        names.append("t")
        cols.append(cloud.time)
    fields = [(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names)]
    packed = (
        np.stack([np.asarray(c, dtype="<f4") for c in cols], axis=1) if len(cloud) else np.zeros((0, len(names)), "<f4")
    )
    return fields, 4 * len(names), np.ascontiguousarray(packed).tobytes()
