"""Message <-> numpy conversions: property-based round trips over encodings, sizes, paddings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image, PointCloud2, PointField

from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.io import messages
from lkd_perception.io.codecs import POINTFIELD_DTYPES
from lkd_perception.nodes.conversions import (
    Cloud,
    ConversionError,
    cloud_to_pointcloud2,
    image_to_numpy,
    image_to_rgb,
    ns_to_stamp,
    numpy_to_image,
    pointcloud2_to_cloud,
    ros_message,
    stamp_to_ns,
)

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1, "uyvy": 2, "yuyv": 2, "yuv422": 2}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pixels(rng: np.random.Generator, enc: str, h: int, w: int) -> np.ndarray:
    c = CHANNELS[enc]
    dtype = np.uint16 if enc == "mono16" else np.uint8
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def _padded_image(arr: np.ndarray, enc: str, pad: int, bigendian: bool) -> Image:
    """Build an Image by hand with ``pad`` bytes of row padding, as a driver might send it."""
    h, w = arr.shape[:2]
    a = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@FAST
@given(
    enc=st.sampled_from(sorted(CHANNELS)),
    h=st.integers(1, 24),
    half_w=st.integers(1, 16),
    pad=st.integers(0, 13),
    bigendian=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_image_round_trip_with_padding(enc, h, half_w, pad, bigendian, seed):
    w = 2 * half_w
    arr = _pixels(np.random.default_rng(seed), enc, h, w)
    decoded = image_to_numpy(_padded_image(arr, enc, pad, bigendian))
    assert decoded.dtype == arr.dtype and np.array_equal(decoded, arr)
    again = image_to_numpy(numpy_to_image(decoded, enc))
    assert np.array_equal(again, arr)
    rgb = image_to_rgb(numpy_to_image(arr, enc))
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8


def test_rgb_views_agree_across_encodings():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    bgr = rgb[..., ::-1].copy()
    rgba = np.concatenate([rgb, np.full((4, 6, 1), 7, np.uint8)], axis=2)
    bgra = np.concatenate([bgr, np.full((4, 6, 1), 7, np.uint8)], axis=2)
    for arr, enc in [(rgb, "rgb8"), (bgr, "bgr8"), (rgba, "rgba8"), (bgra, "bgra8")]:
        assert np.array_equal(image_to_rgb(numpy_to_image(arr, enc)), rgb), enc
    mono16 = np.array([[0x1234, 0xFF00]], np.uint16)
    assert image_to_rgb(numpy_to_image(mono16, "mono16"))[0, :, 0].tolist() == [0x12, 0xFF]
    # a grey UYVY image (U = V = 128) decodes to grey RGB
    uyvy = np.zeros((2, 4, 2), np.uint8)
    uyvy[..., 0] = 128  # U, V alternate on even/odd pixels: neutral chroma
    uyvy[..., 1] = 100  # Y
    out = image_to_rgb(numpy_to_image(uyvy, "uyvy")).astype(int)
    assert np.abs(out - out[..., :1]).max() <= 1


@pytest.mark.parametrize(
    "msg, fragment",
    [
        (Image(height=2, width=2, encoding="bayer_rggb8", step=2, data=bytes(4)), "unsupported image encoding"),
        (Image(height=2, width=2, encoding="rgb8", step=5, data=bytes(12)), "step 5 is smaller"),
        (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(7)), "needs 12"),
        (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), "no pixels"),
        (Image(height=2, width=3, encoding="yuyv", step=6, data=bytes(12)), "even width"),
    ],
)
def test_bad_images_raise_one_clear_error(msg, fragment):
    with pytest.raises(ConversionError, match=fragment):
        image_to_rgb(msg)


# -- point clouds -----------------------------------------------------------------------------
_EXTRA = st.sampled_from([None, "intensity"])


@FAST
@given(
    n=st.integers(0, 40),
    height=st.sampled_from([1, 2]),
    order_seed=st.integers(0, 1000),
    gap=st.integers(0, 6),
    tail_pad=st.integers(0, 9),
    row_pad=st.integers(0, 11),
    with_intensity=st.booleans(),
    time_kind=st.sampled_from([None, "float", "uint32_ns"]),
    bigendian=st.booleans(),
    nan_frac=st.floats(0, 0.5),
)
def test_pointcloud_any_layout(n, height, order_seed, gap, tail_pad, row_pad, with_intensity, time_kind,
                               bigendian, nan_frac):
    rng = np.random.default_rng(order_seed)
    width = n
    total = width * height
    xyz = rng.normal(size=(total, 3)).astype(np.float32) * 10
    bad = rng.random(total) < nan_frac
    xyz[bad, rng.integers(0, 3, size=bad.sum())] = np.where(rng.random(bad.sum()) < 0.5, np.nan, np.inf)
    inten = rng.random(total).astype(np.float32) * 100
    t_s = np.sort(rng.random(total)).astype(np.float32) * 0.1
    cols = [("x", 7, xyz[:, 0]), ("y", 7, xyz[:, 1]), ("z", 7, xyz[:, 2])]
    if with_intensity:
        cols.append(("intensity", 7, inten))
    if time_kind == "float":
        cols.append(("time", 7, t_s))
    elif time_kind == "uint32_ns":
        cols.append(("t", 6, np.round(t_s.astype(np.float64) * 1e9).astype(np.uint32)))
    order = rng.permutation(len(cols))
    offset, fields, formats, offsets = 0, [], [], []
    endian = ">" if bigendian else "<"
    for i in order:
        name, dt, _ = cols[i]
        offset += gap
        fields.append(PointField(name=name, offset=offset, datatype=dt, count=1))
        formats.append(endian + POINTFIELD_DTYPES[dt])
        offsets.append(offset)
        offset += np.dtype(POINTFIELD_DTYPES[dt]).itemsize
    point_step = offset + tail_pad
    dtype = np.dtype({"names": [cols[i][0] for i in order], "formats": formats, "offsets": offsets,
                      "itemsize": point_step})
    rec = np.zeros(total, dtype=dtype)
    for name, _, values in cols:
        rec[name] = values
    row_bytes = rec.view(np.uint8).reshape(height, width * point_step) if total else np.zeros((height, 0), np.uint8)
    rows = np.concatenate([row_bytes, np.zeros((height, row_pad), np.uint8)], axis=1)
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=bigendian, point_step=point_step,
                      row_step=width * point_step + row_pad, is_dense=False)
    msg.data = rows.tobytes()

    cloud = pointcloud2_to_cloud(msg)
    keep = np.isfinite(xyz).all(axis=1)
    assert np.array_equal(cloud.xyz, xyz[keep])
    if with_intensity:
        assert np.array_equal(cloud.intensity, inten[keep])
    else:
        assert cloud.intensity is None
    if time_kind is None:
        assert cloud.time is None
    else:
        assert np.allclose(cloud.time, t_s[keep], atol=1e-6)
    back = pointcloud2_to_cloud(cloud_to_pointcloud2(cloud))
    assert np.array_equal(back.xyz, cloud.xyz)


def test_bad_clouds_raise_one_clear_error():
    base = dict(height=1, width=2, point_step=12, row_step=24, is_bigendian=False)
    xy = [PointField(name="x", offset=0, datatype=7, count=1), PointField(name="y", offset=4, datatype=7, count=1)]
    with pytest.raises(ConversionError, match=r"lacks field\(s\) \['z'\]"):
        pointcloud2_to_cloud(PointCloud2(fields=xy, data=bytes(24), **base))
    xyz = xy + [PointField(name="z", offset=8, datatype=7, count=1)]
    with pytest.raises(ConversionError, match="need 24"):
        pointcloud2_to_cloud(PointCloud2(fields=xyz, data=bytes(20), **base))
    with pytest.raises(ConversionError, match="exceeds point_step"):
        pointcloud2_to_cloud(PointCloud2(fields=xyz + [PointField(name="i", offset=10, datatype=7, count=1)],
                                         data=bytes(24), **base))
    with pytest.raises(ConversionError, match="unknown PointField datatype"):
        pointcloud2_to_cloud(PointCloud2(fields=[PointField(name="x", offset=0, datatype=42, count=1)] + xyz[1:],
                                         data=bytes(24), **base))
    empty = pointcloud2_to_cloud(PointCloud2(fields=xyz, height=1, width=0, point_step=12, row_step=0))
    assert len(empty) == 0


# -- builders ---------------------------------------------------------------------------------
def test_builders():
    stamp = ns_to_stamp(1_700_000_000_123_456_789)
    assert stamp_to_ns(stamp) == 1_700_000_000_123_456_789
    arr = messages.detection2d_array(
        ros_message,
        stamp,
        "camera",
        np.array([[10.0, 20.0]]),
        np.array([[4.0, 2.0]]),
        np.array([0.5]),
        np.array([0.9]),
        ["car"],
    )
    d = arr.detections[0]
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.theta) == (10.0, 20.0, 0.5)
    assert d.results[0].hypothesis.class_id == "car" and d.results[0].hypothesis.score == pytest.approx(0.9)
    with pytest.raises(ConversionError):
        messages.detection2d_array(
            ros_message, stamp, "camera", np.zeros((2, 2)), np.zeros((1, 2)), None, np.zeros(1), ["a"]
        )
    T = make_pose(yaw_pitch_roll_matrix(0.3, 0.1, -0.2), [1.0, 2.0, 3.0])
    odo = messages.odometry_msg(ros_message, stamp, "odom", "base_link", T, twist_linear=np.array([1.0, 0, 0]))
    q = odo.pose.pose.orientation
    assert odo.child_frame_id == "base_link" and odo.pose.pose.position.z == 3.0
    assert np.isclose(q.x**2 + q.y**2 + q.z**2 + q.w**2, 1.0)
    path = messages.path_msg(ros_message, stamp, "map", [stamp, stamp], [T, np.eye(4)])
    assert len(path.poses) == 2 and path.poses[1].pose.orientation.w == 1.0
    tf = messages.tf_message(ros_message, [messages.transform_stamped(ros_message, stamp, "map", "odom", T)])
    assert tf.transforms[0].child_frame_id == "odom" and tf.transforms[0].transform.translation.y == 2.0
    # an empty scan is a message of zero points and comes back empty; a cloud of the wrong shape is refused
    empty = cloud_to_pointcloud2(Cloud(np.zeros((0, 3), np.float32)))
    assert empty.width * empty.height == 0 and len(empty.data) == 0 and len(pointcloud2_to_cloud(empty)) == 0
    with pytest.raises(ConversionError, match=r"xyz must be \(N, 3\)"):
        Cloud(np.zeros((4, 2), np.float32))
