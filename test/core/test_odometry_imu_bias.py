"""The gyroscope bias is estimated: on a simulated drive with a biased, drifting gyro (the
simulator's noise model) the estimate converges to the simulator's true bias."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.odometry.config import LoopConfig, OdometryConfig, extrinsic_list
from lkd_perception.odometry.pipeline import LioPipeline, run_pipeline
from lkd_perception.sim.drive import simulate_drive

pytestmark = pytest.mark.slow


def test_gyro_bias_converges_to_the_simulators():
    d = simulate_drive("loop", 5.0, 3)
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
