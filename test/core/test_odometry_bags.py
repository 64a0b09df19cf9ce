"""`lkd odometry` on bags as users record them: LiDAR only (no IMU topic, no /tf_static), and the
LiDAR mounting through a chain of /tf_static frames under other frame names."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from lkd_perception.cli import main
from lkd_perception.common.frames import TransformTree
from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
from lkd_perception.io.bag import BagWriter
from lkd_perception.io.codecs import Cloud
from lkd_perception.io.formats import read_tum
from lkd_perception.odometry.config import extrinsic_list
from lkd_perception.sim.drive import simulate_drive

# the LiDAR of these recordings is mounted yawed by 90 deg, rolled a little and 1.5 m up
T_BASE_LIDAR = make_pose(yaw_pitch_roll_matrix(np.pi / 2, 0.0, 0.05), [0.4, 0.0, 1.5])
T_IMU_SIM_IMU = make_pose(yaw_pitch_roll_matrix(np.pi))


@pytest.fixture(scope="module")
def drive():
    return simulate_drive("loop", 3.0, 0)


def _write(path, drive, *, imu: bool, tf_static: list[tuple[str, str, np.ndarray]] | None, lidar_frame: str) -> None:
    T_sim = drive.extrinsics.T_base_lidar  # the simulator's clouds are in its own lidar frame
    to_ours = pose_inverse(T_BASE_LIDAR) @ T_sim
    with BagWriter(path) as bag:
        if tf_static:
            bag.write_tf_static(drive.scans[0].stamp_ns, tf_static)
        if imu:  # the IMU in its own frame, yawed by 180 deg against the simulator's
            R = T_IMU_SIM_IMU[:3, :3]
            bag.write_imu(
                "/imu/data", replace(drive.imu, gyro=drive.imu.gyro @ R, accel=drive.imu.accel @ R, frame_id="imu_link")
            )
        for s in drive.scans:
            xyz = transform_points(to_ours, s.cloud.xyz.astype(np.float64)).astype(np.float32)
            bag.write_cloud("/lidar/points", s.stamp_ns, Cloud(xyz, s.cloud.intensity, s.cloud.time), lidar_frame)


def _ape(tum, drive) -> float:
    est = read_tum(tum)
    pred = Trajectory(np.round(est.stamps_s * 1e9).astype(np.int64), est.poses)
    return evaluate_trajectory(pred, Trajectory(drive.gt_stamps_ns, drive.gt_poses)).ape_translation_m.rmse


def test_tree_looks_up_through_chains_in_both_directions():
    A = make_pose(yaw_pitch_roll_matrix(0.3), [1.0, 2.0, 0.0])
    B = make_pose(yaw_pitch_roll_matrix(0.0, 0.2), [0.0, 0.0, 1.0])
    C = make_pose(yaw_pitch_roll_matrix(-1.0), [0.5, 0.0, 0.0])
    tree = TransformTree()
    tree.add("base_footprint", "base_link", A)
    tree.add("base_link", "mount", B)
    tree.add("mount", "os_lidar", C)
    tree.add("base_link", "imu_link", C)
    assert np.allclose(tree.lookup("base_link", "os_lidar"), B @ C)
    assert np.allclose(tree.lookup("os_lidar", "base_footprint"), pose_inverse(A @ B @ C))
    assert np.allclose(tree.lookup("imu_link", "os_lidar"), pose_inverse(C) @ B @ C)
    assert tree.lookup("base_link", "camera") is None


@pytest.mark.slow
def test_lidar_only_bag_without_tf_static_runs_with_warnings(tmp_path, drive, caplog):
    bag = tmp_path / "lidar_only.mcap"
    _write(bag, drive, imu=False, tf_static=None, lidar_frame="velodyne")
    (tmp_path / "cfg.yaml").write_text(f"base_T_lidar: {extrinsic_list(T_BASE_LIDAR)}\n")
    out = tmp_path / "est.tum"
    with caplog.at_level(logging.WARNING):
        rc = main(["odometry", str(bag), "--out", str(out), "--config", str(tmp_path / "cfg.yaml")])
    assert rc == 0
    text = caplog.text
    assert "no IMU topic /imu/data: LiDAR-only" in text and "no /tf_static: extrinsics from the config" in text
    assert len(read_tum(out)) == len(drive.scans)
    assert _ape(out, drive) < 0.1


@pytest.mark.slow
def test_mounting_from_a_tf_static_chain_and_frame_overrides(tmp_path, drive, capsys):
    mount = make_pose(yaw_pitch_roll_matrix(0.0, 0.0, 0.05), [0.4, 0.0, 1.0])
    chain = [
        ("chassis", "sensor_mount", mount),
        ("sensor_mount", "os_lidar", pose_inverse(mount) @ T_BASE_LIDAR),
        ("chassis", "imu_link", drive.extrinsics.T_base_imu @ T_IMU_SIM_IMU),
    ]
    bag = tmp_path / "chain.mcap"
    _write(bag, drive, imu=True, tf_static=chain, lidar_frame="os_lidar")
    out = tmp_path / "est.tum"
    capsys.readouterr()
    assert main(["odometry", str(bag), "--out", str(out), "--base-frame", "chassis"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imu"] is True
    assert np.allclose(summary["base_T_lidar"], extrinsic_list(T_BASE_LIDAR), atol=1e-9)
    assert np.allclose(summary["base_T_imu"], extrinsic_list(drive.extrinsics.T_base_imu @ T_IMU_SIM_IMU), atol=1e-9)
    assert _ape(out, drive) < 0.1
    # a wrong --lidar-frame is not in the tree: the config's (identity) mounting, and it shows
    assert (
        main(
            [
                "odometry",
                str(bag),
                "--out",
                str(tmp_path / "b.tum"),
                "--base-frame",
                "chassis",
                "--lidar-frame",
                "nowhere",
                "--no-imu",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["imu"] is False and summary["base_T_lidar"] == [0.0] * 6


@pytest.mark.slow
def test_bag_without_the_lidar_topic_is_a_clear_error(tmp_path, drive, capsys):
    bag = tmp_path / "imu_only.mcap"
    with BagWriter(bag) as w:
        w.write_imu("/imu/data", drive.imu)
    assert main(["odometry", str(bag), "--out", str(tmp_path / "x.tum")]) == 2
    assert "'/lidar/points' is not in" in capsys.readouterr().err
