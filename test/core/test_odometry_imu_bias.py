"""The IMU biases are estimated: on simulated drives with a biased, drifting gyro and
accelerometer (the simulator's noise model) the estimates converge to the simulator's true biases."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.se3 import pose_inverse
from lkd_perception.odometry.config import LoopConfig, OdometryConfig, extrinsic_list
from lkd_perception.odometry.motion import ImuBuffer, InertialState
from lkd_perception.odometry.pipeline import LioPipeline, run_pipeline
from lkd_perception.sim.drive import START_NS, simulate_drive

pytestmark = pytest.mark.slow


def test_gyro_bias_converges_to_the_simulators():
    # 10 s: with the IMU deskewing the sweeps the yaw bias converges more slowly than with the
    # constant-twist deskew (measured on this drive: 17 % of the bias left after 5 s against 5 %,
    # 9 % after 10 s against 4 %; both within 0.1 mrad/s after 30 s)
    d = simulate_drive("loop", 10.0, 3)
    R_base_imu = d.extrinsics.T_base_imu[:3, :3]
    pipe = LioPipeline(
        OdometryConfig(
            base_T_lidar=extrinsic_list(d.extrinsics.T_base_lidar),
            base_T_imu=extrinsic_list(d.extrinsics.T_base_imu),
            loop=LoopConfig(enabled=False),
        )
    )
    run_pipeline(pipe, [(s.stamp_ns, s.cloud) for s in d.scans], d.imu.stamps_ns, d.imu.gyro, d.imu.accel)
    true = R_base_imu @ d.imu_gyro_bias[-1]
    assert np.linalg.norm(true) > 2e-3  # a bias worth estimating (this seed: a few mrad/s)
    err = np.linalg.norm(pipe.inertial.gyro_bias - true)
    assert err < 0.15 * np.linalg.norm(true), (pipe.inertial.gyro_bias, true)


def test_accel_bias_converges_to_the_simulators_given_the_true_motion():
    # the simulator's IMU (white noise, bias random walk, lever arm 0.3 m ahead of base_link) and
    # its exact motion between scans: what is left to separate is bias from gravity and from the
    # lever arm's turn accelerations. A larger initial bias than the default draw, so that all
    # three axes are worth estimating.
    d = simulate_drive("loop", 30.0, 0, accel_bias_init=0.15)
    T_base_imu = d.extrinsics.T_base_imu
    true = T_base_imu[:3, :3] @ d.imu_accel_bias[-1]
    assert np.all(np.abs(true) > 0.03), true
    stamps = np.array([s.stamp_ns for s in d.scans])
    poses = d.trajectory.poses((stamps - START_NS) * 1e-9)
    estimates = {}
    for lever in (True, False):
        imu = ImuBuffer(T_base_imu[:3, :3], horizon_s=60.0, lever_arm=T_base_imu[:3, 3] if lever else None)
        for k, stamp in enumerate(d.imu.stamps_ns):
            imu.add(int(stamp), d.imu.gyro[k], d.imu.accel[k])
        state = InertialState(accel_bias=True, gravity_norm=9.81)
        for k in range(1, len(stamps)):
            pre = imu.preintegrate(int(stamps[k - 1]), int(stamps[k]), state.gyro_bias, state.accel_bias)
            state.update(pre, (pose_inverse(poses[0]) @ poses[k - 1])[:3, :3], pose_inverse(poses[k - 1]) @ poses[k],
                         (stamps[k] - stamps[k - 1]) * 1e-9)
        estimates[lever] = state.accel_bias
    assert np.abs(estimates[True] - true).max() < 0.015, (estimates[True], true)  # measured 0.010
    # the lever arm ignored, turns pass for bias
    assert np.abs(estimates[False] - true).max() > 0.025, (estimates[False], true)  # measured 0.036


def test_accel_bias_converges_to_the_simulators_through_the_pipeline():
    # the same, end to end: the motion comes from registration (its noise is what limits the
    # estimate), on a loop with the default bias draw of seed 0. A minute: the turns of its first
    # 30 s do not yet separate bias from gravity (0.16 m/s^2 off on y then)
    d = simulate_drive("loop", 60.0, 0)
    true = d.extrinsics.T_base_imu[:3, :3] @ d.imu_accel_bias[-1]
    assert np.linalg.norm(true) > 0.05, true
    pipe = LioPipeline(
        OdometryConfig(
            base_T_lidar=extrinsic_list(d.extrinsics.T_base_lidar),
            base_T_imu=extrinsic_list(d.extrinsics.T_base_imu),
            loop=LoopConfig(enabled=False),
            accel_bias=True,
            gravity=9.81,
        )
    )
    run_pipeline(pipe, [(s.stamp_ns, s.cloud) for s in d.scans], d.imu.stamps_ns, d.imu.gyro, d.imu.accel)
    assert np.abs(pipe.inertial.accel_bias - true).max() < 0.03, (pipe.inertial.accel_bias, true)  # measured 0.013
