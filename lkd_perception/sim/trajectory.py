"""The vehicle trajectory: smooth (C4) time splines of position and Euler angles.

Construction: the tour polyline (in its lane) gets rounded corners, a periodic smoothing spline
gives the geometric path, a speed profile between 5 and 15 m/s (slower in curves, with bounded
acceleration) gives the timing, and quintic splines in time through 10 Hz samples of
(x, y, z, yaw, pitch, roll) *define* the ground truth. Velocity, acceleration and angular rate
are the splines' exact derivatives, so the IMU is consistent with the poses to numerical
precision. base_link sits on the smooth ground surface, pitched and rolled with its slope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline, make_interp_spline, splev, splprep
from scipy.ndimage import gaussian_filter1d, minimum_filter1d

from lkd_perception.common.errors import ConfigError
from lkd_perception.sim.world import GroundModel

GRAVITY = np.array([0.0, 0.0, -9.81])  # m/s^2 in the map frame (z up)
BASE_HEIGHT = 0.3  # m, base_link above the ground (axle height)


@dataclass(frozen=True)
class Trajectory:
    """base_link in map as time splines; valid on [t_start, t_end] seconds."""

    t_start: float
    t_end: float
    x: BSpline
    y: BSpline
    z: BSpline
    yaw: BSpline
    pitch: BSpline
    roll: BSpline

    def _eval(self, t: np.ndarray, nu: int) -> np.ndarray:
        t = np.asarray(t, float)
        return np.stack([s(t, nu) for s in (self.x, self.y, self.z, self.yaw, self.pitch, self.roll)], -1)

    def poses(self, t: np.ndarray) -> np.ndarray:
        """T_map_base (N, 4, 4) at times ``t`` (N,) seconds."""
        q = self._eval(np.atleast_1d(t), 0)
        T = np.zeros(q.shape[:-1] + (4, 4))
        T[..., :3, :3] = rotation_zyx(q[..., 3], q[..., 4], q[..., 5])
        T[..., :3, 3] = q[..., :3]
        T[..., 3, 3] = 1.0
        return T

    def velocity(self, t: np.ndarray) -> np.ndarray:
        """Linear velocity (N, 3) of base_link in map, m/s."""
        return self._eval(np.atleast_1d(t), 1)[..., :3]

    def acceleration(self, t: np.ndarray) -> np.ndarray:
        """Linear acceleration (N, 3) of base_link in map, m/s^2."""
        return self._eval(np.atleast_1d(t), 2)[..., :3]

    def angular_velocity(self, t: np.ndarray) -> np.ndarray:
        """Angular velocity (N, 3) of base_link in its own frame, rad/s."""
        t = np.atleast_1d(np.asarray(t, float))
        q, dq = self._eval(t, 0), self._eval(t, 1)
        return body_rates(q[:, 3:], dq[:, 3:])

    def angular_acceleration(self, t: np.ndarray, h: float = 1e-4) -> np.ndarray:
        """Angular acceleration (N, 3) in the body frame (central difference of the exact rate)."""
        t = np.atleast_1d(np.asarray(t, float))
        return (self.angular_velocity(t + h) - self.angular_velocity(t - h)) / (2 * h)


def rotation_zyx(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Batched R = Rz(yaw) Ry(pitch) Rx(roll), shape (..., 3, 3)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    R = np.empty(np.shape(yaw) + (3, 3))
    R[..., 0, 0] = cy * cp
    R[..., 0, 1] = cy * sp * sr - sy * cr
    R[..., 0, 2] = cy * sp * cr + sy * sr
    R[..., 1, 0] = sy * cp
    R[..., 1, 1] = sy * sp * sr + cy * cr
    R[..., 1, 2] = sy * sp * cr - cy * sr
    R[..., 2, 0] = -sp
    R[..., 2, 1] = cp * sr
    R[..., 2, 2] = cp * cr
    return R


def body_rates(ypr: np.ndarray, ypr_dot: np.ndarray) -> np.ndarray:
    """Body-frame angular velocity (N, 3) from ZYX Euler angles (yaw, pitch, roll) and rates."""
    _, p, r = ypr[:, 0], ypr[:, 1], ypr[:, 2]
    dy, dp, dr = ypr_dot[:, 0], ypr_dot[:, 1], ypr_dot[:, 2]
    return np.stack(
        [
            dr - dy * np.sin(p),
            dp * np.cos(r) + dy * np.sin(r) * np.cos(p),
            -dp * np.sin(r) + dy * np.cos(r) * np.cos(p),
        ],
        axis=1,
    )


def _rounded(poly: np.ndarray, radius: float, step: float) -> np.ndarray:
    """Closed polyline with each corner replaced by a circular arc, resampled every ``step`` m."""
    n = len(poly)
    pts: list[np.ndarray] = []
    for k in range(n):
        p_prev, p, p_next = poly[k - 1], poly[k], poly[(k + 1) % n]
        d_in = (p - p_prev) / np.linalg.norm(p - p_prev)
        d_out = (p_next - p) / np.linalg.norm(p_next - p)
        turn = np.arctan2(d_in[0] * d_out[1] - d_in[1] * d_out[0], d_in @ d_out)
        if abs(turn) < 1e-3:
            pts.append(p)
            continue
        cut = radius * np.tan(abs(turn) / 2)
        a = p - d_in * cut
        normal = np.array([-d_in[1], d_in[0]]) * np.sign(turn)
        centre = a + normal * radius
        a0 = np.arctan2(*(a - centre)[::-1])
        angles = a0 + np.linspace(0, turn, max(3, int(abs(turn) * radius / step) + 1))
        pts.extend(centre + radius * np.stack([np.cos(angles), np.sin(angles)], 1))
    ring = np.array(pts)
    # resample straight parts densely so the spline follows them
    closed = np.vstack([ring, ring[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    samples = np.arange(0.0, s[-1], step)
    return np.stack([np.interp(samples, s, closed[:, 0]), np.interp(samples, s, closed[:, 1])], 1)


@dataclass(frozen=True)
class SpeedLimits:
    """Bounds of the speed profile."""

    v_min: float = 5.0
    v_max: float = 14.0
    lateral_accel: float = 2.5  # m/s^2 allowed in curves
    smoothing_m: float = 12.0  # Gaussian smoothing of the speed along the path


def make_trajectory(polyline: np.ndarray, ground: GroundModel, seconds: float,
                    limits: SpeedLimits = SpeedLimits(), corner_radius: float = 9.0,
                    margin_s: float = 2.0) -> Trajectory:
    """Drive the closed ``polyline`` for ``seconds`` (laps repeat) starting at its first corner
    exit. The splines extend ``margin_s`` beyond both ends so derivatives at the ends are clean."""
    if seconds <= 0:
        raise ConfigError(f"seconds must be positive, got {seconds}")
    ring = _rounded(polyline, corner_radius, 1.0)
    tck, _ = splprep([ring[:, 0], ring[:, 1]], s=len(ring) * 0.02, per=1, k=5)
    u = np.linspace(0.0, 1.0, 20001)[:-1]
    dx, dy = splev(u, tck, der=1)
    ddx, ddy = splev(u, tck, der=2)
    speed_u = np.hypot(dx, dy)
    du = u[1] - u[0]
    s_of_u = np.concatenate([[0.0], np.cumsum(speed_u[:-1] * du)])
    length = s_of_u[-1] + speed_u[-1] * du
    curvature = np.abs(dx * ddy - dy * ddx) / np.maximum(speed_u**3, 1e-9)
    v = np.clip(np.sqrt(limits.lateral_accel / np.maximum(curvature, 1e-6)), limits.v_min, limits.v_max)
    ds = length / len(u)
    win = int(2.5 * limits.smoothing_m / ds) | 1
    v = minimum_filter1d(v, win, mode="wrap")  # brake before the curve, not in it
    v = gaussian_filter1d(v, limits.smoothing_m / ds, mode="wrap")
    # time as a function of arc length, over enough laps
    lap_time = float(np.sum(ds / v))
    laps = int(np.ceil((seconds + 2 * margin_s) / lap_time)) + 2
    s_all = np.arange(len(u) * laps) * ds
    t_all = np.concatenate([[0.0], np.cumsum(ds / np.tile(v, laps))[:-1]]) - lap_time  # one lap of lead-in
    ts = np.arange(-margin_s, seconds + margin_s + 1e-9, 0.1)
    s_t = np.interp(ts, t_all, s_all - length)
    u_t = (s_t % length) / length
    u_t = np.interp(u_t, np.append(s_of_u / length, 1.0), np.append(u, 1.0))  # arc fraction -> parameter
    px, py = splev(u_t, tck)
    tx, ty = splev(u_t, tck, der=1)
    xy = np.stack([px, py], 1)
    yaw = np.unwrap(np.arctan2(ty, tx))
    heading = np.stack([np.cos(yaw), np.sin(yaw)], 1)
    left = np.stack([-np.sin(yaw), np.cos(yaw)], 1)
    grad = ground.gradient(xy)
    pitch = -np.arctan((grad * heading).sum(1))
    roll = np.arctan((grad * left).sum(1))
    z = ground.height(xy) + BASE_HEIGHT

    def fit(vals: np.ndarray) -> BSpline:
        return make_interp_spline(ts, vals, k=5)

    return Trajectory(0.0, float(seconds), fit(px), fit(py), fit(z), fit(yaw), fit(pitch), fit(roll))
