"""Drive simulation: trajectory smoothness, LiDAR geometry, IMU consistency with the poses."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from lkd_perception.common.errors import ConfigError
from lkd_perception.common.se3 import so3_exp, so3_log
from lkd_perception.sim.drive import START_NS, simulate_drive
from lkd_perception.sim.mesh import merge
from lkd_perception.sim.sensors import imu_kinematics
from lkd_perception.sim.trajectory import GRAVITY
from lkd_perception.sim.world import build_world, static_mesh


@pytest.fixture(scope="module")
def drive():
    # short urban drive, half-resolution LiDAR, noise-free IMU with a known constant bias
    return simulate_drive("urban", seconds=2.0, seed=3, lidar_azimuths=512, imu_noise=False)


@pytest.mark.slow
def test_trajectory_is_smooth_and_within_speed_limits(drive):
    t = np.linspace(0.0, 2.0, 2001)
    v = np.linalg.norm(drive.trajectory.velocity(t)[:, :2], axis=1)
    assert v.min() > 4.5 and v.max() < 15.0
    a = drive.trajectory.acceleration(t)
    assert np.abs(a).max() < 8.0
    # C2: acceleration changes by little between neighbouring samples (no jumps)
    assert np.abs(np.diff(a, axis=0)).max() < 0.05
    # GT poses at 100 Hz agree with the trajectory
    assert drive.gt_poses.shape == (201, 4, 4)
    assert drive.gt_stamps_ns[0] == START_NS
    assert np.allclose(drive.gt_poses[100], drive.trajectory.poses(1.0)[0])


@pytest.mark.slow
def test_lidar_points_lie_on_scene_surfaces(drive):
    sim_world = build_world(drive.config.scenario, drive.config.seed, drive.config.density)
    mesh, _ = static_mesh(sim_world)
    T_base_lidar = drive.extrinsics.T_base_lidar
    for scan in drive.scans[::5]:
        t0 = (scan.stamp_ns - START_NS) * 1e-9
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                            o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        moving = merge([o.mesh_at(t0 + 0.05) for o in sim_world.moving_objects])
        scene.add_triangles(o3d.core.Tensor(moving.vertices.astype(np.float32)),
                            o3d.core.Tensor(moving.triangles.astype(np.uint32)))
        cloud = scan.cloud
        assert len(cloud) > 5000
        assert cloud.time.min() >= 0.0 and cloud.time.max() < 0.1
        # each point is expressed in the sensor frame at its own time: undo that exactly
        T = drive.trajectory.poses(t0 + cloud.time.astype(np.float64)) @ T_base_lidar
        p_map = np.einsum("nij,nj->ni", T[:, :3, :3], cloud.xyz.astype(np.float64)) + T[:, :3, 3]
        dist = scene.compute_distance(o3d.core.Tensor(p_map.astype(np.float32))).numpy()
        sigma = drive.config.lidar_range_noise
        assert np.median(dist) < 1.0 * sigma
        assert np.quantile(dist, 0.99) < 4.0 * sigma
        # ignoring the per-point time (one pose for the whole sweep) moves points off the surfaces
        T0 = drive.trajectory.poses(t0)[0] @ T_base_lidar
        p_wrong = cloud.xyz.astype(np.float64) @ T0[:3, :3].T + T0[:3, 3]
        dist_wrong = scene.compute_distance(o3d.core.Tensor(p_wrong.astype(np.float32))).numpy()
        assert np.quantile(dist_wrong, 0.9) > 3.0 * np.quantile(dist, 0.9)


@pytest.mark.slow
def test_lidar_has_intensity_and_dropouts(drive):
    cloud = drive.scans[0].cloud
    n_rays = drive.config.lidar_beams * drive.config.lidar_azimuths
    assert len(cloud) < n_rays
    assert 0.0 <= cloud.intensity.min() and cloud.intensity.max() <= 255.0
    assert cloud.intensity.std() > 5.0


def _integrate(gyro, accel, dt, R0, v0, p0):
    R, v, p = R0.copy(), v0.copy(), p0.copy()
    for k in range(len(gyro) - 1):
        a_k = R @ accel[k] + GRAVITY
        R_next = R @ so3_exp(0.5 * (gyro[k] + gyro[k + 1]) * dt)
        a_next = R_next @ accel[k + 1] + GRAVITY
        p = p + v * dt + (a_k / 3.0 + a_next / 6.0) * dt * dt
        v = v + 0.5 * (a_k + a_next) * dt
        R = R_next
    return R, v, p


@pytest.mark.slow
def test_integrated_imu_reproduces_the_trajectory(drive):
    imu = drive.imu
    T_bi = drive.extrinsics.T_base_imu
    t_imu = (imu.stamps_ns - START_NS) * 1e-9
    i0, i1 = np.searchsorted(t_imu, [0.5, 1.5])
    gyro = imu.gyro[i0:i1 + 1] - drive.imu_gyro_bias[i0:i1 + 1]
    accel = imu.accel[i0:i1 + 1] - drive.imu_accel_bias[i0:i1 + 1]
    assert np.abs(drive.imu_gyro_bias).max() > 0  # the bias is there and must be removed
    ta, tb = t_imu[i0], t_imu[i1]
    Ta, Tb = drive.trajectory.poses(np.array([ta, tb])) @ T_bi
    # velocity of the IMU point: base velocity + omega x lever arm
    w = drive.trajectory.angular_velocity(ta)[0]
    Rb = drive.trajectory.poses(ta)[0][:3, :3]
    v0 = drive.trajectory.velocity(ta)[0] + Rb @ np.cross(w, T_bi[:3, 3])
    dt = 1.0 / drive.config.imu_rate_hz
    R, _, p = _integrate(gyro, accel, dt, Ta[:3, :3], v0, Ta[:3, 3])
    # 200 Hz trapezoidal integration of the exact kinematics: sub-millimetre after 1 s
    assert np.linalg.norm(p - Tb[:3, 3]) < 1e-3
    assert np.degrees(np.linalg.norm(so3_log(R.T @ Tb[:3, :3]))) < 0.01
    # with the bias left in, the same integration misses by far more: the check has teeth
    _, _, p_biased = _integrate(imu.gyro[i0:i1 + 1], imu.accel[i0:i1 + 1], dt, Ta[:3, :3], v0, Ta[:3, 3])
    assert np.linalg.norm(p_biased - Tb[:3, 3]) > 5e-3


@pytest.mark.slow
def test_imu_at_rest_measures_gravity():
    """A level vehicle with no motion would read +g on z; check the kinematics formula on the
    trajectory by comparing with a numerical second derivative of the IMU position."""
    d = simulate_drive("loop", seconds=1.0, seed=1, lidar_azimuths=64, imu_noise=False)
    T_bi = d.extrinsics.T_base_imu
    t = np.array([0.3, 0.6])
    _, f = imu_kinematics(d.trajectory, T_bi, t)
    h = 1e-3
    pos = lambda tt: (d.trajectory.poses(tt) @ T_bi)[:, :3, 3]  # noqa: E731
    acc = (pos(t + h) - 2 * pos(t) + pos(t - h)) / h**2
    R = (d.trajectory.poses(t) @ T_bi)[:, :3, :3]
    f_num = np.einsum("nji,nj->ni", R, acc - GRAVITY)
    assert np.allclose(f, f_num, atol=2e-3)


def test_unknown_scenario_is_a_config_error():
    with pytest.raises(ConfigError, match="scenario"):
        simulate_drive("moon", seconds=1.0)
