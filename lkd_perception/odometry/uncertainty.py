"""Covariance of a scan's pose and twist from its registration, and degeneracy detection.

The point-to-plane rows' information J^T J (see
:class:`lkd_perception.odometry.registration.RegistrationResult`) scaled by the residual variance
is the registration's own estimate of how well the scan pins the pose down (as in KISS-ICP,
FAST-LIO and LOAM's degeneracy analysis). Fusion filters (robot_localization) and AMCL weigh our
odometry with it, so it must not be zeros: a zero covariance tells them the pose is exact.

Degeneracy: in a corridor or tunnel every wall normal is across the axis, in an open field only
the ground is seen; the information then has a (near) zero eigenvalue along the free direction,
which the translation block of the covariance shows as one variance far above the others. An
eigenvalue ratio alone does not separate "no structure along the axis" from "a little": the
noise of hundreds of wall normals adds as much information along a corridor (measured: ratio
1e-2 in a featureless corridor, 7e-3 at the weakest scan of the simulated one, which still has
a few doors). So the test counts the points whose normal actually faces the weakest axis
(|n . a| > 0.5): fewer than ``min_support`` and the scan is degenerate along ``a`` (measured
over 30 s: 0-2 in the featureless stretch, >= 79 on the loop and urban drives, 1-400 in the
simulated corridor). The pipeline then keeps the motion prediction along that axis (IMU, else
constant velocity), as LOAM's solution remapping does, and the covariance is computed without
the (noise) information along it: a large variance there, so a fusion filter ignores that axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGMA_FLOOR_M = 0.02  # range noise of a spinning LiDAR: no fit is better than this
RIDGE_RELATIVE = 1e-6  # bounds the condition number of the information (variance <= 1e6 x best)
RIDGE_ABSOLUTE = 1e-3  # a scan with no planar correspondences at all still gets a finite covariance
FIRST_TWIST_VARIANCE = 100.0  # the first scan's twist is unknown


@dataclass(frozen=True)
class ScanUncertainty:
    """``pose_covariance``: 6x6 over (x, y, z, roll, pitch, yaw) of T_odom_base in the odom axes
    (ROS ``nav_msgs/Odometry.pose`` order); ``twist_covariance``: 6x6 over (vx, vy, vz, wx, wy,
    wz) in base_link (``Odometry.twist``); ``observability``: smallest over largest translation
    variance (1 = equally constrained, near 0 = one free axis); ``weakest_axis``: the unit
    direction (odom) of the largest translation variance; ``support``: correspondences whose
    normal faces that axis; ``degenerate``: support below the threshold."""

    pose_covariance: np.ndarray
    twist_covariance: np.ndarray
    observability: float
    weakest_axis: np.ndarray
    support: int
    degenerate: bool

    @staticmethod
    def origin() -> "ScanUncertainty":
        """The first scan: it defines the odom frame (pose known to the sensor noise), twist unknown."""
        return ScanUncertainty(
            np.eye(6) * SIGMA_FLOOR_M**2, np.eye(6) * FIRST_TWIST_VARIANCE, 1.0, np.zeros(3), 0, False
        )


def scan_uncertainty(
    information: np.ndarray, normals: np.ndarray, rmse: float, R_odom_base: np.ndarray, dt_s: float, min_support: int
) -> ScanUncertainty:
    """Covariances from the registration's information over (omega, dp) (odom axes, rotation
    about the vehicle), its correspondences' ``normals`` (N, 3) and point-to-plane RMSE (m).

    The twist is the pose change over ``dt_s`` divided by ``dt_s``; both scans' errors enter
    it, taken as independent and alike: twice the pose covariance, rotated into base_link,
    over dt^2.
    """
    H = np.asarray(information, dtype=float)
    sigma2 = max(rmse if np.isfinite(rmse) else 1.0, SIGMA_FLOOR_M) ** 2
    ridge = max(RIDGE_RELATIVE * np.trace(H) / 6.0, RIDGE_ABSOLUTE)
    cov_wp = sigma2 * np.linalg.inv(H + ridge * np.eye(6))  # (omega, dp)
    order = [3, 4, 5, 0, 1, 2]  # -> (dp, omega): ROS order
    pose_cov = cov_wp[np.ix_(order, order)]
    pose_cov = 0.5 * (pose_cov + pose_cov.T)
    var, vec = np.linalg.eigh(pose_cov[:3, :3])
    observability = float(var[0] / var[-1]) if var[-1] > 0 else 1.0
    axis = vec[:, -1].copy()
    support = int(np.sum(np.abs(np.asarray(normals, dtype=float).reshape(-1, 3) @ axis) > 0.5))
    degenerate = support < min_support
    if degenerate:  # what information there is along the axis is normal noise: drop it
        e = np.concatenate([np.zeros(3), axis])[:, None]
        Q = np.eye(6) - e @ e.T
        cov_wp = sigma2 * np.linalg.inv(Q @ H @ Q + ridge * np.eye(6))
        pose_cov = cov_wp[np.ix_(order, order)]
        pose_cov = 0.5 * (pose_cov + pose_cov.T)
    if dt_s > 0:
        B = np.kron(np.eye(2), np.asarray(R_odom_base, dtype=float).T)
        twist_cov = 2.0 * B @ pose_cov @ B.T / dt_s**2
        twist_cov = 0.5 * (twist_cov + twist_cov.T)
    else:
        twist_cov = np.eye(6) * FIRST_TWIST_VARIANCE
    return ScanUncertainty(pose_cov, twist_cov, observability, axis, support, degenerate)
