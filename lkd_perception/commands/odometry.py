"""``lkd odometry``, ``lkd evaluate odometry`` and ``lkd bench odometry``.

``odometry`` runs :class:`LioPipeline` over a bag and writes the loop-corrected (map-frame)
trajectory as TUM. ``evaluate odometry`` compares two TUM files (APE after SE(3) alignment,
RPE, KITTI-style drift) and can draw both. ``bench odometry`` simulates the ``loop``, ``urban``
and ``corridor`` drives and runs ours and KISS-ICP on the same scans in one process
(``--drop-fraction``: the same subset of scans, as a live node that cannot keep up sees them).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from lkd_perception.commands import Command, emit_json, progress
from lkd_perception.common.errors import InputError

log = logging.getLogger(__name__)


def _load_config(path: str | None):
    from lkd_perception.common.config import from_dict, load_yaml, node_parameters
    from lkd_perception.odometry.config import OdometryConfig

    if not path:
        return OdometryConfig()
    data = load_yaml(path)
    values = node_parameters(data, "lidar_odometry_node") if any(isinstance(v, dict) for v in data.values()) else data
    return from_dict(OdometryConfig, values, strict=False)


def run_pipeline(pipeline, scans: Iterable[tuple[int, Any]], imu_stamps, imu_gyro, imu_accel) -> int:
    """Feed IMU samples up to each scan's end, then the scan; bad scans are logged and skipped.

    Returns the number of skipped scans.
    """
    from lkd_perception.common.errors import InputError

    k, skipped = 0, 0
    for stamp, cloud in scans:
        end = stamp + (int(cloud.time.max() * 1e9) if cloud.time is not None and len(cloud) else 0) + 10_000_000
        while k < len(imu_stamps) and imu_stamps[k] <= end:
            try:
                pipeline.add_imu(int(imu_stamps[k]), imu_gyro[k], imu_accel[k])
            except InputError as exc:
                log.warning("IMU sample skipped: %s", exc)
            k += 1
        try:
            pipeline.add_scan(stamp, cloud)
        except InputError as exc:
            skipped += 1
            log.warning("scan at %d skipped: %s", stamp, exc)
    return skipped


# --- lkd odometry ------------------------------------------------------------------------------
def _odometry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="ROS 2 bag (mcap or sqlite3 folder/file)")
    p.add_argument("--out", required=True, help="TUM trajectory to write (map frame, loop-corrected)")
    p.add_argument("--config", help="YAML with OdometryConfig keys (or a ROS 2 parameter file)")
    p.add_argument("--lidar-topic", default="/lidar/points", help="PointCloud2 topic of the LiDAR")
    p.add_argument("--imu-topic", default="/imu/data", help="absent from the bag: LiDAR-only, with a warning")
    p.add_argument("--no-imu", action="store_true", help="LiDAR-only even when the bag has the IMU topic")
    p.add_argument("--base-frame", help="vehicle body frame (default: the config's base_frame)")
    p.add_argument("--lidar-frame", help="LiDAR frame looked up in /tf_static (default: the clouds' frame_id)")
    p.add_argument("--imu-frame", help="IMU frame looked up in /tf_static (default: the IMU messages' frame_id)")
    p.add_argument("--loops", help="JSON file listing the accepted loop closures (for evaluate --loops)")


def _first_frame_id(bag: str, topic: str) -> str:
    from lkd_perception.io.bag import read_messages

    for _, _, msg in read_messages(bag, [topic]):
        return str(msg.header.frame_id)
    return ""


def _bag_extrinsics(args: argparse.Namespace, cfg, topics: set[str], use_imu: bool):
    """The config with the extrinsics this recording's ``/tf_static`` gives (through any chain
    of frames); what the bag does not give stays from the config, with a warning."""
    from dataclasses import replace

    from lkd_perception.common.frames import TransformTree
    from lkd_perception.io.bag import read_tf_static

    tree = TransformTree()
    if "/tf_static" in topics:
        for tf in read_tf_static(args.bag):
            tree.add(tf.parent, tf.child, tf.T)
    else:
        log.warning("%s has no /tf_static: extrinsics from the config (base_T_lidar %s, base_T_imu %s)",
                    args.bag, cfg.base_T_lidar, cfg.base_T_imu)
    wanted = [("base_T_lidar", args.lidar_frame or _first_frame_id(args.bag, args.lidar_topic))]
    if use_imu:
        wanted.append(("base_T_imu", args.imu_frame or _first_frame_id(args.bag, args.imu_topic)))
    for key, frame in wanted:
        T = tree.lookup(cfg.base_frame, frame) if frame else None
        if T is not None:
            cfg = replace(cfg, **{key: _xyzrpy(T)})
            log.info("%s: %s <- %s from /tf_static", key, cfg.base_frame, frame)
        elif len(tree):
            log.warning("/tf_static does not connect %r and %r: %s from the config %s", cfg.base_frame, frame, key,
                        getattr(cfg, key))
    return cfg


def _odometry_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from lkd_perception.io.bag import bag_info, read_clouds, read_imu
    from lkd_perception.io.formats import write_tum
    from lkd_perception.odometry.pipeline import LioPipeline

    cfg = _load_config(args.config)
    if args.base_frame:
        cfg = replace(cfg, base_frame=args.base_frame)
    info = bag_info(args.bag)
    info.topic(args.lidar_topic)  # no LiDAR: a clear error listing the topics
    topics = {t.name for t in info.topics}
    use_imu = cfg.use_imu and not args.no_imu
    if use_imu and args.imu_topic not in topics:
        log.warning("%s has no IMU topic %s: LiDAR-only odometry (constant-velocity prediction)", args.bag,
                    args.imu_topic)
        use_imu = False
    cfg = replace(_bag_extrinsics(args, cfg, topics, use_imu), use_imu=use_imu)
    pipeline = LioPipeline(cfg)
    if use_imu:
        imu = read_imu(args.bag, args.imu_topic)
        imu_arrays = (imu.stamps_ns, imu.gyro, imu.accel)
    else:
        imu_arrays = (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)))
    scans = progress(
        read_clouds(args.bag, args.lidar_topic), "odometry", "scan", total=info.topic(args.lidar_topic).count
    )
    skipped = run_pipeline(pipeline, scans, *imu_arrays)
    stamps, poses = pipeline.map_trajectory()
    write_tum(args.out, stamps, poses)
    if args.loops:
        kf_stamp = pipeline.loops.keyframes.stamps
        emit_json(
            [
                {
                    "from_stamp_ns": int(kf_stamp[lc.from_id]),
                    "to_stamp_ns": int(kf_stamp[lc.to_id]),
                    "rmse_m": lc.rmse,
                    "overlap": lc.overlap,
                    "bev_inliers": lc.bev_inliers,
                }
                for lc in pipeline.loop_closures
            ],
            args.loops,
        )
    emit_json(
        {
            "poses": int(len(stamps)),
            "skipped_scans": skipped,
            "loop_closures": len(pipeline.loop_closures),
            "imu": use_imu,
            "base_T_lidar": cfg.base_T_lidar,
            "base_T_imu": cfg.base_T_imu,
            "out": args.out,
        },
        None,
    )
    return 0 if len(stamps) else 2


# --- lkd evaluate odometry ---------------------------------------------------------------------
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="estimated trajectory (TUM)")
    p.add_argument("--gt", required=True, help="ground truth (TUM)")
    p.add_argument("--max-diff", type=float, default=0.01, help="max stamp difference (s) for association")
    p.add_argument("--plot", help="PNG of both trajectories (top view)")
    p.add_argument("--loops", help="loop closures written by 'lkd odometry --loops', drawn on the plot")
    p.add_argument("--out", help="JSON file (default stdout)")


def _series_to_traj(series):
    import numpy as np

    from lkd_perception.eval.trajectory import Trajectory

    return Trajectory(np.round(series.stamps_s * 1e9).astype(np.int64), series.poses)


def metrics_dict(m) -> dict[str, Any]:
    d = asdict(m)
    d["alignment"] = m.alignment.tolist()
    return d


def _evaluate_run(args: argparse.Namespace) -> int:
    from lkd_perception.common.errors import InputError
    from lkd_perception.eval.trajectory import evaluate_trajectory
    from lkd_perception.io.formats import read_json, read_tum

    pred, gt = _series_to_traj(read_tum(args.pred)), _series_to_traj(read_tum(args.gt))
    try:
        m = evaluate_trajectory(pred, gt, max_diff_s=args.max_diff)
    except InputError as exc:
        raise InputError(f"{args.pred} against {args.gt}: {exc}") from exc
    if args.plot:
        loops = read_json(args.loops) if args.loops else []
        _plot(pred, gt, m.alignment, loops, args.plot)
    emit_json(metrics_dict(m), args.out)
    return 0


def _plot(pred, gt, alignment, loops: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    p = np.einsum("ij,nj->ni", alignment[:3, :3], pred.positions) + alignment[:3, 3]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt.positions[:, 0], gt.positions[:, 1], "k-", label="ground truth")
    ax.plot(p[:, 0], p[:, 1], "r-", label="estimate (SE(3)-aligned)")
    for k, lc in enumerate(loops):
        i, j = (int(np.argmin(np.abs(pred.stamps_ns - lc[key]))) for key in ("from_stamp_ns", "to_stamp_ns"))
        ax.plot(p[[i, j], 0], p[[i, j], 1], "m-", lw=2, label="loop closures" if k == 0 else None)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- lkd bench odometry ------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per scenario")
    p.add_argument("--scenarios", default="loop,urban,corridor", help="simulated drives, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--drop-fraction",
        type=float,
        default=0.0,
        help="skip about this fraction of scans, as a busy live node does (IMU kept); both methods see the same scans",
    )
    p.add_argument("--drop-seed", type=int, default=0, help="seed of the skipped-scan pattern")
    p.add_argument("--drop-burst", type=int, default=5, help="skipped scans come in runs of 1..N consecutive scans")
    p.add_argument("--no-imu", action="store_true", help="run ours LiDAR-only (as on a bag without an IMU topic)")
    p.add_argument(
        "--rate",
        default="10",
        help="comma-separated LiDAR rates (Hz): >= %g simulates a sensor spinning at that rate; below, keyframe-only "
        "input: every k-th scan of a 10 Hz sensor (large motion between scans)" % MIN_SPIN_HZ,
    )
    p.add_argument("--out", help="JSON file (default stdout)")


MIN_SPIN_HZ = 5.0  # slowest spin rate simulated as such; slower input is a subsample of 10 Hz sweeps


def _rate_plan(rate_hz: float) -> tuple[float, int]:
    """(simulated spin rate, keep every k-th scan) for a requested input rate."""
    if rate_hz <= 0:
        raise ValueError(f"rates must be positive, got {rate_hz}")
    if rate_hz >= MIN_SPIN_HZ:
        return rate_hz, 1
    return 10.0, max(1, int(round(10.0 / rate_hz)))


def _bench_method(method: str, drive, keep, conn, use_imu: bool = True) -> None:
    """Child process body: run one method on the drive, send back poses, timings and peak RSS.

    Each method runs in its own forked process so that its peak memory and timing are its own
    (the drive itself, inherited from the parent, is included in both methods' RSS alike).
    """
    import time

    from lkd_perception.common.timing import current_rss_mb, peak_rss_mb
    from lkd_perception.odometry.config import OdometryConfig
    from lkd_perception.odometry.pipeline import LioPipeline

    rss0 = current_rss_mb()
    scans = [(s.stamp_ns, s.cloud) for s, k in zip(drive.scans, keep) if k]
    t0, c0 = time.perf_counter(), time.process_time()
    extra: dict[str, Any] = {}
    if method == "lkd":
        cfg = OdometryConfig(
            base_T_lidar=_xyzrpy(drive.extrinsics.T_base_lidar),
            base_T_imu=_xyzrpy(drive.extrinsics.T_base_imu),
            use_imu=use_imu,
        )
        pipe = LioPipeline(cfg)
        extra["skipped_scans"] = run_pipeline(pipe, scans, drive.imu.stamps_ns, drive.imu.gyro, drive.imu.accel)
        stamps, poses = pipe.map_trajectory()
        extra["loop_closures"] = len(pipe.loop_closures)
        extra["rejected_loops"] = len(pipe.graph.rejected_loops)
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


def _bench_run(args: argparse.Namespace) -> int:
    import multiprocessing as mp
    import sys

    import numpy as np

    from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
    from lkd_perception.odometry.dropout import scan_drop_mask
    from lkd_perception.sim.drive import simulate_drive

    ctx = mp.get_context("fork")
    rows = []
    try:
        rates = [float(r) for r in args.rate.split(",") if r.strip()]
        plans = [_rate_plan(r) for r in rates]
    except ValueError as exc:
        raise InputError(f"--rate: {exc}") from exc
    for scenario, (rate, (spin_hz, every)) in (
        (s, rp) for s in args.scenarios.split(",") if s.strip() for rp in zip(rates, plans)
    ):
        scenario = scenario.strip()
        drive = simulate_drive(scenario, args.seconds, args.seed, lidar_rate_hz=spin_hz)
        gt = Trajectory(drive.gt_stamps_ns, drive.gt_poses)
        keep = scan_drop_mask(len(drive.scans), args.drop_fraction, args.drop_seed, args.drop_burst)
        keep &= np.arange(len(drive.scans)) % every == 0
        for method in ("lkd", "kiss_icp"):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_bench_method, args=(method, drive, keep, child, not args.no_imu))
            proc.start()
            stamps, poses, info = parent.recv()
            proc.join()
            m = evaluate_trajectory(Trajectory(stamps, poses), gt)
            rows.append(
                {
                    "scenario": scenario,
                    "rate_hz": rate,
                    "spin_hz": spin_hz,
                    "method": method,
                    "imu": method == "lkd" and not args.no_imu,
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
    emit_json(
        {
            "seconds": args.seconds,
            "seed": args.seed,
            "drop_fraction": args.drop_fraction,
            "drop_seed": args.drop_seed,
            "drop_burst": args.drop_burst,
            "no_imu": args.no_imu,
            "results": rows,
        },
        args.out,
    )
    print(
        f"{'scenario':9} {'Hz':>4} {'method':8} {'kept':>5} {'len m':>6} {'APE m':>7} {'drift %':>8} {'deg/100m':>8} "
        f"{'scans/s':>7} {'/cpu-s':>7} {'+RSS MB':>7}",
        file=sys.stderr,
    )
    for r in rows:
        nan = float("nan")
        print(
            f"{r['scenario']:9} {r['rate_hz']:4g} {r['method']:8} {r['kept_scans']:5d} {r['gt_length_m']:6.0f} "
            f"{r['ape_rmse_m']:7.3f} "
            f"{r['drift_pct'] if r['drift_pct'] is not None else nan:8.3f} "
            f"{r['drift_deg_per_100m'] if r['drift_deg_per_100m'] is not None else nan:8.3f} "
            f"{r['scans_per_s']:7.1f} {r['scans_per_cpu_s']:7.1f} {r['rss_growth_mb']:7.0f}",
            file=sys.stderr,
        )
    return 0


def _xyzrpy(T) -> list[float]:
    import numpy as np

    R = T[:3, :3]
    yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    pitch = float(np.arcsin(-np.clip(R[2, 0], -1, 1)))
    roll = float(np.arctan2(R[2, 1], R[2, 2]))
    return [float(T[0, 3]), float(T[1, 3]), float(T[2, 3]), roll, pitch, yaw]


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


# --- lkd train bev-descriptor -------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="models/bev_descriptor.onnx", help="ONNX file to write")
    p.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per training drive")
    p.add_argument("--train", default="loop:10,urban:11,corridor:13", help="scenario:seed drives to train on")
    p.add_argument("--heldout", default="urban:12", help="scenario:seed drive for the held-out check")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="JSON file for the training report (default stdout)")


def _train_run(args: argparse.Namespace) -> int:
    import torch

    from lkd_perception.odometry.bev import BevGrid
    from lkd_perception.odometry.config import OdometryConfig
    from lkd_perception.odometry.descriptor_train import bev_sequence, train
    from lkd_perception.sim.drive import simulate_drive

    torch.set_num_threads(1)
    cfg = OdometryConfig()
    grid = BevGrid.for_range(cfg.bev_resolution, cfg.bev_range)

    def seq(spec: str):
        scenario, seed = spec.split(":")
        log.info("simulating %s seed %s (%.0f s)", scenario, seed, args.seconds)
        return bev_sequence(simulate_drive(scenario, args.seconds, int(seed)), grid, cfg.bev_count_cap)

    train_seqs = [seq(s) for s in args.train.split(",") if s]
    report = train(train_seqs, seq(args.heldout), Path(args.out), steps=args.steps, seed=args.seed)
    emit_json(
        {**asdict(report), "out": args.out, "train": args.train, "heldout": args.heldout, "seconds": args.seconds},
        args.report,
    )
    return 0


COMMANDS = [
    Command(
        ("train", "bev-descriptor"),
        "train the BEV local-descriptor CNN on simulated drives and export ONNX",
        _train_args,
        _train_run,
        example="lkd train bev-descriptor --out models/bev_descriptor.onnx",
    ),
    Command(
        ("odometry",),
        "LiDAR-inertial odometry over a bag -> TUM trajectory",
        _odometry_args,
        _odometry_run,
        example="lkd odometry runs/sim/drive.mcap --out runs/odom/trajectory.txt",
    ),
    Command(
        ("evaluate", "odometry"),
        "APE / RPE / KITTI drift of a TUM trajectory against ground truth",
        _evaluate_args,
        _evaluate_run,
        example="lkd evaluate odometry --pred runs/odom/trajectory.txt --gt runs/sim/gt/trajectory.txt --plot "
        "runs/odom/plot.png",
    ),
    Command(
        ("bench", "odometry"),
        "ours vs KISS-ICP on simulated loop/urban/corridor drives",
        _bench_args,
        _bench_run,
        example="lkd bench odometry --out runs/bench/odometry.json",
    ),
]
