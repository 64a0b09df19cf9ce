"""Bag writing and reading round trips (mcap file, mcap and sqlite3 rosbag2 directories)."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.io.bag import (
    BagWriter,
    bag_info,
    header,
    read_clouds,
    read_images,
    read_imu,
    read_messages,
    read_tf_static,
)
from lkd_perception.io.codecs import Cloud
from lkd_perception.io.imu_series import ImuSeries

T0 = 1_700_000_000_000_000_000


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    clouds = [
        Cloud(rng.normal(size=(n, 3)).astype(np.float32), rng.uniform(0, 255, n).astype(np.float32),
              np.sort(rng.uniform(0, 0.1, n)).astype(np.float32))
        for n in (50, 0, 7)
    ]
    imu = ImuSeries(T0 + np.arange(20, dtype=np.int64) * 5_000_000, rng.normal(size=(20, 3)),
                    rng.normal(size=(20, 3)) + [0, 0, 9.81])
    T = make_pose(yaw_pitch_roll_matrix(0.3, -0.1, 0.05), [1.0, -2.0, 0.5])
    return images, clouds, imu, T


def _write(path, storage="mcap"):
    images, clouds, imu, T = _data()
    with BagWriter(path, storage=storage) as w:
        w.write_tf_static(T0, [("base_link", "lidar", T), ("base_link", "imu", np.eye(4))])
        w.write_imu("/imu/data", imu)
        for k, (img, cloud) in enumerate(zip(images, clouds)):
            ns = T0 + k * 100_000_000
            w.write_camera_info(
                "/camera/camera_info", ns, np.array([[500, 0, 8], [0, 500, 6], [0, 0, 1.0]]), 16, 12, "cam"
            )
            w.write_image("/camera/image_raw", ns, img, "cam")
            w.write_cloud("/lidar/points", ns, cloud, "lidar", log_ns=ns + 100_000_000)
        w.write(
            "/lkd/detections",
            "vision_msgs/msg/Detection2DArray",
            {
                "header": header(T0, "cam"),
                "detections": [
                    {
                        "bbox": {
                            "center": {"position": {"x": 3.0, "y": 4.0}, "theta": 0.5},
                            "size_x": 10.0,
                            "size_y": 2.0,
                        },
                        "results": [{"hypothesis": {"class_id": "line", "score": 0.9}}],
                    }
                ],
            },
            T0,
        )
        w.write(
            "/lkd/odometry",
            "nav_msgs/msg/Odometry",
            {"header": header(T0, "odom"), "child_frame_id": "base_link", "pose": {"pose": {"position": {"x": 1.0}}}},
            T0,
        )


@pytest.mark.parametrize("name,storage", [("drive.mcap", "mcap"), ("bagdir", "mcap"), ("bagdir", "sqlite3")])
def test_bag_round_trip_is_exact(tmp_path, name, storage):
    path = tmp_path / name
    _write(path, storage)
    images, clouds, imu, T = _data()
    got = list(read_images(path, "/camera/image_raw"))
    assert [ns for ns, _ in got] == [T0, T0 + 100_000_000, T0 + 200_000_000]
    for (ns, img), ref in zip(got, images):
        assert img.dtype == np.uint8 and np.array_equal(img, ref)
    got_clouds = list(read_clouds(path, "/lidar/points"))
    assert len(got_clouds) == 3
    for (_, c), ref in zip(got_clouds, clouds):
        assert np.array_equal(c.xyz, ref.xyz)
        assert np.array_equal(c.intensity, ref.intensity)
        assert np.array_equal(c.time, ref.time)
    r = read_imu(path, "/imu/data")
    assert np.array_equal(r.stamps_ns, imu.stamps_ns)
    assert np.array_equal(r.gyro, imu.gyro) and np.array_equal(r.accel, imu.accel)
    assert r.frame_id == "imu"
    tfs = {t.child: t for t in read_tf_static(path)}
    assert tfs["lidar"].parent == "base_link"
    assert np.allclose(tfs["lidar"].T, T, atol=1e-12)
    ((_, _, det),) = list(read_messages(path, ["/lkd/detections"]))
    d = det.detections[0]
    assert (d.bbox.center.position.x, d.bbox.center.theta, d.bbox.size_x) == (3.0, 0.5, 10.0)
    assert d.results[0].hypothesis.class_id == "line"
    ((_, _, odo),) = list(read_messages(path, ["/lkd/odometry"]))
    assert odo.pose.pose.position.x == 1.0 and odo.pose.pose.orientation.w == 1.0


def test_messages_come_in_time_order(tmp_path):
    path = tmp_path / "drive.mcap"
    _write(path)
    stamps = [ns for _, ns, _ in read_messages(path, ["/imu/data", "/lidar/points", "/camera/image_raw"])]
    assert stamps == sorted(stamps)


def test_bag_info_lists_topics_counts_and_qos(tmp_path):
    path = tmp_path / "drive.mcap"
    _write(path)
    info = bag_info(path)
    assert {t.name for t in info.topics} == {
        "/tf_static",
        "/imu/data",
        "/camera/camera_info",
        "/camera/image_raw",
        "/lidar/points",
        "/lkd/detections",
        "/lkd/odometry",
    }
    assert info.topic("/imu/data").count == 20
    assert info.topic("/lidar/points").msgtype == "sensor_msgs/msg/PointCloud2"
    assert info.topic("/tf_static").qos[0]["durability"] == "TRANSIENT_LOCAL"
    assert info.topic("/camera/image_raw").qos[0]["reliability"] == "BEST_EFFORT"
    assert info.start_ns == T0 and info.duration_s == pytest.approx(0.3, abs=1e-6)


def test_missing_topic_is_a_clear_error(tmp_path):
    path = tmp_path / "drive.mcap"
    _write(path)
    with pytest.raises(InputError, match=r"/camera/image_rect.*not in.*/camera/image_raw"):
        list(read_images(path, "/camera/image_rect"))
    with pytest.raises(InputError, match="it has"):
        bag_info(path).topic("/nope")


def test_unreadable_or_absent_bag_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        bag_info(tmp_path / "none.mcap")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all")
    with pytest.raises(InputError, match="cannot read"):
        bag_info(junk)


def test_writer_refuses_to_overwrite_and_checks_types(tmp_path):
    path = tmp_path / "drive.mcap"
    _write(path)
    with pytest.raises(InputError, match="exists"):
        BagWriter(path)
    with BagWriter(tmp_path / "b.mcap") as w:
        with pytest.raises(InputError, match="unknown message type"):
            w.write("/x", "nope_msgs/msg/Nothing", {}, T0)
        with pytest.raises(InputError, match="no field"):
            w.write("/y", "std_msgs/msg/Header", {"frame": "x"}, T0)
