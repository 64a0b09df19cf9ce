"""PointCloud2 layouts of the common LiDAR drivers, decoded and deskewed.

Each test builds one sweep byte for byte in a driver's layout (field names, types, offsets,
point_step, organised or not, how it marks missing returns, how it stamps time) of a static room
seen from a sensor moving with a known twist, decodes it with our codec and deskews it with that
twist: every point must land back where the room is at the stamp, and without the deskew they
would be off by the motion (up to ~0.8 m here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lkd_perception.io.codecs import decode_pointcloud2
from lkd_perception.odometry.motion import Twist, deskew

STAMP_NS = 1_733_212_800_123_456_789  # an epoch time with all nanosecond digits in use
SWEEP_S = 0.1
TWIST = Twist(angular=np.array([0.02, -0.01, 0.8]), linear=np.array([8.0, 0.5, 0.1]))
F32, F64, U8, U16, U32 = 7, 8, 2, 4, 6
_NP = {F32: "<f4", F64: "<f8", U8: "u1", U16: "<u2", U32: "<u4"}


@dataclass(frozen=True)
class Layout:
    fields: tuple[tuple[str, int, int], ...]  # name, offset, datatype
    point_step: int


# ouster-ros (legacy/default point): PCL point4D + intensity, t, reflectivity, ring, ambient, range, 16-byte aligned
OUSTER = Layout((("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 16, F32), ("t", 20, U32),
                 ("reflectivity", 24, U16), ("ring", 26, U16), ("ambient", 28, U16), ("range", 32, U32)), 48)
# velodyne_pointcloud (ROS 2) XYZIRT: packed fields
VELODYNE = Layout((("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32), ("ring", 16, U16),
                   ("time", 18, F32)), 22)
# HesaiLidar_ROS_2.0: packed, intensity uint8, absolute float64 seconds
HESAI = Layout((("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, U8), ("ring", 13, U16),
                ("timestamp", 15, F64)), 23)
# livox_ros_driver2 PointXYZRTLT: packed, absolute float64 nanoseconds
LIVOX2 = Layout((("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32), ("tag", 16, U8), ("line", 17, U8),
                 ("timestamp", 18, F64)), 26)
# livox_ros_driver CustomMsg points as a PointCloud2: offset_time uint32 ns after the timebase
LIVOX_CUSTOM = Layout((("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("reflectivity", 12, U8), ("tag", 13, U8),
                       ("line", 14, U8), ("offset_time", 15, U32)), 19)


def _room(rng: np.random.Generator, n: int) -> np.ndarray:
    """Points on the walls, floor and ceiling of a 40 x 30 x 8 m room around the sensor (frame at the stamp)."""
    d = rng.normal(size=(n, 3))
    d[:, 2] *= 0.3
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    half = np.array([20.0, 15.0, 0.0])
    with np.errstate(divide="ignore"):
        t_xy = np.min(np.where(np.abs(d[:, :2]) > 0, half[:2] / np.abs(d[:, :2]), np.inf), axis=1)
        t_z = np.where(d[:, 2] > 0, 6.0 / d[:, 2], np.where(d[:, 2] < 0, 2.0 / -d[:, 2], np.inf))
    return d * np.minimum(t_xy, t_z)[:, None]


def _observed(p0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Where a point of the room is measured at time t in the moving sensor's frame (inverse of deskew)."""
    w = TWIST.angular[None, :] * t[:, None]
    theta = np.linalg.norm(w, axis=1, keepdims=True)
    k = w / np.maximum(theta, 1e-300)  # theta 0 (t = 0): no rotation, any axis
    q = p0 - TWIST.linear[None, :] * t[:, None]
    # rotate by -theta about k (Rodrigues)
    return (
        q * np.cos(theta)
        - np.cross(k, q) * np.sin(theta)
        + k * np.sum(k * q, axis=1, keepdims=True) * (1 - np.cos(theta))
    )


def _pack(layout: Layout, columns: dict[str, np.ndarray]) -> bytes:
    n = len(columns["x"])
    buf = np.zeros(
        n,
        dtype=np.dtype(
            {
                "names": [f[0] for f in layout.fields],
                "formats": [_NP[f[2]] for f in layout.fields],
                "offsets": [f[1] for f in layout.fields],
                "itemsize": layout.point_step,
            }
        ),
    )
    for name, _, _ in layout.fields:
        if name in columns:
            buf[name] = columns[name]
    return buf.tobytes()


def _decode(layout: Layout, data: bytes, width: int, height: int, stamp_ns: int):
    fields = [(name, off, dt, 1) for name, off, dt in layout.fields]
    return decode_pointcloud2(
        fields, data, layout.point_step, layout.point_step * width, width, height, False, stamp_s=stamp_ns * 1e-9
    )


def _check(cloud, p0: np.ndarray, t_true: np.ndarray) -> None:
    assert cloud.time is not None
    np.testing.assert_allclose(cloud.time, t_true, atol=2e-6)  # microseconds, whatever the unit on the wire
    moved = np.linalg.norm(cloud.xyz - p0, axis=1)
    assert moved.max() > 0.5  # the raw sweep is visibly smeared by the motion
    fixed = deskew(cloud.xyz.astype(np.float64), cloud.time.astype(np.float64), TWIST)
    assert np.abs(fixed - p0).max() < 5e-4  # float32 coordinates and times: sub-millimetre


def test_ouster_organised_with_zero_points_for_missing_returns():
    rng = np.random.default_rng(1)
    rings, cols = 16, 256
    col_t = np.arange(cols) * (SWEEP_S / cols)  # one timestamp per column
    t = np.tile(col_t, rings)
    p0 = _room(rng, rings * cols)
    xyz = _observed(p0, t).astype(np.float32)
    missing = rng.random(rings * cols) < 0.15
    xyz[missing] = 0.0  # the Ouster driver writes (0, 0, 0) and range 0 for no return
    data = _pack(
        OUSTER,
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "intensity": rng.random(len(t)) * 100,
            "t": np.round(t * 1e9).astype(np.uint32),
            "ring": np.repeat(np.arange(rings), cols),
            "range": np.where(missing, 0, np.linalg.norm(xyz, axis=1) * 1000).astype(np.uint32),
        },
    )
    cloud = _decode(OUSTER, data, cols, rings, STAMP_NS)
    assert len(cloud) == rings * cols  # zeros are finite: the odometry's min_range drops them
    valid = np.linalg.norm(cloud.xyz, axis=1) > 0
    assert valid.sum() == (~missing).sum()
    _check(cloud.select(valid), p0[~missing], t[~missing].astype(np.float32))


@pytest.mark.parametrize("stamped_at_end", [False, True])
def test_velodyne_unorganised_and_organised_with_nan(stamped_at_end):
    rng = np.random.default_rng(2)
    rings, cols = 16, 180
    t = np.tile(np.arange(cols) * (SWEEP_S / cols), rings)
    # a driver stamping the end of the sweep writes times relative to it (negative); the room is
    # then expected where it is at the end
    stamp_ns = STAMP_NS + (int(SWEEP_S * 1e9) if stamped_at_end else 0)
    rel = (t - (SWEEP_S if stamped_at_end else 0.0)).astype(np.float32)
    p0 = _room(rng, rings * cols)
    xyz = _observed(p0, rel.astype(np.float64)).astype(np.float32)
    cols_ = {
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
        "intensity": np.full(len(t), 7.0),
        "ring": np.repeat(np.arange(rings), cols),
        "time": rel,
    }
    _check(_decode(VELODYNE, _pack(VELODYNE, cols_), len(t), 1, stamp_ns), p0, rel)
    # organised: missing returns as NaN, dropped by the decoder
    xyz_org = xyz.copy()
    missing = rng.random(len(t)) < 0.2
    xyz_org[missing] = np.nan
    cols_.update(x=xyz_org[:, 0], y=xyz_org[:, 1], z=xyz_org[:, 2])
    org = _decode(VELODYNE, _pack(VELODYNE, cols_), cols, rings, stamp_ns)
    assert len(org) == (~missing).sum()
    _check(org, p0[~missing], rel[~missing])


def test_hesai_absolute_float64_seconds():
    rng = np.random.default_rng(3)
    n = 4000
    t = np.sort(rng.random(n)) * SWEEP_S
    t[0] = 0.0  # the driver stamps the cloud with its first point's time
    p0 = _room(rng, n)
    xyz = _observed(p0, t).astype(np.float32)
    data = _pack(
        HESAI,
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "intensity": rng.integers(0, 255, n),
            "ring": rng.integers(0, 32, n),
            "timestamp": STAMP_NS * 1e-9 + t,
        },
    )
    _check(_decode(HESAI, data, n, 1, STAMP_NS), p0, t.astype(np.float32))


def test_livox_driver2_absolute_float64_nanoseconds_in_non_repetitive_order():
    rng = np.random.default_rng(4)
    n = 4000
    t = rng.random(n) * SWEEP_S  # rosette scan: time is not monotonic in azimuth
    p0 = _room(rng, n)
    xyz = _observed(p0, t).astype(np.float32)
    data = _pack(
        LIVOX2,
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "intensity": np.full(n, 10.0),
            "line": rng.integers(0, 4, n),
            "timestamp": STAMP_NS + np.round(t * 1e9),
        },
    )
    _check(_decode(LIVOX2, data, n, 1, STAMP_NS), p0, t.astype(np.float32))


def test_livox_custom_offset_time_nanoseconds():
    rng = np.random.default_rng(5)
    n = 3000
    t = rng.random(n) * SWEEP_S
    p0 = _room(rng, n)
    xyz = _observed(p0, t).astype(np.float32)
    data = _pack(
        LIVOX_CUSTOM,
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "reflectivity": rng.integers(0, 255, n),
            "offset_time": np.round(t * 1e9).astype(np.uint32),
        },
    )
    cloud = _decode(LIVOX_CUSTOM, data, n, 1, STAMP_NS)
    assert cloud.intensity is not None  # reflectivity serves as intensity
    _check(cloud, p0, t.astype(np.float32))
