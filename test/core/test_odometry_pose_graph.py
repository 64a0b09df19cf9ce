"""The GTSAM iSAM2 pose graph closes a true loop and shrugs off a false one (real GTSAM)."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, pose_inverse, so3_exp, yaw_pitch_roll_matrix
from lkd_perception.odometry.pose_graph import PoseGraph

N = 80  # a 20 m x 20 m square, 1 m steps


def _square() -> list[np.ndarray]:
    poses, T = [], np.eye(4)
    for i in range(N):
        poses.append(T.copy())
        T = T @ make_pose(yaw_pitch_roll_matrix(np.pi / 2 if i % 20 == 19 else 0.0), [1.0, 0.0, 0.0])
    return poses


def _drifting_graph(gt: list[np.ndarray], robust: str) -> PoseGraph:
    rng = np.random.default_rng(2)
    g = PoseGraph()
    g.add_variable(0, gt[0])
    g.fix_variable(0, gt[0])
    est = gt[0]
    for i in range(1, N):
        d = pose_inverse(gt[i - 1]) @ gt[i]
        # odometry noise at the factor sigmas: a random walk that drifts by metres over the square
        d = d @ make_pose(so3_exp(rng.normal(0, 0.01, 3)), rng.normal(0, 0.05, 3))
        est = est @ d
        g.add_variable(i, est)
        g.add_factor(i - 1, i, d, 0.01, 0.05)
        g.optimize()
    return g


def _end_error(g: PoseGraph, gt: list[np.ndarray]) -> float:
    return float(np.linalg.norm(g.estimate(N - 1)[:3, 3] - gt[N - 1][:3, 3]))


def _max_error(g: PoseGraph, gt: list[np.ndarray]) -> float:
    est = g.estimates()
    return max(float(np.linalg.norm(est[i][:3, 3] - gt[i][:3, 3])) for i in range(N))


@pytest.mark.parametrize("robust", ["cauchy", "huber"])
def test_true_loop_reduces_drift_and_false_loop_is_shrugged_off(robust):
    gt = _square()
    g = _drifting_graph(gt, robust)
    before = _end_error(g, gt)
    assert before > 1.5
    g.add_factor(N - 1, 0, pose_inverse(gt[N - 1]) @ gt[0], 0.02, 0.1, robust)
    g.optimize(relinearize_all=True)
    assert _end_error(g, gt) < 0.25 * before
    assert g.rejected_loops == [] and g.global_solves == 1
    closed = _max_error(g, gt)
    # a second true loop now agrees with the corrected estimate: added incrementally, no global solve
    g.add_factor(N - 2, 1, pose_inverse(gt[N - 2]) @ gt[1], 0.02, 0.1, robust)
    g.optimize(relinearize_all=True)
    assert g.global_solves == 1 and _max_error(g, gt) < closed + 0.05
    closed = _max_error(g, gt)
    # a wrong loop: claims pose 60 sits 8 m / 17 deg off from where pose 10 really is
    wrong = pose_inverse(gt[60]) @ gt[10] @ make_pose(yaw_pitch_roll_matrix(0.3), [8.0, 3.0, 0.0])
    g.add_factor(60, 10, wrong, 0.02, 0.1, robust)
    g.optimize(relinearize_all=True)
    assert g.rejected_loops == [(60, 10)] and g.global_solves == 2
    assert _max_error(g, gt) < closed + 0.05


def test_without_robust_kernel_the_false_loop_bends_the_map():
    """Shows the test above can fail: the same wrong loop with a plain Gaussian does damage."""
    gt = _square()
    g = _drifting_graph(gt, "none")
    g.add_factor(N - 1, 0, pose_inverse(gt[N - 1]) @ gt[0], 0.02, 0.1, "none")
    g.optimize(relinearize_all=True)
    closed = _max_error(g, gt)
    wrong = pose_inverse(gt[60]) @ gt[10] @ make_pose(yaw_pitch_roll_matrix(0.3), [8.0, 3.0, 0.0])
    g.add_factor(60, 10, wrong, 0.02, 0.1, "none")
    g.optimize(relinearize_all=True)
    assert _max_error(g, gt) > closed + 0.5


def test_incremental_updates_pass_only_new_factors():
    g = PoseGraph()
    g.add_variable(0, np.eye(4))
    g.fix_variable(0, np.eye(4))
    g.optimize()
    for i in range(1, 5):
        g.add_variable(i, make_pose(translation=[i, 0, 0]))
        g.add_factor(i - 1, i, make_pose(translation=[1.0, 0, 0]), 0.01, 0.01)
        g.optimize()  # would raise "key already exists" if old values were re-sent
    np.testing.assert_allclose(g.estimate(4)[:3, 3], [4.0, 0.0, 0.0], atol=1e-6)
    with pytest.raises(InputError):
        g.add_variable(2, np.eye(4))
    with pytest.raises(InputError):
        g.add_factor(3, 9, np.eye(4), 0.1, 0.1)


def test_a_failed_update_does_not_lose_the_graph():
    """iSAM2 keeps the values of an update that raised (here: a variable held only by a factor of
    near-zero information makes the system indeterminate); without a rebuild every later keyframe
    failed with "key already exists" for the rest of the drive."""
    step = make_pose(np.eye(3), [1.0, 0.0, 0.0])
    g = PoseGraph()
    g.add_variable(0, np.eye(4))
    g.fix_variable(0, np.eye(4))
    g.add_variable(1, step)
    g.add_factor(0, 1, step, 0.01, 0.05)
    g.optimize()
    g.add_variable(2, step @ step)
    g.add_factor(1, 2, step, 1e9, 1e9)  # no information on x2
    g.optimize()
    g.add_variable(3, step @ step @ step)
    g.add_factor(2, 3, step, 0.01, 0.05)
    g.optimize()  # indeterminate near x2: rebuilt, not raised
    assert g.restarts == 1
    for k in (4, 5):
        g.add_variable(k, make_pose(np.eye(3), [float(k), 0.0, 0.0]))
        g.add_factor(k - 1, k, step, 0.01, 0.05)
        g.optimize()
    assert g.restarts == 1
    np.testing.assert_allclose(g.estimate(1)[:3, 3], [1.0, 0.0, 0.0], atol=1e-6)  # the anchored part is kept
    np.testing.assert_allclose(g.estimate(5)[:3, 3] - g.estimate(3)[:3, 3], [2.0, 0.0, 0.0], atol=1e-6)


def test_retired_variables_stay_fixed_and_still_close_loops():
    """Bounded memory: the older half of the square leaves iSAM2 fixed at its estimate; a loop to a
    retired pose still pulls the live end back, and a wrong one to a retired pose is rejected."""
    gt = _square()
    g = _drifting_graph(gt, "cauchy")
    full = g.graph_factors
    before = _end_error(g, gt)
    fixed = {k: g.estimate(k) for k in range(40)}
    assert g.retire(40) == 40 and g.retire(40) == 0
    # measured 40 of 80 factors: the retired odometry chain became one prior on pose 40
    assert g.live_variables == N - 40 and g.graph_factors < 0.6 * full
    assert set(g.estimates()) == set(range(N)) and len(g.estimates_view()) == N and 5 in g.estimates_view()
    g.add_factor(N - 1, 0, pose_inverse(gt[N - 1]) @ gt[0], 0.02, 0.1, "cauchy")  # to a retired pose
    g.optimize(relinearize_all=True)
    # measured 2.19 -> 0.03 m (0.04 m with the whole graph live)
    assert _end_error(g, gt) < 0.25 * before, (before, _end_error(g, gt))
    for k, T in fixed.items():
        np.testing.assert_array_equal(g.estimate(k), T)  # the retired part does not move
    closed = _max_error(g, gt)
    wrong = pose_inverse(gt[60]) @ gt[10] @ make_pose(yaw_pitch_roll_matrix(0.3), [8.0, 3.0, 0.0])
    g.add_factor(60, 10, wrong, 0.02, 0.1, "cauchy")
    g.optimize(relinearize_all=True)
    assert g.rejected_loops == [(10, 60)]  # kept as a prior on the live end, the ends swapped
    assert _max_error(g, gt) < closed + 0.05
    with pytest.raises(InputError, match="both retired"):
        g.add_factor(3, 7, np.eye(4), 0.1, 0.1)
    with pytest.raises(InputError, match="no live variable"):
        g.retire(N)
