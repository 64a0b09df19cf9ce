"""Motion between and within scans: IMU gyro integration, constant-velocity prior, deskew.

The vehicle's motion over one scan (about 0.1 s) is modelled as a constant body twist. Rotation
comes from the gyro when IMU samples cover the interval (it is far better than extrapolating
the last registration on turns); translation comes from the last registered velocity. Gravity
and accelerometer bias are not estimated, so the accelerometer is not integrated: on a ground
vehicle the constant-velocity translation plus a gyro rotation is a good prior and cannot run
away the way an unaided double integration does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, so3_exp, so3_log


@dataclass(frozen=True)
class Twist:
    """Body-frame angular (rad/s) and linear (m/s) velocity."""

    angular: np.ndarray
    linear: np.ndarray

    @staticmethod
    def zero() -> "Twist":
        return Twist(np.zeros(3), np.zeros(3))

    @staticmethod
    def from_delta(delta: np.ndarray, dt_s: float) -> "Twist":
        """The constant twist that produces the relative pose ``delta`` over ``dt_s``."""
        if dt_s <= 0:
            return Twist.zero()
        return Twist(so3_log(delta[:3, :3]) / dt_s, delta[:3, 3] / dt_s)

    def delta(self, dt_s: float) -> np.ndarray:
        """Relative pose after ``dt_s`` seconds (first-order in translation)."""
        return make_pose(so3_exp(self.angular * dt_s), self.linear * dt_s)


class ImuBuffer:
    """Recent gyro samples (body frame) for rotation integration between two times."""

    def __init__(self, R_base_imu: np.ndarray, horizon_s: float = 5.0) -> None:
        self._R = R_base_imu
        self._horizon_ns = int(horizon_s * 1e9)
        self._stamps: list[int] = []
        self._gyro: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, gyro: np.ndarray, accel: np.ndarray) -> None:
        """Store one sample; out-of-order or non-finite samples are an :class:`InputError`."""
        g = np.asarray(gyro, dtype=float).reshape(3)
        a = np.asarray(accel, dtype=float).reshape(3)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(a))):
            raise InputError("IMU sample has non-finite gyro/accel values")
        if self._stamps and stamp_ns <= self._stamps[-1]:
            raise InputError(f"IMU stamp {stamp_ns} is not after the previous {self._stamps[-1]}")
        self._stamps.append(int(stamp_ns))
        self._gyro.append(self._R @ g)
        cut = 0
        while cut < len(self._stamps) and self._stamps[cut] < stamp_ns - self._horizon_ns:
            cut += 1
        if cut:
            del self._stamps[:cut], self._gyro[:cut]

    def covers(self, t0_ns: int, t1_ns: int) -> bool:
        return bool(self._stamps) and self._stamps[0] <= t0_ns and self._stamps[-1] >= t1_ns

    def rotation(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Body rotation R_t0_t1 by integrating the gyro (piecewise constant, sample-and-hold)."""
        st = np.asarray(self._stamps, dtype=np.int64)
        gy = np.asarray(self._gyro)
        # integration knots: t0, the samples strictly inside, t1
        inside = (st > t0_ns) & (st < t1_ns)
        knots = np.concatenate([[t0_ns], st[inside], [t1_ns]])
        R = np.eye(3)
        for a, b in zip(knots[:-1], knots[1:]):
            k = max(int(np.searchsorted(st, a, side="right")) - 1, 0)
            k2 = min(k + 1, len(st) - 1)
            w = 0.5 * (gy[k] + gy[k2])
            R = R @ so3_exp(w * (b - a) * 1e-9)
        return R


def deskew(points: np.ndarray, times_s: np.ndarray, twist: Twist) -> np.ndarray:
    """Move every point to where it would be seen at time 0 (the scan stamp), assuming ``twist``.

    A point measured at time t in the body frame of that instant is ``T(t) p`` in the body frame
    at time 0, with ``T(t) = exp(t * twist)`` (vectorised Rodrigues).
    """
    w = twist.angular[None, :] * times_s[:, None]
    theta = np.linalg.norm(w, axis=1, keepdims=True)
    small = theta[:, 0] < 1e-9
    axis = np.where(small[:, None], 0.0, w / np.where(small[:, None], 1.0, theta))
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    # Rodrigues: p cos + (k x p) sin + k (k.p)(1 - cos)
    rotated = points * cos_t + np.cross(axis, points) * sin_t + axis * np.sum(axis * points, axis=1, keepdims=True) * (1 - cos_t)
    return rotated + twist.linear[None, :] * times_s[:, None]
