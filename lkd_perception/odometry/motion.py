"""Motion between and within scans: IMU gyro integration, constant-velocity prior, deskew.

The vehicle's motion over one scan (about 0.1 s) is modelled as a constant body twist for
deskewing. The prediction of the next pose comes from IMU preintegration when samples cover the
interval (gyro rotation, specific-force velocity and position change, plus gravity estimated in
the odom frame by the pipeline) and from the last registered velocity otherwise. The IMU
prediction spans one scan interval only: every registration re-anchors pose and velocity, so
an unaided double integration never runs away.
"""

from __future__ import annotations

import threading
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


@dataclass(frozen=True)
class Preintegrated:
    """IMU motion between two times in the body frame at the first one (gravity not included):
    rotation ``R``, velocity change ``dv`` and position change ``dp`` from the specific force,
    over ``dt_s`` seconds."""

    R: np.ndarray
    dv: np.ndarray
    dp: np.ndarray
    dt_s: float

    def delta(self, velocity: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        """Relative pose over the interval for a start ``velocity`` and ``gravity`` (both in the
        start body frame): p = v dt + dp + g dt^2 / 2."""
        return make_pose(self.R, velocity * self.dt_s + self.dp + 0.5 * gravity * self.dt_s**2)


class ImuBuffer:
    """Recent IMU samples rotated into the body frame, for preintegration between two times.

    The accelerometer's lever arm is ignored (centripetal terms of a few cm/s^2 at the IMU
    offsets of a car). The gyroscope bias estimated by :class:`InertialState` is subtracted in
    :meth:`preintegrate`; the accelerometer's is absorbed by the gravity estimate there.
    """

    def __init__(self, R_base_imu: np.ndarray, horizon_s: float = 5.0) -> None:
        # a node may add samples from its own callback thread while a scan is registered: every
        # method holds the lock, so a reader never sees stamps and samples of different lengths
        self._lock = threading.Lock()
        self._R = R_base_imu
        self._horizon_ns = int(horizon_s * 1e9)
        self._stamps: list[int] = []
        self._gyro: list[np.ndarray] = []
        self._accel: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, gyro: np.ndarray, accel: np.ndarray) -> None:
        """Store one sample; out-of-order or non-finite samples are an :class:`InputError`."""
        g = np.asarray(gyro, dtype=float).reshape(3)
        a = np.asarray(accel, dtype=float).reshape(3)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(a))):
            raise InputError("IMU sample has non-finite gyro/accel values")
        with self._lock:
            if self._stamps and stamp_ns <= self._stamps[-1]:
                raise InputError(f"IMU stamp {stamp_ns} is not after the previous {self._stamps[-1]}")
            self._stamps.append(int(stamp_ns))
            self._gyro.append(self._R @ g)
            self._accel.append(self._R @ a)
            cut = 0
            while cut < len(self._stamps) and self._stamps[cut] < stamp_ns - self._horizon_ns:
                cut += 1
            if cut:
                del self._stamps[:cut], self._gyro[:cut], self._accel[:cut]

    def covers(self, t0_ns: int, t1_ns: int, max_gap_s: float) -> bool:
        """Samples span [t0, t1] with no hole longer than ``max_gap_s`` (a lost burst of IMU
        messages would otherwise be integrated as constant rate across the hole).

        The newest sample may end up to ``max_gap_s`` before t1 (its rate is held to t1, as across
        any hole): a node that takes a scan before the IMU sample stamped with it (both arrive
        together) must not lose the IMU prediction for the whole interval.
        """
        max_gap_ns = max_gap_s * 1e9
        with self._lock:
            if not self._stamps or self._stamps[0] > t0_ns or t1_ns - self._stamps[-1] > max_gap_ns:
                return False
            st = np.asarray(self._stamps, dtype=np.int64)
        lo = max(int(np.searchsorted(st, t0_ns, side="right")) - 1, 0)
        hi = int(np.searchsorted(st, t1_ns, side="left"))
        # the holes between the samples from t0 on, and from the last of them before t1 to t1
        knots = np.append(st[lo:hi], t1_ns)
        return bool(np.all(np.diff(knots) <= max_gap_ns))

    def preintegrate(self, t0_ns: int, t1_ns: int, gyro_bias: np.ndarray | None = None) -> Preintegrated:
        """Integrate gyro (less ``gyro_bias``, body frame) and specific force from t0 to t1
        (midpoint rule between samples)."""
        with self._lock:
            st = np.asarray(self._stamps, dtype=np.int64)
            gy = np.asarray(self._gyro)
            ac = np.asarray(self._accel)
        if gyro_bias is not None:
            gy = gy - gyro_bias
        # integration knots: t0, the samples strictly inside, t1
        inside = (st > t0_ns) & (st < t1_ns)
        knots = np.concatenate([[t0_ns], st[inside], [t1_ns]])
        R, dv, dp = np.eye(3), np.zeros(3), np.zeros(3)
        for a, b in zip(knots[:-1], knots[1:]):
            k = max(int(np.searchsorted(st, a, side="right")) - 1, 0)
            k2 = min(k + 1, len(st) - 1)
            h = (b - a) * 1e-9
            f = R @ (0.5 * (ac[k] + ac[k2]))
            dp += dv * h + 0.5 * f * h * h
            dv += f * h
            R = R @ so3_exp(0.5 * (gy[k] + gy[k2]) * h)
        return Preintegrated(R, dv, dp, (t1_ns - t0_ns) * 1e-9)


class InertialState:
    """Body velocity at the last scan and gravity in the odom frame, re-anchored by registration.

    Over one interval, with the start velocity v0 and gravity g in the start body frame and the
    preintegrated (dv, dp): position ``v0 dt + dp + g dt^2 / 2`` and end velocity
    ``v0 + dv + g dt``. Registration gives the position, hence v0 for the known g; and because
    consecutive intervals must agree on the velocity at their shared scan, their disagreement
    measures the gravity error: ``(v_start - v_end_previous) / dt = g_true - g_estimate``
    (both in odom). A running mean of these observations, turning into a moving average over
    ``gravity_window`` intervals, corrects g (and absorbs the accelerometer bias); the first
    guess (specific force = -g) is wrong by the vehicle's acceleration and is forgotten at once.

    The gyroscope bias is observed the same way: the preintegrated rotation (bias-corrected with
    the current estimate) against the registered one, ``log(R_imu^T R_reg) / dt = -(bias error)``
    in the body frame; a running mean over ``gravity_window`` intervals (registration noise
    ~1e-3 rad/s per interval averages to ~1e-4) tracks a bias of 1e-3..1e-2 rad/s and its
    slow drift. Without it, an IMU-carried stretch (a degenerate corridor) turns by bias x time.
    """

    def __init__(self, gravity_window: int = 200) -> None:
        self.velocity = np.zeros(3)
        self.gravity: np.ndarray | None = None
        self.gyro_bias = np.zeros(3)  # body frame, rad/s
        self._bias_observations = 0
        self._window = gravity_window
        self._observations = 0
        self._v_end_odom: np.ndarray | None = None

    def predict(self, pre: Preintegrated, R_odom_b0: np.ndarray) -> np.ndarray:
        """Predicted relative pose over the interval."""
        # before any estimate, assume constant velocity: the specific force is then -g
        g = -R_odom_b0 @ pre.dv / pre.dt_s if self.gravity is None else self.gravity
        return pre.delta(self.velocity, R_odom_b0.T @ g)

    def update(self, pre: Preintegrated | None, R_odom_b0: np.ndarray, delta: np.ndarray, dt_s: float) -> None:
        """Take the registered relative pose ``delta`` of the interval (``pre`` None: no IMU)."""
        avg = delta[:3, 3] / dt_s
        if pre is None:
            self.velocity = delta[:3, :3].T @ avg
            self._v_end_odom = None
            return
        self._bias_observations += 1
        beta = 1.0 / min(self._bias_observations, self._window)
        self.gyro_bias = self.gyro_bias - beta * so3_log(pre.R.T @ delta[:3, :3]) / pre.dt_s
        if self.gravity is None:
            self.gravity = -R_odom_b0 @ pre.dv / pre.dt_s
        g_b0 = R_odom_b0.T @ self.gravity
        v_start = avg - pre.dp / pre.dt_s - 0.5 * g_b0 * pre.dt_s
        if self._v_end_odom is not None:
            self._observations += 1
            alpha = 1.0 / min(self._observations, self._window)
            self.gravity = self.gravity + alpha * (R_odom_b0 @ v_start - self._v_end_odom) / pre.dt_s
            g_b0 = R_odom_b0.T @ self.gravity
            v_start = avg - pre.dp / pre.dt_s - 0.5 * g_b0 * pre.dt_s
        v_end = v_start + pre.dv + g_b0 * pre.dt_s
        self._v_end_odom = R_odom_b0 @ v_end
        self.velocity = delta[:3, :3].T @ v_end


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
    rotated = points * cos_t + np.cross(axis, points) * sin_t + axis * np.sum(axis * points, axis=1,
                                                                              keepdims=True) * (1 - cos_t)
    return rotated + twist.linear[None, :] * times_s[:, None]
