"""The odometry benchmark: ours and KISS-ICP on the same simulated scans, in one run.

For each scenario (``loop``, ``urban``, ``corridor``) and LiDAR rate, the drive is simulated once
and each method runs in its own forked process on the same kept scans (``drop_fraction``: the
subset a live node that cannot keep up sees), so that its speed and peak memory are its own.
Accuracy is measured against the simulator's ground truth (APE after SE(3) alignment, RPE,
KITTI drift). ``lkd bench odometry`` parses its arguments and prints what this returns.
The simulator, the pipeline and KISS-ICP are imported when a benchmark runs: the command line
reads :data:`MIN_SPIN_HZ` for its help.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any, Sequence

from lkd_perception.common.errors import InputError

METHODS = ("lkd", "kiss_icp")
MIN_SPIN_HZ = 5.0  # slowest spin rate simulated as such; slower input is a subsample of 10 Hz sweeps


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run compares on."""

    scenarios: tuple[str, ...] = ("loop", "urban", "corridor")
    seconds: float = 60.0
    seeds: tuple[int, ...] = (0,)  # one drive per seed: a single drive can mislead (the corridor is chaotic)
    drop_fraction: float = 0.0
    drop_seed: int = 0
    drop_burst: int = 5
    use_imu: bool = True
    rates_hz: tuple[float, ...] = (10.0,)
    overrides: tuple[tuple[str, Any], ...] = ()  # our odometry's settings changed (dotted name, value)


def rate_plan(rate_hz: float) -> tuple[float, int]:
    """(simulated spin rate, keep every k-th scan) for a requested input rate: at least
    :data:`MIN_SPIN_HZ` a sensor spinning at that rate, below it every k-th scan of a 10 Hz one."""
    if rate_hz <= 0:
        raise InputError(f"rates must be positive, got {rate_hz}")
    if rate_hz >= MIN_SPIN_HZ:
        return rate_hz, 1
    return 10.0, max(1, int(round(10.0 / rate_hz)))


def run_benchmark(settings: BenchSettings) -> dict[str, Any]:
    """Every (scenario, rate, method) row with its accuracy, speed and memory, and the settings."""
    import numpy as np

    from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
    from lkd_perception.odometry.dropout import scan_drop_mask
    from lkd_perception.sim.drive import simulate_drive

    plans = [rate_plan(r) for r in settings.rates_hz]
    ctx = mp.get_context("fork")
    rows = []
    for scenario, seed in ((sc, sd) for sc in settings.scenarios for sd in settings.seeds):
        for rate, (spin_hz, every) in zip(settings.rates_hz, plans):
            drive = simulate_drive(scenario, settings.seconds, seed, lidar_rate_hz=spin_hz)
            gt = Trajectory(drive.gt_stamps_ns, drive.gt_poses)
            keep = scan_drop_mask(len(drive.scans), settings.drop_fraction, settings.drop_seed, settings.drop_burst)
            keep &= np.arange(len(drive.scans)) % every == 0
            for method in METHODS:
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_run_method, args=(method, drive, keep, child, settings.use_imu, dict(settings.overrides))
                )
                proc.start()
                stamps, poses, info = parent.recv()
                proc.join()
                m = evaluate_trajectory(Trajectory(stamps, poses), gt)
                rows.append(
                    {
                        "scenario": scenario,
                        "seed": seed,
                        "rate_hz": rate,
                        "spin_hz": spin_hz,
                        "method": method,
                        "imu": method == "lkd" and settings.use_imu,
                        "scans": len(drive.scans),
                        "kept_scans": int(keep.sum()),
                        "gt_length_m": m.gt_length_m,
                        "ape_rmse_m": m.ape_translation_m.rmse,
                        "drift_pct": None if m.drift is None else m.drift.translation_pct,
                        "drift_deg_per_100m": None if m.drift is None else m.drift.rotation_deg_per_100m,
                        "drift_lengths_m": None if m.drift is None else list(m.drift.lengths_m),
                        "rpe_frame_m": m.rpe_frame_translation_m.rmse,
                        "rpe_100m_m": None if m.rpe_100m_translation_m is None else m.rpe_100m_translation_m.rmse,
                        **info,
                    }
                )
    return {
        "seconds": settings.seconds,
        "seeds": list(settings.seeds),
        "drop_fraction": settings.drop_fraction,
        "drop_seed": settings.drop_seed,
        "drop_burst": settings.drop_burst,
        "no_imu": not settings.use_imu,
        "overrides": dict(settings.overrides),
        "results": rows,
        "summary": seed_summary(rows),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a fixed-width table (NaN where a drift is undefined: a drive too short)."""
    lines = [
        f"{'scenario':9} {'seed':>4} {'Hz':>4} {'method':8} {'kept':>5} {'len m':>6} {'APE m':>7} {'drift %':>8} "
        f"{'deg/100m':>8} {'scans/s':>7} {'/cpu-s':>7} {'+RSS MB':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r['scenario']:9} {r['seed']:4d} {r['rate_hz']:4g} {r['method']:8} {r['kept_scans']:5d} "
            f"{r['gt_length_m']:6.0f} {r['ape_rmse_m']:7.3f} {_or_nan(r['drift_pct']):8.3f} "
            f"{_or_nan(r['drift_deg_per_100m']):8.3f} {r['scans_per_s']:7.1f} {r['scans_per_cpu_s']:7.1f} "
            f"{r['rss_growth_mb']:7.0f}"
        )
    return "\n".join(lines)


def seed_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario, rate and method over the seeds: mean and worst APE and drift, so that a
    claim about a drive type does not rest on one chaotic drive."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["rate_hz"], r["method"]), []).append(r)
    out = []
    for (scenario, rate, method), rs in groups.items():
        ape = [r["ape_rmse_m"] for r in rs]
        drift = [r["drift_pct"] for r in rs if r["drift_pct"] is not None]
        out.append({
            "scenario": scenario, "rate_hz": rate, "method": method, "seeds": [r["seed"] for r in rs],
            "ape_mean_m": sum(ape) / len(ape), "ape_max_m": max(ape),
            "drift_mean_pct": sum(drift) / len(drift) if drift else None,
            "drift_max_pct": max(drift) if drift else None,
        })
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """:func:`seed_summary` as a fixed-width table."""
    lines = [f"{'scenario':9} {'Hz':>4} {'method':8} {'seeds':>5} {'APE mean':>8} {'max':>7} {'drift %':>8} {'max':>7}"]
    for s in summary:
        lines.append(
            f"{s['scenario']:9} {s['rate_hz']:4g} {s['method']:8} {len(s['seeds']):5d} {s['ape_mean_m']:8.3f} "
            f"{s['ape_max_m']:7.3f} {_or_nan(s['drift_mean_pct']):8.3f} {_or_nan(s['drift_max_pct']):7.3f}"
        )
    return "\n".join(lines)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _run_method(method: str, drive, keep, conn, use_imu: bool, overrides: dict[str, Any]) -> None:
    """Child process body: run one method on the drive, send back poses, timings and peak RSS.

    Each method runs in its own forked process so that its peak memory and timing are its own
    (the drive itself, inherited from the parent, is included in both methods' RSS alike).
    """
    from lkd_perception.common.config import updated
    from lkd_perception.common.timing import current_rss_mb, peak_rss_mb
    from lkd_perception.odometry.config import OdometryConfig, extrinsic_list
    from lkd_perception.odometry.pipeline import LioPipeline, run_pipeline

    rss0 = current_rss_mb()
    scans = [(s.stamp_ns, s.cloud) for s, k in zip(drive.scans, keep) if k]
    t0, c0 = time.perf_counter(), time.process_time()
    extra: dict[str, Any] = {}
    if method == "lkd":
        cfg = OdometryConfig(
            base_T_lidar=extrinsic_list(drive.extrinsics.T_base_lidar),
            base_T_imu=extrinsic_list(drive.extrinsics.T_base_imu),
            use_imu=use_imu,
        )
        pipe = LioPipeline(updated(cfg, overrides))
        extra["skipped_scans"] = run_pipeline(pipe, scans, drive.imu.stamps_ns, drive.imu.gyro, drive.imu.accel)
        stamps, poses = pipe.map_trajectory()
        extra["loop_closures"] = len(pipe.loop_closures)
        extra["rejected_loops"] = len(pipe.backend.graph.rejected_loops)
    else:
        stamps, poses = _run_kiss(scans, drive.extrinsics.T_base_lidar)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_mb()
    conn.send(
        (
            stamps,
            poses,
            {
                "scans_per_s": len(scans) / wall,
                "scans_per_cpu_s": len(scans) / cpu,
                "rss_at_start_mb": rss0,
                "peak_rss_mb": peak,
                "rss_growth_mb": peak - rss0,
                **extra,
            },
        )
    )
    conn.close()


def _run_kiss(scans, T_base_lidar):
    """KISS-ICP 1.3.0 with its defaults on the same scans; poses mapped to base_link.

    KISS-ICP deskews to the middle of the sweep (normalised time 0.5), so its pose belongs to
    ``stamp + span / 2``; it is stamped there to be compared fairly against ground truth.
    """
    import numpy as np
    from kiss_icp.config import load_config
    from kiss_icp.kiss_icp import KissICP

    from lkd_perception.common.se3 import pose_inverse

    kiss = KissICP(load_config(None))
    stamps, poses = [], []
    T_lb = pose_inverse(T_base_lidar)
    for stamp, cloud in scans:
        t = cloud.time.astype(np.float64) if cloud.time is not None else np.zeros(len(cloud))
        span = max(float(t.max()), 1e-6)
        kiss.register_frame(cloud.xyz.astype(np.float64), t / span)
        stamps.append(stamp + int(round(span / 2 * 1e9)))
        poses.append(T_base_lidar @ kiss.last_pose @ T_lb)
    return np.asarray(stamps, np.int64), np.stack(poses)
