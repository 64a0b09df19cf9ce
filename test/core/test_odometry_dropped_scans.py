"""Skipped scans (a live node that cannot keep up): the odometry stays on the ground truth.

The drive is the simulator's urban scenario through its first turn, the scans a busy node would
have processed (about 40 % dropped, in bursts of up to 5), and no IMU: the constant-velocity
prediction across a 0.6 s gap at the start of the turn is several degrees off, from where
point-to-plane registration alone settles in a wrong minimum (measured before the fix: APE
0.35 m and a 0.9 m jump on this segment; after: 0.03 m).
"""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
from lkd_perception.odometry.config import LoopConfig, OdometryConfig, extrinsic_list
from lkd_perception.odometry.dropout import scan_drop_mask
from lkd_perception.odometry.pipeline import LioPipeline, OdometryHealth
from lkd_perception.sim.drive import DriveSimulator, make_config

T0_S, T1_S = 28.0, 40.0  # the turn at 32 s


def test_drop_mask_fraction_and_bursts():
    keep = scan_drop_mask(6000, 0.4, seed=3, max_burst=5)
    assert keep[0] and abs((1 - keep.mean()) - 0.4) < 0.03
    gaps = np.diff(np.flatnonzero(keep)) - 1
    assert gaps.max() == 5 and np.count_nonzero(gaps >= 2) > 100  # bursts, none longer than 5
    assert scan_drop_mask(100, 0.0).all()
    # reproducible from its seed, and the seed is used
    np.testing.assert_array_equal(scan_drop_mask(500, 0.4, 1), scan_drop_mask(500, 0.4, 1))
    assert not np.array_equal(scan_drop_mask(500, 0.4, 1), scan_drop_mask(500, 0.4, 2))
    with pytest.raises(ValueError):
        scan_drop_mask(10, 1.0)


def _urban(**overrides) -> tuple[DriveSimulator, OdometryConfig]:
    """The urban drive and an odometry config with its extrinsics, loop closure off."""
    sim = DriveSimulator(make_config("urban", 600.0, 0))
    ext = sim.extrinsics()
    cfg = OdometryConfig(base_T_lidar=extrinsic_list(ext.T_base_lidar), base_T_imu=extrinsic_list(ext.T_base_imu),
                         loop=LoopConfig(enabled=False), **overrides)
    return sim, cfg


def _run(sim: DriveSimulator, cfg: OdometryConfig, times: np.ndarray, keep: np.ndarray, imu=None):
    """The kept scans (and IMU samples ``(stamps, gyro, accel)`` up to each scan's end) through the
    pipeline: trajectory metrics against ground truth and the per-scan health."""
    p = LioPipeline(cfg)
    k, stamps, poses, statuses = 0, [], [], []
    for t in times[keep]:
        scan = sim.scan(t)
        while imu is not None and k < len(imu[0]) and imu[0][k] <= scan.stamp_ns + 110_000_000:
            p.add_imu(int(imu[0][k]), imu[1][k], imu[2][k])
            k += 1
        r = p.add_scan(scan.stamp_ns, scan.cloud)
        stamps.append(r.stamp_ns)
        poses.append(r.pose)
        statuses.append(r.health)
    gt_stamps, gt_poses = sim.gt()
    m = evaluate_trajectory(Trajectory(np.array(stamps), np.stack(poses)), Trajectory(gt_stamps, gt_poses))
    return m, statuses


@pytest.mark.slow
def test_turn_with_dropped_scans_and_no_imu_stays_on_ground_truth():
    sim, cfg = _urban(use_imu=False)
    times = sim.scan_times()
    i0, i1 = int(T0_S * 10), int(T1_S * 10)
    keep = scan_drop_mask(len(times), 0.4, seed=1, max_burst=5)[i0:i1]
    assert np.diff(np.flatnonzero(keep)).max() == 6  # a burst of 5 skipped scans is in the segment
    m, statuses = _run(sim, cfg, times[i0:i1], keep)
    assert m.ape_translation_m.rmse < 0.1
    assert m.rpe_frame_translation_m.max < 0.4
    assert sum(s is OdometryHealth.OK for s in statuses) >= 0.9 * len(statuses)


@pytest.mark.slow
def test_turn_with_skipped_scans_and_lost_imu_bursts_stays_on_ground_truth():
    # What the live node saw in the 10-minute soak: half of the scans skipped in runs of up to 1.5 s
    # and a quarter of the IMU messages lost in bursts of up to 150 ms. Refusing any IMU window with
    # a hole over 50 ms fell back to constant velocity through the turn and lost track (APE 2.9 m
    # on this segment); bridging holes up to imu_max_gap_s (0.3 s) keeps it at about 6 cm.
    sim, cfg = _urban()
    assert cfg.imu_max_gap_s >= 0.15
    times = sim.scan_times()
    i0, i1 = 260, 420  # 26-42 s, through the turn at 32 s
    keep = scan_drop_mask(len(times), 0.5, seed=2, max_burst=15)[i0:i1]
    assert np.diff(np.flatnonzero(keep)).max() >= 10  # a second or more without a scan
    imu = sim.imu().series
    ikeep = scan_drop_mask(len(imu.stamps_ns), 0.25, seed=5, max_burst=30)
    m, _ = _run(sim, cfg, times[i0:i1], keep, (imu.stamps_ns[ikeep], imu.gyro[ikeep], imu.accel[ikeep]))
    assert m.ape_translation_m.rmse < 0.15
    assert m.rpe_frame_translation_m.max < 0.5
