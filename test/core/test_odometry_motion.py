"""IMU preintegration and the velocity/gravity state on exact synthetic motion."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, pose_inverse, rotation_angle, yaw_pitch_roll_matrix
from lkd_perception.odometry.motion import ImuBuffer, InertialState

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
        pre = buf.preintegrate(int(round(t0 * 1e9)), int(round(t1 * 1e9)))
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
