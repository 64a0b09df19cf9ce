"""`lkd odometry` on a simulated bag and `lkd evaluate odometry` on TUM files (real CLI path)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lkd_perception.cli import main
from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.io.formats import read_tum, write_tum


def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    stamps = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 100_000_000
    a = np.linspace(0, 2 * np.pi, n)
    poses = np.stack(
        [make_pose(yaw_pitch_roll_matrix(t + np.pi / 2), [20 * np.cos(t), 20 * np.sin(t), 0.0]) for t in a]
    )
    return stamps, poses


def test_evaluate_odometry_reports_known_error_and_draws(tmp_path):
    stamps, gt = _circle(200)
    pred = gt.copy()
    pred[:, 2, 3] += 0.2 * np.tile([1.0, -1.0, -1.0, 1.0], 50)  # alignment cannot remove this
    A = make_pose(yaw_pitch_roll_matrix(0.4), [3.0, -1.0, 0.5])
    pred = np.einsum("ij,njk->nik", A, pred)
    write_tum(tmp_path / "gt.tum", stamps, gt)
    write_tum(tmp_path / "pred.tum", stamps, pred)
    loops = [{"from_stamp_ns": int(stamps[5]), "to_stamp_ns": int(stamps[195]), "rmse_m": 0.1}]
    (tmp_path / "loops.json").write_text(json.dumps(loops))
    rc = main(
        [
            "evaluate",
            "odometry",
            "--pred",
            str(tmp_path / "pred.tum"),
            "--gt",
            str(tmp_path / "gt.tum"),
            "--plot",
            str(tmp_path / "traj.png"),
            "--loops",
            str(tmp_path / "loops.json"),
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["matched_poses"] == 200
    assert m["ape_translation_m"]["rmse"] == pytest.approx(0.2, abs=1e-3)
    assert m["drift"]["lengths_m"] == [100.0]  # the 125 m circle fits only the 100 m segment
    assert (tmp_path / "traj.png").stat().st_size > 1000


def test_evaluate_odometry_rejects_disjoint_stamps(tmp_path):
    stamps, gt = _circle(20)
    write_tum(tmp_path / "gt.tum", stamps, gt)
    write_tum(tmp_path / "pred.tum", stamps + 10_000_000_000, gt)
    assert main(["evaluate", "odometry", "--pred", str(tmp_path / "pred.tum"), "--gt", str(tmp_path / "gt.tum")]) == 2


@pytest.mark.slow
def test_odometry_on_a_simulated_bag(tmp_path, capsys):
    out = tmp_path / "drive"
    assert main(["simulate", "--out", str(out), "--seconds", "3", "--no-camera", "--scenario", "loop"]) == 0
    bag = out / "drive.mcap"
    assert (
        main(["odometry", str(bag), "--out", str(tmp_path / "est.tum"), "--loops", str(tmp_path / "loops.json")]) == 0
    )
    assert json.loads((tmp_path / "loops.json").read_text()) == []  # 3 s: nothing to revisit
    est = read_tum(tmp_path / "est.tum")
    assert len(est) == 30
    assert (
        main(
            [
                "evaluate",
                "odometry",
                "--pred",
                str(tmp_path / "est.tum"),
                "--gt",
                str(out / "gt" / "trajectory.tum"),
                "--out",
                str(tmp_path / "m.json"),
                "--loops",
                str(tmp_path / "loops.json"),
                "--plot",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "p.png").is_file()
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["matched_poses"] == 30
    assert m["ape_translation_m"]["rmse"] < 0.1


def test_odometry_config_file_plain_or_parameter_file(tmp_path):
    """``lkd odometry --config`` takes the OdometryConfig keys (a section as a nested mapping) or the
    nodes' parameter file; both give the same config."""
    from lkd_perception.commands.odometry import _load_config
    from lkd_perception.odometry.config import KeyframeConfig, LoopConfig, OdometryConfig

    plain = tmp_path / "odometry.yaml"
    plain.write_text("voxel_size: 0.6\nloop:\n  enabled: false\n  min_age_s: 5.0\nkeyframe:\n  distance: 3.0\n")
    params = tmp_path / "params.yaml"
    params.write_text("/**/lidar_odometry_node:\n  ros__parameters:\n    voxel_size: 0.6\n"
                      "    loop:\n      enabled: false\n      min_age_s: 5.0\n    keyframe:\n      distance: 3.0\n")
    expected = OdometryConfig(voxel_size=0.6, loop=LoopConfig(enabled=False, min_age_s=5.0),
                              keyframe=KeyframeConfig(distance=3.0))
    assert _load_config(str(plain)) == expected
    assert _load_config(str(params)) == expected
