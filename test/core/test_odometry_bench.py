"""The odometry benchmark in the core: both methods on the same kept scans of a short drive."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.odometry.bench import BenchSettings, format_table, rate_plan, run_benchmark
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
    assert len(table) == 3 and table[1].split()[:3] == ["urban", "10", "lkd"]
