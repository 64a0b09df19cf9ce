"""Trajectory metrics on synthetic SE(3) data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.eval.trajectory import (
    Trajectory,
    align_se3,
    associate,
    evaluate_trajectory,
    kitti_drift,
    rpe_frames,
    umeyama,
)


def _line(n: int, step_m: float = 1.0) -> np.ndarray:
    return np.stack([make_pose(translation=[i * step_m, 0.0, 0.0]) for i in range(n)])


def _stamps(n: int, dt_s: float = 0.1) -> np.ndarray:
    return (np.arange(n) * dt_s * 1e9).astype(np.int64)


def _curvy(n: int) -> np.ndarray:
    yaw = np.cumsum(np.full(n, 0.02))
    pos = np.cumsum(np.stack([np.cos(yaw), np.sin(yaw), 0.01 * np.sin(np.arange(n) / 10)], 1), axis=0)
    return np.stack(
        [make_pose(yaw_pitch_roll_matrix(y, 0.01 * np.sin(i / 7)), p) for i, (y, p) in enumerate(zip(yaw, pos))]
    )


def test_rigidly_moved_estimate_has_zero_error_after_alignment():
    gt = _curvy(400)
    A = make_pose(yaw_pitch_roll_matrix(0.7, 0.1, -0.2), [5.0, -3.0, 2.0])
    est = np.einsum("ij,njk->nik", A, gt)
    m = evaluate_trajectory(Trajectory(_stamps(400), est), Trajectory(_stamps(400), gt))
    assert m.ape_translation_m.rmse < 1e-9
    assert m.ape_rotation_deg.rmse < 1e-5
    assert m.rpe_frame_translation_m.rmse < 1e-9
    assert m.drift is not None and m.drift.translation_pct < 1e-9
    np.testing.assert_allclose(m.alignment @ A, np.eye(4), atol=1e-9)


def test_ape_of_alternating_offset_is_the_offset():
    gt = _line(200)
    est = gt.copy()
    # pattern + - - + has zero mean and zero correlation with x, so alignment leaves it alone
    est[:, 2, 3] += 0.3 * np.tile([1.0, -1.0, -1.0, 1.0], 50)
    m = evaluate_trajectory(Trajectory(_stamps(200), est), Trajectory(_stamps(200), gt))
    assert m.ape_translation_m.rmse == pytest.approx(0.3, abs=1e-9)
    assert m.ape_translation_m.max == pytest.approx(0.3, abs=1e-9)
    # every other consecutive pair differs by 0.6 m vertically, the others by 0
    assert m.rpe_frame_translation_m.max == pytest.approx(0.6, abs=1e-9)
    assert m.rpe_frame_translation_m.rmse == pytest.approx(0.6 * np.sqrt(100 / 199), abs=1e-9)


def test_one_percent_scale_error_is_one_percent_drift():
    gt = _line(1001)
    est = gt.copy()
    est[:, :3, 3] *= 1.01
    d = kitti_drift(est, gt)
    assert d is not None
    assert d.lengths_m == (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
    assert d.translation_pct == pytest.approx(1.0, rel=1e-6)
    assert d.rotation_deg_per_100m == pytest.approx(0.0, abs=1e-9)


def test_constant_yaw_rate_error_gives_known_rotational_drift():
    n = 1001
    gt = _line(n)
    # the estimate turns by an extra 0.01 deg per metre (in place: positions unchanged)
    est = np.stack([make_pose(yaw_pitch_roll_matrix(np.radians(0.01 * i)), gt[i, :3, 3]) for i in range(n)])
    d = kitti_drift(est, gt)
    assert d is not None
    assert d.rotation_deg_per_100m == pytest.approx(1.0, rel=1e-6)


def test_short_sequence_uses_tenth_lengths_and_says_so():
    gt = _line(61)  # 60 m
    est = gt.copy()
    est[:, :3, 3] *= 1.02
    d = kitti_drift(est, gt)
    assert d is not None
    assert d.lengths_m == (10.0, 20.0, 30.0, 40.0, 50.0)
    assert d.translation_pct == pytest.approx(2.0, rel=1e-6)
    assert kitti_drift(_line(5), _line(5)) is None


def test_rpe_delta_one_detects_a_single_bad_step():
    gt = _line(50)
    est = gt.copy()
    est[25:, 1, 3] += 0.5  # one jump of 0.5 m between frames 24 and 25
    t, _ = rpe_frames(est, gt, 1)
    assert t.max == pytest.approx(0.5, abs=1e-9)
    assert t.count == 49
    assert t.median == pytest.approx(0.0, abs=1e-12)


def test_association_tolerates_offsets_and_gaps():
    a = np.array([0, 100_000_000, 200_000_000, 305_000_000, 900_000_000], dtype=np.int64)
    b = np.array([1_000_000, 99_000_000, 300_000_000, 200_000_000], dtype=np.int64)
    ia, ib = associate(a, b, max_diff_s=0.01)
    assert ia.tolist() == [0, 1, 2, 3]
    assert ib.tolist() == [0, 1, 3, 2]


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    R = yaw_pitch_roll_matrix(0.3, -0.4, 1.0)
    dst = 2.5 * src @ R.T + np.array([1.0, 2.0, 3.0])
    R_est, t_est, s_est = umeyama(src, dst, with_scale=True)
    np.testing.assert_allclose(R_est, R, atol=1e-9)
    assert s_est == pytest.approx(2.5)
    np.testing.assert_allclose(t_est, [1.0, 2.0, 3.0], atol=1e-9)
    A = align_se3(
        np.stack([make_pose(translation=p) for p in src]), np.stack([make_pose(translation=p) for p in src @ R.T])
    )
    np.testing.assert_allclose(A[:3, :3], R, atol=1e-9)


def test_too_few_matches_is_an_input_error():
    gt = Trajectory(_stamps(10), _line(10))
    est = Trajectory(_stamps(10) + 5_000_000_000, _line(10))
    with pytest.raises(InputError, match="match"):
        evaluate_trajectory(est, gt)
    with pytest.raises(InputError):
        Trajectory(np.zeros(3, dtype=np.int64), np.zeros((2, 4, 4)))
