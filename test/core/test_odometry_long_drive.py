"""The long-drive memory benchmark's plumbing, and the two pieces that keep a long run bounded:
the IMU made a chunk at a time and the per-scan anchor log that moves full blocks to a file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lkd_perception.cli import main
from lkd_perception.common.errors import InputError
from lkd_perception.odometry.backend import _AnchorLog
from lkd_perception.odometry.long_drive import LongDriveSettings
from lkd_perception.sim.drive import START_NS, DriveSimulator, make_config
from lkd_perception.sim.sensors import ImuStream, simulate_imu


def test_imu_stream_in_one_chunk_is_simulate_imu_and_continues_across_chunks():
    sim = DriveSimulator(make_config("loop", 4.0, 1))
    whole = simulate_imu(sim.trajectory, sim.rig, sim.cfg, np.random.default_rng([1, 2]), START_NS)
    one = ImuStream(sim.trajectory, sim.rig, sim.cfg, np.random.default_rng([1, 2]), START_NS).until(4.0)
    np.testing.assert_array_equal(one.series.stamps_ns, whole.series.stamps_ns)
    np.testing.assert_array_equal(one.series.gyro, whole.series.gyro)
    np.testing.assert_array_equal(one.accel_bias, whole.accel_bias)

    stream = ImuStream(sim.trajectory, sim.rig, sim.cfg, np.random.default_rng([1, 2]), START_NS)
    parts = [stream.until(t) for t in (0.5, 0.5, 2.013, 4.0)]
    assert len(parts[1].series.stamps_ns) == 0  # nothing new before the time asked
    stamps = np.concatenate([p.series.stamps_ns for p in parts])
    np.testing.assert_array_equal(stamps, whole.series.stamps_ns)  # every sample once, in order
    # the bias walks on from where the previous chunk left it: one step, not a fresh draw
    step = np.abs(parts[3].gyro_bias[0] - parts[2].gyro_bias[-1]).max()
    assert step < 10 * sim.cfg.gyro_bias_walk * np.sqrt(1.0 / sim.cfg.imu_rate_hz) < sim.cfg.gyro_bias_init


def test_anchor_log_moves_full_blocks_to_a_file_and_reads_them_back():
    log = _AnchorLog(block=5)
    rng = np.random.default_rng(0)
    rels = []
    for i in range(23):
        T = np.eye(4)
        T[:3] = rng.normal(size=(3, 4))
        log.append(1_000 + i, i // 3, T)
        rels.append(T)
    assert len(log) == 23 and log._spilled == 20 and len(log._rows) == 5  # only a block in memory
    stamps, kids, rel = log.arrays()
    np.testing.assert_array_equal(stamps, 1_000 + np.arange(23))
    np.testing.assert_array_equal(kids, np.arange(23) // 3)
    np.testing.assert_array_equal(rel, np.stack(rels))


def test_settings_are_checked():
    with pytest.raises(InputError, match="longer than the drive"):
        LongDriveSettings(minutes=0.1, segment_s=60.0).check()
    with pytest.raises(InputError, match="graph windows"):
        LongDriveSettings(graph_windows=(0, -1)).check()


@pytest.mark.slow
def test_bench_odometry_memory_samples_every_segment_of_each_window(tmp_path, capsys):
    out = tmp_path / "memory.json"
    rc = main(["bench", "odometry-memory", "--minutes", "0.1", "--segment", "3", "--warmup", "3",
               "--windows", "0,5", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [r["graph_window"] for r in result["runs"]] == [0, 5]
    for run in result["runs"]:
        segs = run["segments"]
        assert [s["sim_s"] for s in segs] == [3.0, 6.0]
        assert sum(s["scans"] for s in segs) == run["summary"]["scans"] == 60
        assert all(s["rss_mb"] > 0 and s["scans_per_cpu_s"] > 0 and math.isfinite(s["scans_per_cpu_s"]) for s in segs)
        # trimming gives back free heap only: never more than the process held, never nothing
        assert all(0 < s["rss_trimmed_mb"] <= s["rss_mb"] + 1.0 for s in segs)
        assert 0 < segs[0]["keyframes"] < segs[1]["keyframes"]
        summary = run["summary"]
        assert "error" not in summary and summary["skipped_scans"] == 0
        assert math.isfinite(summary["rss_growth_after_warmup_pct"])
        assert math.isfinite(summary["rss_trimmed_growth_after_warmup_pct"])
        assert summary["ape_rmse_m"] < 0.2  # measured 0.013 m on this 6 s drive
    unbounded, bounded = (r["segments"][-1] for r in result["runs"])
    assert unbounded["keyframes"] == bounded["keyframes"]  # the same drive
    assert unbounded["graph_variables"] == unbounded["keyframes"]
    assert bounded["graph_variables"] < 5 + 5 // 2 + 1 < unbounded["graph_variables"]
