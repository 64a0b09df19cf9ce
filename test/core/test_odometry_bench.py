"""The odometry benchmark in the core: both methods on the same kept scans of a short drive."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.odometry.bench import BenchSettings, format_table, rate_plan, run_benchmark, seed_summary
from lkd_perception.odometry.dropout import scan_drop_mask


def test_rate_plan_spins_or_subsamples():
    assert rate_plan(20.0) == (20.0, 1)
    assert rate_plan(5.0) == (5.0, 1)
    assert rate_plan(2.5) == (10.0, 4)  # keyframe-only input: every 4th scan of a 10 Hz sensor
    with pytest.raises(InputError, match="positive"):
        rate_plan(0.0)


@pytest.mark.slow
def test_both_methods_see_the_same_kept_scans():
    settings = BenchSettings(scenarios=("urban",), seconds=3.0, drop_fraction=0.3, drop_seed=2, rates_hz=(10.0,))
    result = run_benchmark(settings)
    rows = result["results"]
    assert [r["method"] for r in rows] == ["lkd", "kiss_icp"]
    scans = rows[0]["scans"]
    assert scans == 30
    kept = int(scan_drop_mask(scans, 0.3, 2, 5).sum())
    assert 0 < kept < scans and all(r["kept_scans"] == kept for r in rows)
    lkd = rows[0]
    assert lkd["imu"] and lkd["skipped_scans"] == 0 and lkd["loop_closures"] == 0
    assert lkd["ape_rmse_m"] < 0.1  # measured 0.016 m over this 3 s drive with 30 % of the scans dropped
    assert np.isfinite(rows[1]["ape_rmse_m"])
    table = format_table(rows).splitlines()
    assert len(table) == 3 and table[1].split()[:4] == ["urban", "0", "10", "lkd"]


def test_seed_summary_takes_mean_and_worst_per_drive_type():
    def row(seed: int, method: str, ape: float, drift: float | None) -> dict:
        return {"scenario": "corridor", "rate_hz": 10.0, "method": method, "seed": seed, "ape_rmse_m": ape,
                "drift_pct": drift}

    rows = [row(0, "lkd", 0.8, 0.7), row(1, "lkd", 0.1, 0.1), row(0, "kiss_icp", 11.0, 9.0),
            row(1, "kiss_icp", 20.0, None)]
    lkd, kiss = seed_summary(rows)
    assert lkd["seeds"] == [0, 1] and lkd["ape_mean_m"] == pytest.approx(0.45) and lkd["ape_max_m"] == 0.8
    assert lkd["drift_mean_pct"] == pytest.approx(0.4) and lkd["drift_max_pct"] == 0.7
    assert kiss["drift_mean_pct"] == 9.0  # a drive too short for drift is left out, not counted as zero


@pytest.mark.slow
def test_settings_changed_for_a_run_reach_our_odometry():
    base = BenchSettings(scenarios=("loop",), seconds=3.0, rates_hz=(5.0,))
    default = run_benchmark(base)
    twist = run_benchmark(BenchSettings(scenarios=("loop",), seconds=3.0, rates_hz=(5.0,),
                                        overrides=(("imu_deskew", False),)))
    assert twist["overrides"] == {"imu_deskew": False} and default["overrides"] == {}
    ours = [r for r in (default["results"][0], twist["results"][0])]
    assert all(r["method"] == "lkd" for r in ours)
    # the deskew changed ours, not KISS-ICP (whose last digits vary from run to run)
    assert abs(ours[0]["ape_rmse_m"] - ours[1]["ape_rmse_m"]) > 1e-4
    assert default["results"][1]["ape_rmse_m"] == pytest.approx(twist["results"][1]["ape_rmse_m"], rel=1e-9)
