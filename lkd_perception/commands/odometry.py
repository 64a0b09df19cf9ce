"""``lkd odometry``, ``lkd evaluate odometry`` and ``lkd bench odometry``.

``odometry`` runs :func:`lkd_perception.odometry.on_bag.run_on_bag` and writes the
loop-corrected (map-frame) trajectory as TUM. ``evaluate odometry`` compares two TUM files (APE after SE(3) alignment,
RPE, KITTI-style drift) and can draw both. ``bench odometry`` runs
:mod:`lkd_perception.odometry.bench` (ours and KISS-ICP on the same simulated scans);
``bench odometry-memory`` runs :mod:`lkd_perception.odometry.long_drive`.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lkd_perception.commands import Command, comma_list, emit_json, parse_sets
from lkd_perception.common.errors import InputError
from lkd_perception.io import topics

log = logging.getLogger(__name__)


def _load_config(path: str | None):
    from lkd_perception.common.config import load_yaml, node_parameters
    from lkd_perception.common.node_io import node_settings
    from lkd_perception.odometry.config import OdometryConfig

    if not path:
        return OdometryConfig()
    data = load_yaml(path)
    params_file = any(isinstance(v, dict) and "ros__parameters" in v for v in data.values())
    values = node_parameters(data, "lidar_odometry_node") if params_file else data
    return node_settings(OdometryConfig, values, "lidar_odometry_node", path)


# --- lkd odometry ------------------------------------------------------------------------------
def _odometry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="ROS 2 bag (mcap or sqlite3 folder/file)")
    p.add_argument("--out", required=True, help="TUM trajectory to write (map frame, loop-corrected)")
    p.add_argument("--config", help="YAML with OdometryConfig keys (or a ROS 2 parameter file)")
    p.add_argument("--lidar-topic", default=topics.LIDAR.path, help="PointCloud2 topic of the LiDAR")
    p.add_argument("--imu-topic", default=topics.IMU.path, help="absent from the bag: LiDAR-only, with a warning")
    p.add_argument("--no-imu", action="store_true", help="LiDAR-only even when the bag has the IMU topic")
    p.add_argument("--base-frame", help="vehicle body frame (default: the config's base_frame)")
    p.add_argument("--lidar-frame", help="LiDAR frame looked up in /tf_static (default: the clouds' frame_id)")
    p.add_argument("--imu-frame", help="IMU frame looked up in /tf_static (default: the IMU messages' frame_id)")
    p.add_argument("--loops", help="JSON file listing the accepted loop closures (for evaluate --loops)")


def _odometry_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from lkd_perception.commands import counting_bar
    from lkd_perception.io.formats import write_tum
    from lkd_perception.odometry.on_bag import run_on_bag

    cfg = _load_config(args.config)
    if args.base_frame:
        cfg = replace(cfg, base_frame=args.base_frame)
    with counting_bar("odometry", "scan") as bar:
        run = run_on_bag(args.bag, cfg, args.lidar_topic, args.imu_topic, not args.no_imu, args.lidar_frame,
                         args.imu_frame, on_progress=bar)
    write_tum(args.out, run.stamps_ns, run.poses)
    if args.loops:
        emit_json(run.loops, args.loops)
    emit_json(
        {
            "poses": int(len(run.stamps_ns)),
            "skipped_scans": run.skipped_scans,
            "loop_closures": len(run.loops),
            "imu": run.config.use_imu,
            "base_T_lidar": run.config.base_T_lidar,
            "base_T_imu": run.config.base_T_imu,
            "out": args.out,
        },
        None,
    )
    return 0 if len(run.stamps_ns) else 2


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
    from lkd_perception.odometry.bench import MIN_SPIN_HZ

    p.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per scenario")
    p.add_argument("--scenarios", default="loop,urban,corridor", help="simulated drives, comma-separated")
    p.add_argument(
        "--seed", default="0",
        help="drive seeds, comma-separated: each scenario is driven once per seed, and with several the mean and "
        "worst over them are printed too",
    )
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
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change one of our odometry's settings for this run (e.g. imu_deskew=false, "
                   "keyframe.graph_window=100); repeatable")
    p.add_argument("--out", help="JSON file (default stdout)")


def _bench_run(args: argparse.Namespace) -> int:
    import sys

    from lkd_perception.common.config import updated
    from lkd_perception.odometry.bench import BenchSettings, format_summary, format_table, run_benchmark
    from lkd_perception.odometry.config import OdometryConfig

    rates = comma_list(args.rate, float, "--rate")
    overrides = parse_sets(args.set)
    updated(OdometryConfig(), overrides)  # a bad name or value fails here, before any drive is simulated
    settings = BenchSettings(
        scenarios=comma_list(args.scenarios, str, "--scenarios"),
        seconds=args.seconds,
        seeds=comma_list(args.seed, int, "--seed"),
        drop_fraction=args.drop_fraction,
        drop_seed=args.drop_seed,
        drop_burst=args.drop_burst,
        use_imu=not args.no_imu,
        rates_hz=rates,
        overrides=tuple(overrides.items()),
    )
    result = run_benchmark(settings)
    emit_json(result, args.out)
    print(format_table(result["results"]), file=sys.stderr)
    if len(settings.seeds) > 1:
        print(format_summary(result["summary"]), file=sys.stderr)
    return 0


# --- lkd bench odometry-memory -----------------------------------------------------------------
def _memory_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of driving")
    p.add_argument("--scenario", default="loop", help="simulated drive (laps repeat)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windows", default="0,100",
                   help="keyframe.graph_window values compared side by side, comma-separated (0: unbounded graph)")
    p.add_argument("--segment", type=float, default=60.0, help="simulated seconds between samples")
    p.add_argument("--warmup", type=float, default=300.0, help="simulated seconds before memory growth is measured")
    p.add_argument("--out", help="JSON file, rewritten after every segment (default stdout at the end)")


def _memory_run(args: argparse.Namespace) -> int:
    import sys

    from lkd_perception.odometry.long_drive import LongDriveSettings, run_long_drive

    windows = comma_list(args.windows, int, "--windows")
    settings = LongDriveSettings(args.scenario, args.minutes, args.seed, windows, args.segment, args.warmup)
    partial: dict[int, list[dict[str, Any]]] = {w: [] for w in windows}

    def on_segment(window: int, seg: dict[str, Any]) -> None:
        partial[window].append(seg)
        print(f"window {window:4d}  {seg['sim_s']:7.0f} s  RSS {seg['rss_mb']:7.1f} MB "
              f"(trimmed {seg['rss_trimmed_mb']:7.1f})  {seg['keyframes']:5d} kf  "
              f"{seg['graph_factors']:5d} factors  {seg['scans_per_cpu_s']:5.1f} scans/cpu-s", file=sys.stderr)
        if args.out:
            emit_json({"settings": asdict(settings), "partial": True,
                       "runs": [{"graph_window": w, "segments": s} for w, s in partial.items()]}, args.out)

    result = run_long_drive(settings, on_segment)
    emit_json(result, args.out)
    for run in result["runs"]:
        print(f"window {run['graph_window']}: {run['summary']}", file=sys.stderr)
    return 0 if all("error" not in run["summary"] for run in result["runs"]) else 1


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
    Command(
        ("bench", "odometry-memory"),
        "memory and scans per CPU-second of the odometry over a long simulated drive, graph windows side by side",
        _memory_args,
        _memory_run,
        example="lkd bench odometry-memory --minutes 30 --out runs/bench/odometry_memory.json",
    ),
]
