"""The odometry pipeline on a ray-cast sequence: accuracy, loop closure, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import pose_inverse, rotation_angle
from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
from lkd_perception.io.codecs import Cloud
from lkd_perception.odometry.config import KeyframeConfig, OdometryConfig
from lkd_perception.odometry.pipeline import LioPipeline, OdometryHealth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "odometry"))
import scene  # noqa: E402


def _run(p: LioPipeline, seq: scene.Sequence):
    imu = list(seq.imu)
    k = 0
    results = []
    for stamp, cloud in seq.scans:
        while k < len(imu) and imu[k][0] <= stamp + 110_000_000:
            p.add_imu(*imu[k])
            k += 1
        results.append(p.add_scan(stamp, cloud))
    return results


@pytest.fixture(scope="module")
def short_seq() -> scene.Sequence:
    return scene.make_sequence(seconds=4.0, seed=0)


def test_short_drive_is_accurate(short_seq):
    p = LioPipeline(OdometryConfig())
    res = _run(p, short_seq)
    np.testing.assert_allclose(res[0].pose, np.eye(4))
    assert res[0].keyframe and sum(r.keyframe for r in res) >= 5  # 20 m at 2 m per keyframe
    assert max(r.bev_inliers for r in res) >= 10  # BEV rows took part
    est = Trajectory(np.array([r.stamp_ns for r in res]), np.stack([r.pose for r in res]))
    m = evaluate_trajectory(est, Trajectory(short_seq.gt_stamps_ns, short_seq.gt_poses))
    assert m.ape_translation_m.rmse < 0.15
    assert m.rpe_frame_translation_m.rmse < 0.05


def test_bad_scans_are_reported_and_skipped(short_seq):
    p = LioPipeline(OdometryConfig())
    scans = short_seq.scans
    p.add_scan(*scans[0])
    with pytest.raises(InputError, match="valid points"):
        p.add_scan(scans[1][0], Cloud(np.zeros((0, 3), np.float32)))
    with pytest.raises(InputError, match="non-finite"):
        p.add_scan(scans[1][0], Cloud(np.full((500, 3), np.nan, np.float32)))
    with pytest.raises(InputError, match="not after"):
        p.add_scan(scans[0][0], scans[1][1])
    with pytest.raises(InputError):
        p.add_imu(0, np.array([np.nan, 0, 0]), np.zeros(3))
    with pytest.raises(InputError, match="before the first scan"):
        p.set_lidar_extrinsic(np.eye(4))
    with pytest.raises(InputError, match="before the first scan"):
        p.set_imu_extrinsic(np.eye(4))
    # the state is untouched: the next good scans give exactly what a clean run gives
    r1 = p.add_scan(*scans[1])
    r2 = p.add_scan(*scans[2])
    clean = LioPipeline(OdometryConfig())
    for s in scans[:3]:
        ref = clean.add_scan(*s)
    np.testing.assert_allclose(r2.pose, ref.pose, atol=1e-9)
    assert r1.health is OdometryHealth.OK and r1.trusted, r1.summary


# in_memory 3: all but the newest keyframes read back from disk; graph_window 20: the start of the
# lap has left the pose graph when the vehicle comes back to it
@pytest.mark.parametrize("in_memory, graph_window", [(200, 0), (3, 0), (200, 20)])
@pytest.mark.slow
def test_loop_is_closed_on_a_revisit(in_memory, graph_window):
    seq = scene.make_sequence(seconds=33.0, seed=0)  # one lap of the 25 m circle is 31.4 s
    cfg = OdometryConfig(keyframe=KeyframeConfig(in_memory=in_memory, graph_window=graph_window))
    p = LioPipeline(cfg)
    res = _run(p, seq)
    if in_memory < len(p.backend.keyframes):
        assert p.backend.keyframes.spilled_bytes > 0
    loops = [lc for r in res for lc in r.loop_closures]
    assert loops, "no loop closed on a second pass over the start"
    assert all(lc.from_id < lc.to_id and lc.rmse <= cfg.loop.max_rmse for lc in loops)
    # after an accepted loop the search rests for loop.cooldown_keyframes keyframes
    assert cfg.loop.cooldown_keyframes > 0
    assert all(b.to_id - a.to_id > cfg.loop.cooldown_keyframes for a, b in zip(loops, loops[1:]))
    assert not np.allclose(res[-1].map_T_odom, np.eye(4))
    if graph_window:
        assert p.backend.graph.live_variables < 1.5 * graph_window < len(p.backend.keyframes)
        assert loops[0].from_id < loops[0].to_id - 1.5 * graph_window  # a loop to a keyframe retired by then
    # each loop's relative pose agrees with the ground truth between its two keyframes
    stamp_of = p.backend.keyframes.stamps
    index_of = {int(s): i for i, s in enumerate(seq.gt_stamps_ns)}
    for lc in loops:
        T_from, T_to = seq.gt_poses[index_of[stamp_of[lc.from_id]]], seq.gt_poses[index_of[stamp_of[lc.to_id]]]
        err = pose_inverse(pose_inverse(T_from) @ T_to) @ lc.T_from_to
        assert np.linalg.norm(err[:3, 3]) < 0.15
        assert np.degrees(rotation_angle(err[:3, :3])) < 1.0


def test_a_malformed_mounting_is_refused_and_the_old_one_kept():
    p = LioPipeline(OdometryConfig())
    with pytest.raises(InputError, match="4x4"):
        p.set_lidar_extrinsic(np.eye(3))
    with pytest.raises(InputError, match="orthonormal"):
        p.set_imu_extrinsic(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="finite"):
        p.set_imu_extrinsic(np.full((4, 4), np.nan))
    np.testing.assert_allclose(p.imu.R_base_imu, np.eye(3))
    np.testing.assert_allclose(p.T_base_lidar, np.eye(4))
