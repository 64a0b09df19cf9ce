"""Motion between and within scans: IMU gyro integration, constant-velocity prior, deskew.

The vehicle's motion over one scan (about 0.1 s) is modelled as a constant body twist for
deskewing. The prediction of the next pose comes from IMU preintegration when samples cover the
interval (gyro rotation, specific-force velocity and position change, plus gravity estimated in
the odom frame by the pipeline) and from the last registered velocity otherwise. The IMU
prediction spans one scan interval only: every registration re-anchors pose and velocity, so
an unaided double integration never runs away.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, so3_exp, so3_exp_batch, so3_log


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

    def start_velocity(self, displacement: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        """The start velocity that moves the body by ``displacement`` over the interval (the
        position of :meth:`delta` solved for v; all in the start body frame)."""
        return displacement / self.dt_s - self.dp / self.dt_s - 0.5 * gravity * self.dt_s

    def end_velocity(self, velocity: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        """The velocity at the end for a start ``velocity`` (start body frame): v + dv + g dt."""
        return velocity + self.dv + gravity * self.dt_s


def _lever_arm(lever_arm: np.ndarray | None) -> np.ndarray | None:
    """The accelerometer's offset from base_link (m), None when there is none to compensate."""
    return None if lever_arm is None or not np.any(lever_arm) else np.asarray(lever_arm, float).reshape(3)


class ImuBuffer:
    """Recent IMU samples rotated into the body frame, for preintegration between two times.

    The accelerometer sits at ``lever_arm`` (base frame, m) from base_link, so it also feels
    ``alpha x r + omega x (omega x r)``; given a lever arm, :meth:`preintegrate` removes that,
    because in a turn it is a body-fixed acceleration the accelerometer-bias estimate would
    otherwise take for bias (measured on a simulated loop with the IMU 0.3 m ahead of base_link:
    x-bias estimate 0.05 m/s^2 off without, 0.001 with). Its angular-acceleration part telescopes
    over an interval, so differentiating a noisy gyro costs nothing there. The pipeline gives the
    lever arm only with the bias estimate on: without it the gravity estimate absorbs the turn
    terms about as well, and on simulated corridors the compensation alone raised drift. The
    gyroscope and accelerometer biases estimated by :class:`InertialState` are subtracted in
    :meth:`preintegrate`.
    """

    def __init__(self, R_base_imu: np.ndarray, horizon_s: float = 5.0, lever_arm: np.ndarray | None = None) -> None:
        # a node may add samples from its own callback thread while a scan is registered: every
        # method holds the lock, so a reader never sees stamps and samples of different lengths
        self._lock = threading.Lock()
        self._R = R_base_imu
        self._lever = _lever_arm(lever_arm)
        self._horizon_ns = int(horizon_s * 1e9)
        self._stamps: list[int] = []
        self._gyro: list[np.ndarray] = []
        self._accel: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def R_base_imu(self) -> np.ndarray:
        """The rotation samples are taken into the body frame with (a copy)."""
        return self._R.copy()

    def set_extrinsic(self, R_base_imu: np.ndarray, lever_arm: np.ndarray | None = None) -> None:
        """Replace the mounting; the samples held so far are turned into the new body frame, so
        samples that arrived before the mounting was known (a late ``/tf_static``) are not lost."""
        R = np.asarray(R_base_imu, dtype=float)
        with self._lock:
            turn = R @ self._R.T
            self._gyro = [turn @ g for g in self._gyro]
            self._accel = [turn @ a for a in self._accel]
            self._R = R.copy()
            self._lever = _lever_arm(lever_arm)

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
        st, _, _ = self._window(t0_ns, t1_ns)
        if not len(st) or st[0] > t0_ns or t1_ns - st[-1] > max_gap_ns:
            return False
        lo = max(int(np.searchsorted(st, t0_ns, side="right")) - 1, 0)
        hi = int(np.searchsorted(st, t1_ns, side="left"))
        # the holes between the samples from t0 on, and from the last of them before t1 to t1
        knots = np.append(st[lo:hi], t1_ns)
        return bool(np.all(np.diff(knots) <= max_gap_ns))

    def _window(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps, gyro and accel from the last sample at or before t0 (else the oldest) to the
        first at or after t1 (else the newest): what integrating [t0, t1] reads, copied under the
        lock (the buffer holds seconds of samples; a scan needs a few dozen)."""
        with self._lock:
            lo = max(bisect.bisect_right(self._stamps, t0_ns) - 1, 0)
            hi = min(bisect.bisect_left(self._stamps, t1_ns) + 1, len(self._stamps))
            return (np.array(self._stamps[lo:hi], dtype=np.int64), np.array(self._gyro[lo:hi]).reshape(-1, 3),
                    np.array(self._accel[lo:hi]).reshape(-1, 3))

    def preintegrate(
        self, t0_ns: int, t1_ns: int, gyro_bias: np.ndarray | None = None, accel_bias: np.ndarray | None = None
    ) -> Preintegrated:
        """Integrate gyro (less ``gyro_bias``, body frame) and specific force (less
        ``accel_bias``) from t0 to t1 (midpoint rule between samples)."""
        k = self._integrate(t0_ns, t1_ns, gyro_bias, accel_bias)
        return Preintegrated(k.R[-1], k.dv[-1], k.dp[-1], (t1_ns - t0_ns) * 1e-9)

    def sweep(
        self, t0_ns: int, times_s: np.ndarray, gyro_bias: np.ndarray | None = None,
        accel_bias: np.ndarray | None = None,
    ) -> "SweepMotion":
        """The IMU's motion from ``t0_ns`` (a scan's stamp) to each of ``times_s`` (s after it):
        the integrals of :meth:`preintegrate`, continued inside the last knot interval."""
        times = np.asarray(times_s, dtype=float)
        end = t0_ns + max(int(np.ceil(float(times.max(initial=0.0)) * 1e9)), 1)
        k = self._integrate(t0_ns, end, gyro_bias, accel_bias)
        rel = (k.knots - t0_ns) * 1e-9
        j = np.clip(np.searchsorted(rel, times, side="right") - 1, 0, len(k.rate) - 1)
        tau = (times - rel[j])[:, None]
        return SweepMotion(times, k.R, j, k.rate[j] * tau, k.dp[j] + k.dv[j] * tau + 0.5 * k.force[j] * tau**2)

    def _integrate(
        self, t0_ns: int, t1_ns: int, gyro_bias: np.ndarray | None, accel_bias: np.ndarray | None
    ) -> "_Knots":
        """Knots t0, the samples strictly inside, t1; the rate and specific force held over each
        knot interval (the mean of the samples around it) and the integrals at every knot."""
        st, gy, ac = self._window(t0_ns, t1_ns)
        if gyro_bias is not None:
            gy = gy - gyro_bias
        if accel_bias is not None:
            ac = ac - accel_bias
        inside = (st > t0_ns) & (st < t1_ns)
        knots = np.concatenate([[t0_ns], st[inside], [t1_ns]])
        n = len(knots) - 1
        # each knot interval holds the mean of the samples around its start
        k = np.maximum(np.searchsorted(st, knots[:-1], side="right") - 1, 0)
        k2 = np.minimum(k + 1, len(st) - 1)
        rate, force = 0.5 * (gy[k] + gy[k2]), 0.5 * (ac[k] + ac[k2])
        if self._lever is not None:
            span = np.where(k2 > k, (st[k2] - st[k]) * 1e-9, 1.0)[:, None]
            alpha = np.where((k2 > k)[:, None], (gy[k2] - gy[k]) / span, 0.0)
            force = force - np.cross(alpha, self._lever) - np.cross(rate, np.cross(rate, self._lever))
        h = np.diff(knots) * 1e-9
        steps = so3_exp_batch(rate * h[:, None])
        R = np.empty((n + 1, 3, 3))
        R[0] = np.eye(3)
        for i in range(n):
            R[i + 1] = R[i] @ steps[i]
        f = np.einsum("kij,kj->ki", R[:-1], force)  # start body frame
        dv = np.concatenate([np.zeros((1, 3)), np.cumsum(f * h[:, None], axis=0)])
        dp = np.concatenate([np.zeros((1, 3)), np.cumsum(dv[:-1] * h[:, None] + 0.5 * f * (h**2)[:, None], axis=0)])
        return _Knots(knots, rate, f, R, dv, dp)


@dataclass(frozen=True)
class _Knots:
    """Integration knots (ns), the body rate and specific force over each knot interval, and
    rotation, velocity change and position change (start body frame) at each knot."""

    knots: np.ndarray
    rate: np.ndarray
    force: np.ndarray  # the specific force of each interval, in the start body frame
    R: np.ndarray
    dv: np.ndarray
    dp: np.ndarray


@dataclass(frozen=True)
class SweepMotion:
    """Where the body is at each point's time within one sweep, from the IMU: rotation and
    specific-force position change relative to the scan's stamp (stamp body frame).

    Why: a spinning LiDAR's points span the whole interval to the next scan, while a constant
    twist fitted between the previous scan and this one describes the interval before it. When
    the vehicle turns or accelerates, that twist deskews the sweep with the previous interval's
    motion; at 5 Hz (0.2 s sweeps) the resulting shear showed as yaw errors that followed the
    turn rate. The gyro measures the rotation inside the sweep itself, and the accelerometer the
    change of velocity; only the velocity at the stamp comes from the registration.

    Rotations are held per IMU knot; inside a knot interval (5 ms at 200 Hz) each point adds
    its small turn ``rate * tau`` to second order (error ~ |turn|^3: micrometres).
    """

    times: np.ndarray  # (N,) s after the stamp
    knot_rotations: np.ndarray  # (K, 3, 3) body at the stamp <- body at each knot
    knot: np.ndarray  # (N,) the knot interval of each point
    turn: np.ndarray  # (N, 3) rotation vector from the knot to the point's time
    dp: np.ndarray  # (N, 3) specific-force position change from the stamp (stamp body frame)

    def select(self, idx: np.ndarray) -> "SweepMotion":
        return SweepMotion(self.times[idx], self.knot_rotations, self.knot[idx], self.turn[idx], self.dp[idx])

    def rotate(self, points: np.ndarray) -> np.ndarray:
        """The points turned into the stamp's orientation (the part that needs no velocity)."""
        c = self.turn
        cp = np.cross(c, points)
        q = points + cp + 0.5 * np.cross(c, cp)
        return np.einsum("nij,nj->ni", self.knot_rotations[self.knot], q)

    def translation(self, velocity: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        """Each point's body position relative to the stamp, for the body ``velocity`` and
        ``gravity`` there (stamp body frame): p(t) = v t + dp(t) + g t^2 / 2, as
        :meth:`Preintegrated.delta`."""
        t = self.times[:, None]
        return velocity * t + self.dp + 0.5 * gravity * t * t


@dataclass(frozen=True)
class ImuDeskew:
    """What deskewing a scan with the IMU takes: the sweep's own motion and, for the velocity at
    the stamp that a pose implies (:func:`end_state`), the preintegrated interval before the scan
    with gravity in that interval's start body frame."""

    sweep: SweepMotion
    interval: Preintegrated
    gravity_b0: np.ndarray

    def select(self, idx: np.ndarray) -> "ImuDeskew":
        """The same for the points ``idx`` (a registration sample)."""
        return ImuDeskew(self.sweep.select(idx), self.interval, self.gravity_b0)


def end_state(pre: Preintegrated, gravity_b0: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and gravity in the body frame at the end of the interval ``pre``, when the
    relative pose over it is ``delta`` and gravity in the start body frame is ``gravity_b0``:
    the start velocity follows from the position (``p = v0 dt + dp + g dt^2 / 2``), the end
    velocity is ``v0 + dv + g dt``."""
    v_end = pre.end_velocity(pre.start_velocity(delta[:3, 3], gravity_b0), gravity_b0)
    R = delta[:3, :3]
    return R.T @ v_end, R.T @ gravity_b0


class InertialState:
    """Body velocity at the last scan, gravity in the odom frame and the IMU biases, re-anchored by
    registration.

    Over one interval, with the start velocity v0 and gravity g in the start body frame and the
    preintegrated (dv, dp): position ``v0 dt + dp + g dt^2 / 2`` and end velocity
    ``v0 + dv + g dt``. Registration gives the position, hence v0 for the known g; and because
    consecutive intervals must agree on the velocity at their shared scan, their disagreement
    ``e = (v_start - v_end_previous) / dt`` (odom frame) measures what the IMU model has wrong.

    Without accelerometer-bias estimation (``accel_bias=False``, the default) e is read as gravity error alone:
    a running mean of the observations, turning into a moving average over ``gravity_window``
    intervals, corrects g and absorbs the accelerometer bias (exact while the vehicle does not
    turn: a body-frame bias is then a fixed odom-frame offset). The first guess (specific force =
    -g) is wrong by the vehicle's acceleration and is forgotten at once.

    With it, e = dg - (R_prev + R_start) / 2 db to first order, dg and db being the
    errors of gravity (odom) and of the accelerometer bias (body) and R the odom-from-body
    rotations at the starts of the two intervals. A Kalman filter over (g, b) takes each e;
    turning separates the two (a body-fixed bias rotates in odom, gravity does not), and a
    pseudo-measurement |g| = ``gravity_norm`` separates the vertical bias from gravity on flat
    ground, where the vehicle never tilts (its accuracy is that of the norm: a local gravity
    0.03 m/s^2 off puts 0.03 m/s^2 into the vertical bias, which the prediction does not feel,
    because only g - R b enters it). Random-walk process noise makes its memory about
    ``gravity_window`` intervals, as the moving average's. Why it matters: where registration is
    degenerate the IMU carries the pose, and a bias the gravity estimate absorbed on the last
    heading is wrong on the next (0.05 m/s^2 is 0.6 m after 5 s).

    The gyroscope bias is observed like gravity: the preintegrated rotation (bias-corrected with
    the current estimate) against the registered one, ``log(R_imu^T R_reg) / dt = -(bias error)``
    in the body frame; a running mean over ``gravity_window`` intervals (registration noise
    ~1e-3 rad/s per interval averages to ~1e-4) tracks a bias of 1e-3..1e-2 rad/s and its
    slow drift. Without it, an IMU-carried stretch (a degenerate corridor) turns by bias x time.
    """

    #: per-interval noise of the velocity-disagreement observation (m/s^2): a few mm of registration
    #: noise per scan over 0.1 s intervals, differentiated twice
    OBSERVATION_SIGMA = 0.3
    #: prior of each accelerometer-bias axis (m/s^2; consumer MEMS: 0.01..0.1) and of gravity's
    #: first guess (m/s^2: the vehicle's acceleration during the first interval)
    BIAS_PRIOR_SIGMA = 0.1
    GRAVITY_PRIOR_SIGMA = 2.0
    #: how well |g| is known (m/s^2): local gravity 9.78..9.83 and the accelerometer's scale error
    NORM_SIGMA = 0.02

    #: white acceleration error of the IMU propagation (m/s^2): accelerometer noise, the bias the
    #: estimate has not caught, the lever arm; how fast the fused velocity forgets (at 10 Hz it
    #: weighs the registered velocity by about 0.15). Chosen on four simulated corridors: 0.05
    #: forgot too slowly (one drive 1.1 % drift), 0.5 kept more noise at 20 Hz
    PROPAGATION_SIGMA = 0.2

    def __init__(self, gravity_window: int = 200, accel_bias: bool = False, gravity_norm: float = 9.80665,
                 registration_sigma: float = 0.0) -> None:
        self.velocity = np.zeros(3)
        self.registration_sigma = registration_sigma
        self._Pv: np.ndarray | None = None  # covariance of the fused velocity (odom), None: not fused yet
        self.gravity: np.ndarray | None = None
        self.gyro_bias = np.zeros(3)  # body frame, rad/s
        self.accel_bias = np.zeros(3)  # body frame, m/s^2 (stays 0 when not estimated)
        self.estimate_accel_bias = accel_bias
        self.gravity_norm = gravity_norm
        self._bias_observations = 0
        self._window = gravity_window
        self._observations = 0
        self._v_end_odom: np.ndarray | None = None
        self._R_prev: np.ndarray | None = None  # odom-from-body at the start of the previous interval
        # covariance of (gravity, accel bias); random-walk noise per interval for a ~window memory
        self._P = np.diag([self.GRAVITY_PRIOR_SIGMA**2] * 3 + [self.BIAS_PRIOR_SIGMA**2] * 3)
        self._Q = (self.OBSERVATION_SIGMA / gravity_window) ** 2 * np.eye(6)

    def gravity_for(self, pre: Preintegrated, R_odom_b0: np.ndarray) -> np.ndarray:
        """Gravity in the odom frame; before any estimate, the guess of constant velocity (the
        specific force over ``pre`` is then -g)."""
        return -R_odom_b0 @ pre.dv / pre.dt_s if self.gravity is None else self.gravity

    def predict(self, pre: Preintegrated, R_odom_b0: np.ndarray) -> np.ndarray:
        """Predicted relative pose over the interval (``pre`` corrected with both bias estimates)."""
        return pre.delta(self.velocity, R_odom_b0.T @ self.gravity_for(pre, R_odom_b0))

    def update(
        self,
        pre: Preintegrated | None,
        R_odom_b0: np.ndarray,
        delta: np.ndarray,
        dt_s: float,
        free_axis: np.ndarray | None = None,
        position_cov: np.ndarray | None = None,
    ) -> None:
        """Take the registered relative pose ``delta`` of the interval (``pre`` None: no IMU).
        ``free_axis`` (odom, unit): registration could not see motion along it (a degenerate
        scan, its position there is the IMU's prediction), so the bias filter ignores ``e`` there.
        ``position_cov`` (3x3, odom): the registration's own covariance of the scan's position,
        which weighs the registered velocity against the IMU-propagated one (see :meth:`_fuse`)."""
        if pre is None:
            self.velocity = delta[:3, :3].T @ (delta[:3, 3] / dt_s)
            self._v_end_odom = None
            self._Pv = None
            return
        self._bias_observations += 1
        beta = 1.0 / min(self._bias_observations, self._window)
        self.gyro_bias = self.gyro_bias - beta * so3_log(pre.R.T @ delta[:3, :3]) / pre.dt_s
        if self.gravity is None:
            self.gravity = -R_odom_b0 @ pre.dv / pre.dt_s
        g_b0 = R_odom_b0.T @ self.gravity
        v_start = pre.start_velocity(delta[:3, 3], g_b0)
        if self._v_end_odom is not None:
            disagreement = R_odom_b0 @ v_start - self._v_end_odom
            if self.estimate_accel_bias:
                db = self._observe(disagreement / pre.dt_s, 0.5 * (R_odom_b0 + self._R_prev), free_axis)  # type: ignore[operator]
                # the new bias changes this interval's integrals to first order: dv by -db dt, dp by -db dt^2/2
                pre = Preintegrated(pre.R, pre.dv - db * pre.dt_s, pre.dp - 0.5 * db * pre.dt_s**2, pre.dt_s)
            else:
                self._observations += 1
                alpha = 1.0 / min(self._observations, self._window)
                self.gravity = self.gravity + alpha * disagreement / pre.dt_s
            g_b0 = R_odom_b0.T @ self.gravity
            v_start = pre.start_velocity(delta[:3, 3], g_b0)
        v_end_odom = R_odom_b0 @ pre.end_velocity(v_start, g_b0)
        if self.registration_sigma > 0 and self._v_end_odom is not None:
            propagated = R_odom_b0 @ pre.end_velocity(R_odom_b0.T @ self._v_end_odom, g_b0)
            v_end_odom = self._fuse(propagated, v_end_odom, position_cov, pre.dt_s)
        else:
            self._Pv = None
        self._v_end_odom = v_end_odom
        self._R_prev = R_odom_b0
        self.velocity = delta[:3, :3].T @ (R_odom_b0.T @ v_end_odom)

    def _fuse(self, propagated: np.ndarray, registered: np.ndarray, position_cov: np.ndarray | None,
              dt_s: float) -> np.ndarray:
        """The end velocity (odom) from the last one carried over the interval by the IMU and the
        one the registered poses imply, weighed by a Kalman filter.

        Why: the registered velocity is a difference of two positions over one interval, so a
        centimetre of registration noise is 0.14 m/s at 10 Hz and 0.28 m/s at 20 Hz. Along an axis
        the scene barely constrains (a corridor), that noise taken as the velocity is carried by
        the IMU through the stretch and creeps the position; the IMU measures velocity *changes*
        to millimetres per second over an interval. The registered velocity's covariance is twice
        the position's (``registration_sigma`` squared added per axis, the registration's own being
        optimistic) over dt^2; large along a weak axis, where the IMU's velocity is kept.
        """
        if self._Pv is None:
            self._Pv = np.eye(3) * (2.0 * self.registration_sigma**2 / dt_s**2)
        P = self._Pv + np.eye(3) * (self.PROPAGATION_SIGMA * dt_s) ** 2
        cov = np.zeros((3, 3)) if position_cov is None else np.asarray(position_cov, dtype=float)
        R = 2.0 * (cov + np.eye(3) * self.registration_sigma**2) / dt_s**2
        K = np.linalg.solve((P + R).T, P.T).T  # P (P + R)^-1
        self._Pv = (np.eye(3) - K) @ P
        self._Pv = 0.5 * (self._Pv + self._Pv.T)
        return propagated + K @ (registered - propagated)

    def _observe(self, e: np.ndarray, R_mid: np.ndarray, free_axis: np.ndarray | None) -> np.ndarray:
        """Kalman update of (gravity, accel bias) with e = dg - R_mid db (no information along
        ``free_axis``), then with the gravity norm; returns the change of the bias."""
        assert self.gravity is not None
        self._P = self._P + self._Q
        H = np.hstack([np.eye(3), -R_mid])
        noise = self.OBSERVATION_SIGMA**2 * np.eye(3)
        if free_axis is not None:
            noise = noise + 1e6 * np.outer(free_axis, free_axis)
        dx = self._kalman(H, e, noise)
        g = self.gravity + dx[:3]
        u = g / np.linalg.norm(g)
        dx = dx + self._kalman(np.hstack([u, np.zeros(3)])[None, :], np.array([self.gravity_norm - u @ g]),
                               np.array([[self.NORM_SIGMA**2]]))
        self.gravity = self.gravity + dx[:3]
        self.accel_bias = self.accel_bias + dx[3:]
        return dx[3:]

    def _kalman(self, H: np.ndarray, residual: np.ndarray, R: np.ndarray) -> np.ndarray:
        """One Kalman measurement update of the covariance; returns the state correction."""
        S = H @ self._P @ H.T + R
        K = np.linalg.solve(S, H @ self._P).T
        self._P = (np.eye(6) - K @ H) @ self._P
        self._P = 0.5 * (self._P + self._P.T)
        return K @ residual


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
