"""A real Ouster OS1-128 capture (3 frames at 10 Hz, IMU; the Ouster SDK's sample data) decoded
by our own pcap reader, laid out as the Ouster ROS driver's PointCloud2 and run through the
odometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lkd_perception.io.codecs import decode_pointcloud2
from lkd_perception.io.ouster import OusterMetadata, load_frames, ouster_pointcloud2, read_ouster_pcap
from lkd_perception.odometry.config import LoopConfig, OdometryConfig
from lkd_perception.odometry.pipeline import LioPipeline, OdometryHealth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odometry"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "real_lidar" / "ouster"


@pytest.fixture(scope="module")
def clip():
    meta = OusterMetadata.load(FIXTURES / "ouster_os1_128.json")
    frames, imu = load_frames(FIXTURES / "ouster_os1_128.npz")
    return meta, frames, imu


def _clouds(meta, frames):
    out = []
    for f in frames:
        fields, step, width, height, data = ouster_pointcloud2(f, meta)
        out.append((f.stamp_ns, fields, step, width, height, data))
    return out


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared data folder with the source pcap is absent")
def test_fixture_is_what_our_reader_decodes_from_the_pcap(clip):
    meta, frames, imu = clip
    src_frames, src_imu = read_ouster_pcap(SHARED / "OS-1-128_v2.3.0_1024x10_lb_n3.pcap",
                                           OusterMetadata.load(SHARED / "OS-1-128_v2.3.0_1024x10.json"))
    assert [f.frame_id for f in src_frames] == [f.frame_id for f in frames] == [1795, 1796, 1797]
    for a, b in zip(src_frames, frames):
        assert np.array_equal(a.range_mm, b.range_mm) and np.array_equal(a.timestamp_ns, b.timestamp_ns)
        assert np.array_equal(a.reflectivity, b.reflectivity) and np.array_equal(a.nir, b.nir)
    assert np.array_equal(src_imu.stamps_ns, imu.stamps_ns) and np.allclose(src_imu.accel, imu.accel)


def test_frames_in_the_ouster_driver_layout(clip):
    meta, frames, imu = clip
    stamp, fields, step, width, height, data = _clouds(meta, frames)[0]
    assert (step, width, height) == (48, 1024, 128) and len(data) == 48 * 1024 * 128
    assert [f[0] for f in fields] == ["x", "y", "z", "intensity", "t", "reflectivity", "ring", "ambient", "range"]
    cloud = decode_pointcloud2(fields, data, step, step * width, width, height, False, stamp * 1e-9)
    r = np.linalg.norm(cloud.xyz, axis=1)
    returns = r > 0
    assert 0.75 < returns.mean() < 0.9  # about 82 % of the pixels have a return; the rest are zeros
    # one rotation: column times span 0 .. ~100 ms after the stamp (the first column)
    assert cloud.time.min() == 0.0 and 0.098 < cloud.time.max() < 0.1
    # a car-mounted sensor: the ground about 2 m below, ranges out to tens of metres
    assert -2.6 < np.percentile(cloud.xyz[returns, 2], 2) < -1.8 and np.percentile(r[returns], 95) > 25
    # the IMU at 100 Hz over the clip, gravity in its accelerometer
    assert len(imu.stamps_ns) == 30 and abs(np.linalg.norm(imu.accel.mean(axis=0)) - 9.8) < 1.5


def test_odometry_on_the_real_clip_agrees_with_the_sdk_odometry(clip):
    meta, frames, imu = clip
    pipe = LioPipeline(OdometryConfig(loop=LoopConfig(enabled=False)))
    k, poses = 0, []
    for stamp, fields, step, width, height, data in _clouds(meta, frames):
        while k < len(imu.stamps_ns) and imu.stamps_ns[k] <= stamp + 100_000_000:
            pipe.add_imu(int(imu.stamps_ns[k]), imu.gyro[k], imu.accel[k])
            k += 1
        r = pipe.add_scan(
            stamp, decode_pointcloud2(fields, data, step, step * width, width, height, False, stamp * 1e-9)
        )
        assert r.health is not OdometryHealth.DEGRADED, r.summary
        poses.append(r.pose)
    # the poses shipped with the capture (the SDK's own odometry, not ground truth): 0.245 and
    # 0.498 m forward; we measured 0.234 and 0.485 m
    ref = np.loadtxt(FIXTURES / "ouster_os1_128_poses_kitti.txt").reshape(-1, 3, 4)
    ours = np.array([p[:3, 3] for p in poses])
    assert np.abs(ours - ref[:, :, 3]).max() < 0.03, ours
