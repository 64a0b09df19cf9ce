"""Registration on a real scan (FR-079 corridor, test/fixtures/odometry) and its BEV parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lkd_perception.common.se3 import make_pose, pose_inverse, rotation_angle, transform_points, yaw_pitch_roll_matrix
from lkd_perception.odometry.bev import BevGrid, bev_image
from lkd_perception.odometry.features import FeatureExtractor, match_mutual, ransac_rigid_2d
from lkd_perception.odometry.motion import Twist, deskew
from lkd_perception.odometry.registration import BevRows, LocalMap, register, voxel_downsample

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "odometry" / "fr079_scan.npz"


@pytest.fixture(scope="module")
def scan() -> np.ndarray:
    return np.load(FIXTURE)["xyz"].astype(np.float64)


def _map(points: np.ndarray) -> LocalMap:
    m = LocalMap(voxel=0.2, radius=100.0, normal_neighbors=10)
    m.update(points, np.zeros(3))
    return m


@pytest.mark.parametrize(
    "yaw,pitch,roll,t",
    [(0.15, 0.03, -0.02, (0.5, -0.3, 0.1)), (-0.2, 0.0, 0.02, (-0.8, 0.4, -0.05))],
)
def test_registration_recovers_known_transform_of_real_scan(scan, yaw, pitch, roll, t):
    T_true = make_pose(yaw_pitch_roll_matrix(yaw, pitch, roll), t)
    rng = np.random.default_rng(0)
    # the moved sensor sees the same scene: its points are T_true^-1 applied to the map points
    source = transform_points(pose_inverse(T_true), voxel_downsample(scan, 0.5)) + rng.normal(0, 0.01, (1, 3))
    source += rng.normal(0, 0.01, source.shape)
    res = register(source, _map(scan), np.eye(4), max_distance=1.5, max_iterations=30, convergence=1e-6)
    err = pose_inverse(T_true) @ res.pose
    assert np.linalg.norm(err[:3, 3]) < 0.02
    assert np.degrees(rotation_angle(err[:3, :3])) < 0.2
    assert res.overlap > 0.9


def test_registration_from_identity_is_not_a_no_op(scan):
    """The test above must be able to fail: without iterations the error stays at the offset."""
    T_true = make_pose(yaw_pitch_roll_matrix(0.15), [0.5, -0.3, 0.1])
    source = transform_points(pose_inverse(T_true), voxel_downsample(scan, 0.5))
    res = register(source, _map(scan), np.eye(4), 1.5, 1, 1e-6)
    assert np.linalg.norm((pose_inverse(T_true) @ res.pose)[:3, 3]) > 0.05


def test_bev_rows_alone_recover_planar_motion(scan):
    """With only BEV rows (map far away) and a strong weight, GN recovers x, y, yaw."""
    T_true = make_pose(yaw_pitch_roll_matrix(0.1), [0.6, -0.4, 0.0])
    anchors_body = np.array([[5.0, 2.0, 0.0], [-3.0, 4.0, 0.0], [8.0, -6.0, 0.0], [1.0, 1.0, 0.0]])
    observed = transform_points(pose_inverse(T_true), anchors_body)[:, :2]
    far_map = LocalMap(0.5, 1000.0, 10)
    far_map.update(scan + 500.0, np.zeros(3))
    res = register(
        scan[:50], far_map, np.eye(4), 0.5, 20, 1e-9,
        bev=BevRows(anchors_body, observed, 0.4), bev_weight=1.0, prior_weight=1e-6,
    )
    err = pose_inverse(T_true) @ res.pose
    assert np.linalg.norm(err[:2, 3]) < 1e-3
    assert rotation_angle(err[:3, :3]) < 1e-4


def test_bev_image_zeroes_flat_ground_and_keeps_walls():
    grid = BevGrid.for_range(0.4, 20.0)
    xs, ys = np.meshgrid(np.linspace(-15, 15, 120), np.linspace(-15, 15, 120))
    ground = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, -1.8)], axis=1)
    wall = np.stack(np.meshgrid(np.full(1, 10.0), np.linspace(-5, 5, 60), np.linspace(-1.8, 3, 30)), -1).reshape(-1, 3)
    img = bev_image(np.concatenate([ground, wall]), grid)
    assert img.image.shape == (101, 101)
    u, v = grid.to_pixels(np.array([[10.0, 0.0]]))[0]
    assert img.image[v, u] == 255
    u0, v0 = grid.to_pixels(np.array([[0.0, 5.0]]))[0]
    assert img.image[v0, u0] == 0  # ground column: one voxel -> zeroed
    np.testing.assert_allclose(grid.to_metric(np.array([[u, v]], float)), [[10.2, 0.2]])


def test_bev_features_and_ransac_recover_planar_motion(scan):
    grid = BevGrid.for_range(0.4, 30.0)
    T = make_pose(yaw_pitch_roll_matrix(0.2), [1.2, -0.8, 0.0])
    a = bev_image(scan, grid)
    b = bev_image(transform_points(pose_inverse(T), scan), grid)
    ext = FeatureExtractor("orb", 20, 500)
    fa, fb = ext.extract(a), ext.extract(b)
    pairs = match_mutual(fb, fa)
    fit = ransac_rigid_2d(fb.xy[pairs[:, 0]], fa.xy[pairs[:, 1]], 1.0, 300, np.random.default_rng(0))
    assert fit is not None and fit.inliers.sum() >= 10
    assert abs(fit.yaw - 0.2) < 0.03
    np.testing.assert_allclose(fit.translation, [1.2, -0.8], atol=0.3)


def test_deskew_undoes_known_twist():
    rng = np.random.default_rng(1)
    truth = rng.uniform(-20, 20, (500, 3))
    times = rng.uniform(0, 0.1, 500)
    twist = Twist(np.array([0.0, 0.1, 0.8]), np.array([6.0, 0.5, 0.0]))
    # a point seen at time t in the body frame of that instant: T(t)^-1 applied to its time-0 position
    measured = np.stack([transform_points(pose_inverse(twist.delta(t)), p[None])[0] for p, t in zip(truth, times)])
    np.testing.assert_allclose(deskew(measured, times, twist), truth, atol=2e-3)
    assert np.abs(measured - truth).max() > 0.3
