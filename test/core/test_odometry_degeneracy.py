"""Covariance and degeneracy: a corridor whose structure ends, driven while accelerating.

The first metres have pillars and an end wall (every axis constrained); beyond them the walls,
floor and ceiling leave the travel direction free. There the scans must be flagged degenerate
along x with a large x variance, and the IMU, not the scene, must carry the pose (the vehicle
accelerates, so the constant-velocity model alone falls behind).
"""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.io.codecs import Cloud
from lkd_perception.odometry.config import LoopConfig, OdometryConfig
from lkd_perception.odometry.pipeline import LioPipeline
from lkd_perception.odometry.uncertainty import scan_uncertainty

HALF_WIDTH, FLOOR, CEILING, END_WALL = 4.0, -1.8, 2.5, -12.0
PILLARS = np.array([[x, s * 3.6] for x in np.arange(-8.0, 8.1, 2.0) for s in (-1, 1)])  # 0.4 m square
MAX_RANGE = 12.0
RATE_HZ, SECONDS, IMU_HZ = 10.0, 5.0, 200.0


def _x(t: np.ndarray | float) -> np.ndarray:
    """Travel along the corridor: 5 m/s, then accelerating at 2 m/s^2 from t = 2 s."""
    t = np.asarray(t, dtype=float)
    return np.where(t < 2.0, 5.0 * t, 10.0 + 5.0 * (t - 2.0) + (t - 2.0) ** 2)


def _accel_x(t: float) -> float:
    return 0.0 if t < 2.0 else 2.0


def _cast(origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points (sensor frame, axis-aligned with the corridor) of one 16 x 720 sweep."""
    el = np.deg2rad(np.linspace(-25.0, 15.0, 16))
    az = np.linspace(-np.pi, np.pi, 720, endpoint=False)
    E, A = np.meshgrid(el, az, indexing="ij")
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        cands = [
            np.where(d[:, 1] > 0, (HALF_WIDTH - origin[1]) / d[:, 1], np.inf),
            np.where(d[:, 1] < 0, (-HALF_WIDTH - origin[1]) / d[:, 1], np.inf),
            np.where(d[:, 2] < 0, (FLOOR - origin[2]) / d[:, 2], np.inf),
            np.where(d[:, 2] > 0, (CEILING - origin[2]) / d[:, 2], np.inf),
            np.where(d[:, 0] < 0, (END_WALL - origin[0]) / d[:, 0], np.inf),
        ]
        for px, py in PILLARS:  # slab test in x-y, full height
            lo = (np.array([px - 0.2, py - 0.2]) - origin[:2]) / d[:, :2]
            hi = (np.array([px + 0.2, py + 0.2]) - origin[:2]) / d[:, :2]
            t_in = np.nanmax(np.minimum(lo, hi), axis=1)
            t_out = np.nanmin(np.maximum(lo, hi), axis=1)
            cands.append(np.where((t_in <= t_out) & (t_in > 0), t_in, np.inf))
    t = np.min(np.stack(cands), axis=0)
    ok = t < MAX_RANGE
    pts = d[ok] * t[ok, None] + rng.normal(0.0, 0.01, (int(ok.sum()), 3))
    return pts.astype(np.float32)


def _run(use_imu: bool):
    rng = np.random.default_rng(0)
    cfg = OdometryConfig(max_range=MAX_RANGE, bev_range=10.0, use_imu=use_imu, loop=LoopConfig(enabled=False))
    pipe = LioPipeline(cfg)
    t0 = 1_700_000_000_000_000_000
    imu_t = np.arange(0.0, SECONDS + 0.2, 1.0 / IMU_HZ)
    k, results = 0, []
    for i in range(int(SECONDS * RATE_HZ)):
        ts = i / RATE_HZ
        while use_imu and k < len(imu_t) and imu_t[k] <= ts + 1e-9:
            pipe.add_imu(t0 + int(round(imu_t[k] * 1e9)), np.zeros(3), np.array([_accel_x(imu_t[k]), 0.0, 9.81]))
            k += 1
        results.append(
            (ts, pipe.add_scan(t0 + int(round(ts * 1e9)), Cloud(_cast(np.array([float(_x(ts)), 0.0, 0.0]), rng))))
        )
    return results


@pytest.fixture(scope="module")
def with_imu():
    return _run(True)


@pytest.mark.slow
def test_covariance_is_positive_definite_and_grows_along_the_free_axis(with_imu):
    for _, r in with_imu:
        for cov in (r.uncertainty.pose_covariance, r.uncertainty.twist_covariance):
            assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    structured = [r for ts, r in with_imu if 0.5 <= _x(ts) <= 6.0]
    free = [r for ts, r in with_imu if _x(ts) >= 21.0]
    assert len(structured) >= 5 and len(free) >= 5
    assert not any(r.uncertainty.degenerate for r in structured)
    assert all(r.uncertainty.degenerate and "degenerate: only" in r.detail for r in free)
    for r in free:
        assert abs(r.uncertainty.weakest_axis[0]) > 0.99
        var = np.diag(r.uncertainty.pose_covariance)
        assert var[0] > 300 * max(var[1], var[2]) and var[0] > 0.1  # metres of sigma, not centimetres
    # where the pillars pin x down, x is known about as well as y
    for r in structured:
        var = np.diag(r.uncertainty.pose_covariance)
        assert var[0] < 10 * var[1]


@pytest.mark.slow
def test_the_imu_carries_the_unobservable_direction(with_imu):
    lidar_only = _run(False)
    ts_end = with_imu[-1][0]
    err_imu = abs(with_imu[-1][1].pose[0, 3] - float(_x(ts_end)))
    err_cv = abs(lidar_only[-1][1].pose[0, 3] - float(_x(ts_end)))
    # 1.4 s along the free axis while speeding up from 8 to 11 m/s: LiDAR-only, registration
    # settles in the corridor's noise and the estimate stalls (measured 13 m behind); with the IMU
    # the free axis follows the preintegration (measured 1.9 m behind: the velocity it starts from
    # is already low, registration lags where the pillars thin out before the free stretch)
    assert err_imu < 2.5, err_imu
    assert err_cv > 4 * err_imu, (err_cv, err_imu)


def test_uncertainty_without_any_structure_is_finite_and_degenerate():
    u = scan_uncertainty(np.zeros((6, 6)), np.zeros((0, 3)), float("inf"), np.eye(3), 0.1, 10)
    assert np.all(np.isfinite(u.pose_covariance)) and np.linalg.eigvalsh(u.pose_covariance).min() > 0
    assert u.observability == pytest.approx(1.0) and u.degenerate and u.support == 0
