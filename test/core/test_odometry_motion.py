"""IMU preintegration and the velocity/gravity state on exact synthetic motion."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, pose_inverse, rotation_angle, yaw_pitch_roll_matrix
from lkd_perception.odometry.motion import ImuBuffer, ImuDeskew, InertialState, Preintegrated

G = np.array([0.0, 0.0, -9.81])


def _pose(t: float, a: float, w: float, v0: float) -> np.ndarray:
    """Planar motion: yaw rate w, forward speed v0 + a t (body x), integrated exactly enough."""
    n = 2000
    ts = np.linspace(0, t, n + 1)
    yaw = w * ts
    speed = v0 + a * ts
    x = np.trapezoid(speed * np.cos(yaw), ts)
    y = np.trapezoid(speed * np.sin(yaw), ts)
    return make_pose(yaw_pitch_roll_matrix(w * t), [x, y, 0.0])


def _imu(buf: ImuBuffer, t0: float, t1: float, a: float, w: float, v0: float, rate: float = 400.0) -> None:
    for t in np.arange(t0, t1 + 1e-9, 1.0 / rate):
        speed = v0 + a * t
        # specific force in the body frame: tangential a, centripetal speed*w, minus gravity
        buf.add(int(round(t * 1e9)), np.array([0.0, 0.0, w]), np.array([a, speed * w, 9.81]))


def test_preintegration_predicts_accelerating_turn():
    a, w, v0 = 2.0, 0.3, 8.0
    buf = ImuBuffer(np.eye(3))
    _imu(buf, 0.0, 3.0, a, w, v0)
    state = InertialState()
    prev = _pose(0.0, a, w, v0)
    errs = []
    for k in range(1, 25):
        t0, t1 = (k - 1) * 0.1, k * 0.1
        pre = buf.preintegrate(int(round(t0 * 1e9)), int(round(t1 * 1e9)), None, state.accel_bias)
        truth = pose_inverse(_pose(t0, a, w, v0)) @ _pose(t1, a, w, v0)
        pred = state.predict(pre, prev[:3, :3])
        errs.append(np.linalg.norm(pred[:3, 3] - truth[:3, 3]))
        assert np.degrees(rotation_angle(pred[:3, :3].T @ truth[:3, :3])) < 0.01
        state.update(pre, prev[:3, :3], truth, 0.1)  # registration returns the truth here
        prev = _pose(t1, a, w, v0)
    # after the first interval (unknown start velocity) the prediction is within millimetres,
    # although the vehicle accelerates at 2 m/s^2 (constant velocity would be off by 1 cm)
    assert max(errs[2:]) < 3e-3
    assert errs[0] > 0.5  # the first interval starts from zero velocity
    np.testing.assert_allclose(state.gravity, G, atol=0.05)


def test_imu_buffer_rejects_bad_samples():
    buf = ImuBuffer(np.eye(3))
    buf.add(10, np.zeros(3), np.zeros(3))
    with pytest.raises(InputError, match="not after"):
        buf.add(10, np.zeros(3), np.zeros(3))
    with pytest.raises(InputError, match="non-finite"):
        buf.add(20, np.array([np.inf, 0, 0]), np.zeros(3))
    assert len(buf) == 1
    assert buf.covers(10, 10, 0.05) and not buf.covers(5, 10, 0.05)


def test_imu_buffer_coverage_holds_the_newest_sample_up_to_the_gap_limit():
    buf = ImuBuffer(np.eye(3))
    ms = 1_000_000
    for t in (0, 5, 10, 15, 20, 80, 85):  # 200 Hz with a 60 ms hole after 20 ms
        buf.add(t * ms, np.zeros(3), np.zeros(3))
    assert buf.covers(0, 20 * ms, 0.01)
    assert buf.covers(0, 28 * ms, 0.01)  # the newest sample is 8 ms before the end: held
    assert not buf.covers(0, 35 * ms, 0.01)  # 15 ms: too long to hold
    assert not buf.covers(0, 85 * ms, 0.05)  # the 60 ms hole
    assert buf.covers(0, 85 * ms, 0.06) and buf.covers(0, 100 * ms, 0.06)


def test_accelerometer_bias_is_separated_from_gravity_when_the_vehicle_turns():
    # a constant turn with a body-frame accelerometer bias: gravity alone cannot explain it (the
    # bias rotates in the odom frame), the filter must find both; without estimation the gravity
    # estimate chases the rotating bias and the prediction is worse
    w, v, bias = 0.3, 8.0, np.array([0.08, -0.05, 0.04])

    def pose(t: float) -> np.ndarray:  # the circle, in closed form
        return make_pose(yaw_pitch_roll_matrix(w * t), [v / w * np.sin(w * t), v / w * (1 - np.cos(w * t)), 0.0])

    buf = ImuBuffer(np.eye(3), horizon_s=60.0)  # the whole drive stays in the buffer
    for t in np.arange(0.0, 40.0 + 1e-9, 1.0 / 200):
        buf.add(int(round(t * 1e9)), np.array([0.0, 0.0, w]), np.array([0.0, v * w, 9.81]) + bias)
    errs = {}
    for on in (False, True):
        state = InertialState(accel_bias=on, gravity_norm=9.81)
        prev, errs[on] = pose(0.0), []
        for k in range(1, 400):
            t0, t1 = (k - 1) * 0.1, k * 0.1
            pre = buf.preintegrate(int(round(t0 * 1e9)), int(round(t1 * 1e9)), None, state.accel_bias)
            truth = pose_inverse(pose(t0)) @ pose(t1)
            errs[on].append(np.linalg.norm(state.predict(pre, prev[:3, :3])[:3, 3] - truth[:3, 3]))
            state.update(pre, prev[:3, :3], truth, 0.1)
            prev = pose(t1)
        if on:
            np.testing.assert_allclose(state.accel_bias, bias, atol=0.01)
            np.testing.assert_allclose(state.gravity, G, atol=0.01)
        else:
            assert np.all(state.accel_bias == 0)
    # the prediction over the last 10 s: bias estimated vs absorbed by gravity
    assert np.mean(errs[True][-100:]) < 0.5 * np.mean(errs[False][-100:])


def test_a_degenerate_axis_tells_the_bias_filter_nothing():
    # at rest, then one scan registered 2 mm off along x: along a free axis (degenerate scan,
    # position = the IMU's prediction) that is no evidence of bias or gravity error; elsewhere it is
    buf = ImuBuffer(np.eye(3))
    for t in np.arange(0.0, 0.5 + 1e-9, 1.0 / 200):
        buf.add(int(round(t * 1e9)), np.zeros(3), np.array([0.0, 0.0, 9.81]))
    moved = make_pose(np.eye(3), [0.002, 0.0, 0.0])
    after = {}
    for free in (None, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])):
        state = InertialState(accel_bias=True, gravity_norm=9.81)
        for k, delta in enumerate([np.eye(4), np.eye(4), moved]):
            pre = buf.preintegrate(int(k * 1e8), int((k + 1) * 1e8), None, state.accel_bias)
            state.update(pre, np.eye(3), delta, 0.1, free if k == 2 else None)
        after[None if free is None else int(np.argmax(free))] = np.concatenate([state.gravity, state.accel_bias])
    assert np.abs(after[None] - after[0]).max() > 1e-3  # seen: the 2 mm moved the estimates
    np.testing.assert_allclose(after[0][:2], [0.0, 0.0], atol=1e-6)  # free along x: x untouched
    np.testing.assert_allclose(after[0][3:5], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(after[1], after[None], atol=1e-9)  # free along y changes nothing here


def _ramp_pose(t: float, w0: float, beta: float, v0: float, a: float) -> np.ndarray:
    """Planar motion whose yaw rate ramps (w0 + beta t) while the speed ramps (v0 + a t)."""
    ts = np.linspace(0, t, 4001)
    yaw = w0 * ts + 0.5 * beta * ts**2
    speed = v0 + a * ts
    x = np.trapezoid(speed * np.cos(yaw), ts)
    y = np.trapezoid(speed * np.sin(yaw), ts)
    return make_pose(yaw_pitch_roll_matrix(w0 * t + 0.5 * beta * t**2), [x, y, 0.0])


def test_imu_deskews_a_sweep_whose_turn_rate_changes():
    # A 5 Hz sweep (points over the 0.2 s after the stamp) while the yaw rate and the speed ramp:
    # the constant twist of the interval before the scan deskews it with last interval's turn
    # rate, the IMU with the sweep's own.
    from lkd_perception.odometry.registration import ScanMotion

    w0, beta, v0, a = 0.1, 0.5, 8.0, 2.0
    buf = ImuBuffer(np.eye(3))
    for t in np.arange(0.0, 1.5, 1.0 / 200.0):
        w = w0 + beta * t
        buf.add(int(round(t * 1e9)), np.array([0.0, 0.0, w]), np.array([a, (v0 + a * t) * w, 9.81]))
    t_prev, t_scan, sweep_s = 0.8, 1.0, 0.2
    rng = np.random.default_rng(0)
    world = rng.uniform([-30, -30, -2], [30, 30, 5], size=(400, 3))
    times = np.sort(rng.uniform(0.0, sweep_s, size=len(world)))
    measured = np.array([
        (pose_inverse(_ramp_pose(t_scan + tau, w0, beta, v0, a)) @ np.append(X, 1.0))[:3]
        for X, tau in zip(world, times)
    ])
    T_prev, T_scan = _ramp_pose(t_prev, w0, beta, v0, a), _ramp_pose(t_scan, w0, beta, v0, a)
    truth = (world - T_scan[:3, 3]) @ T_scan[:3, :3]
    ns = lambda t: int(round(t * 1e9))  # noqa: E731
    pre = buf.preintegrate(ns(t_prev), ns(t_scan))
    sweep = buf.sweep(ns(t_scan), times)
    imu = ImuDeskew(sweep, pre, T_prev[:3, :3].T @ G)
    with_imu = ScanMotion(times, T_prev, t_scan - t_prev, imu).deskewed(measured, T_scan)
    with_twist = ScanMotion(times, T_prev, t_scan - t_prev).deskewed(measured, T_scan)
    err_imu = np.linalg.norm(with_imu - truth, axis=1)
    err_twist = np.linalg.norm(with_twist - truth, axis=1)
    assert err_imu.max() < 0.005, err_imu.max()
    assert err_twist.max() > 10 * err_imu.max(), (err_twist.max(), err_imu.max())
    # a selection keeps each point's own motion
    idx = np.arange(0, len(world), 7)
    np.testing.assert_allclose(
        ScanMotion(times, T_prev, t_scan - t_prev, imu).select(idx).deskewed(measured[idx], T_scan),
        with_imu[idx],
    )


def test_batched_rotation_vectors_match_the_single_ones():
    # the IMU sweep turns every point with so3_exp_batch: it must agree with so3_exp, also for
    # the tiny angles of one IMU sample interval and for zero
    from lkd_perception.common.se3 import so3_exp, so3_exp_batch

    rng = np.random.default_rng(1)
    w = np.concatenate([rng.normal(size=(20, 3)), 1e-6 * rng.normal(size=(5, 3)), np.zeros((1, 3))])
    batch = so3_exp_batch(w)
    for wi, Ri in zip(w, batch):
        np.testing.assert_allclose(Ri, so3_exp(wi), atol=1e-12)


def test_a_late_mounting_turns_the_samples_already_buffered():
    """/tf_static may arrive after the first IMU messages: those samples are turned into the
    body frame of the new mounting, so the interval they cover integrates as if it had been known."""
    R = yaw_pitch_roll_matrix(np.pi / 2, 0.0, np.pi)  # upside down, turned 90 deg
    gyro_b, accel_b = np.array([0.0, 0.0, 0.3]), np.array([0.5, 0.0, 9.81])
    late, known = ImuBuffer(np.eye(3)), ImuBuffer(R)
    for i in range(21):
        for buf in (late, known):
            buf.add(i * 5_000_000, R.T @ gyro_b, R.T @ accel_b)
        if i == 10:
            late.set_extrinsic(R)
    a, b = late.preintegrate(0, 100_000_000), known.preintegrate(0, 100_000_000)
    np.testing.assert_allclose(late.R_base_imu, R)
    np.testing.assert_allclose(a.R, b.R, atol=1e-12)
    np.testing.assert_allclose(a.dv, b.dv, atol=1e-12)
    np.testing.assert_allclose(b.dv, accel_b * 0.1, atol=0.01)  # the upward force, not a downward one


def _straight_drive(state: InertialState, positions: np.ndarray, cov: np.ndarray, dt: float = 0.1) -> np.ndarray:
    """Feed registered positions of a level drive (IMU: only gravity's reaction) to ``state``;
    the body velocity after each interval."""
    f = np.array([0.0, 0.0, 9.81])
    pre = Preintegrated(np.eye(3), f * dt, 0.5 * f * dt**2, dt)
    out = []
    for k in range(1, len(positions)):
        state.update(pre, np.eye(3), make_pose(np.eye(3), positions[k] - positions[k - 1]), dt, position_cov=cov)
        out.append(state.velocity.copy())
    return np.array(out)


def test_the_imu_keeps_registration_noise_out_of_the_velocity():
    """A centimetre of registration noise is 0.14 m/s of velocity noise at 10 Hz when the velocity
    is a difference of two poses; fused with the IMU's propagation it is several times smaller."""
    rng = np.random.default_rng(0)
    truth = np.array([10.0, 0.0, 0.0])
    positions = np.arange(301)[:, None] * 0.1 * truth + rng.normal(0.0, 0.01, (301, 3))
    rms = {}
    for sigma in (0.0, 0.01):
        v = _straight_drive(InertialState(registration_sigma=sigma), positions, np.eye(3) * 1e-6)
        rms[sigma] = float(np.sqrt(np.mean((v[50:] - truth) ** 2)))
    assert 0.1 < rms[0.0] < 0.2  # 0.01 * sqrt(2) / 0.1
    assert rms[0.01] < rms[0.0] / 2.5, rms


def test_a_weakly_constrained_axis_keeps_the_imu_velocity():
    """A registered jump along an axis the scan hardly constrains (its position variance large
    there, a corridor) does not enter the velocity; the same jump well constrained does."""
    truth = np.array([10.0, 0.0, 0.0])
    positions = np.arange(60)[:, None] * 0.1 * truth
    positions[-1, 0] += 0.3  # the last scan registered 0.3 m further along x
    weak = np.diag([1e2, 1e-6, 1e-6])
    v_weak = _straight_drive(InertialState(registration_sigma=0.01), positions, weak)[-1]
    v_firm = _straight_drive(InertialState(registration_sigma=0.01), positions, np.eye(3) * 1e-6)[-1]
    # what does get in is through the gravity estimate's moving average (measured 0.05 m/s)
    assert abs(v_weak[0] - truth[0]) < 0.1, v_weak
    assert v_firm[0] - truth[0] > 0.3, v_firm
