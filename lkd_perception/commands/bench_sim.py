"""``lkd bench sim``: how long and how much memory a simulated drive takes."""

from __future__ import annotations

import argparse
import sys

from lkd_perception.commands import Command, emit_json


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario", default="urban", choices=("loop", "urban", "corridor"), help="street layout to simulate"
    )
    p.add_argument("--seconds", type=float, default=60.0, help="drive length (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-camera", action="store_true", help="LiDAR and IMU only")
    p.add_argument("--keep", help="write the drive here and keep it (default: a temporary folder)")
    p.add_argument("--out", help="JSON result file (default stdout)")


def _run(args: argparse.Namespace) -> int:
    import os
    import platform
    import resource
    import tempfile

    from lkd_perception.sim.drive import make_config
    from lkd_perception.sim.recording import write_drive

    cfg = make_config(args.scenario, args.seconds, args.seed, camera=not args.no_camera)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_drive(args.keep or os.path.join(tmp, "drive"), cfg)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time is less sensitive than wall time to other jobs sharing the machine
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    s = summary.to_dict()
    result = {
        "benchmark": "sim",
        "scenario": cfg.scenario,
        "seconds_simulated": cfg.seconds,
        "camera": cfg.camera,
        "wall_s": s["wall_s"],
        "cpu_s": round(cpu_s, 1),
        "realtime_factor": round(cfg.seconds / s["wall_s"], 3),
        "peak_rss_mb": s["peak_rss_mb"],
        "stage_s": s["stage_s"],
        "per_scan_ms": round(1e3 * s["stage_s"]["lidar"] / max(s["scans"], 1), 1),
        "per_frame_ms": round(1e3 * s["stage_s"]["camera"] / max(s["images"], 1), 1),
        "scans": s["scans"],
        "images": s["images"],
        "imu_samples": s["imu_samples"],
        "bag_mb": s["bag_mb"],
        "path_length_m": s["path_length_m"],
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }
    rows = [
        ("wall time", f"{result['wall_s']:.1f} s"),
        ("CPU time (all threads)", f"{result['cpu_s']:.1f} s"),
        ("real-time factor", f"{result['realtime_factor']:.2f}"),
        ("peak memory", f"{result['peak_rss_mb']:.0f} MiB"),
        ("per LiDAR sweep", f"{result['per_scan_ms']} ms"),
        ("per camera frame (render + GT)", f"{result['per_frame_ms']} ms"),
        ("bag size", f"{result['bag_mb']} MiB"),
    ]
    rows += [(f"stage {k}", f"{v:.1f} s") for k, v in result["stage_s"].items()]
    width = max(len(r[0]) for r in rows)
    sys.stderr.write(f"lkd bench sim: {cfg.scenario}, {cfg.seconds:g} s simulated\n")
    for name, value in rows:
        sys.stderr.write(f"  {name:<{width}}  {value}\n")
    emit_json(result, args.out)
    return 0


COMMANDS = [
    Command(
        ("bench", "sim"),
        "time and memory of simulating a drive",
        _add_arguments,
        _run,
        example="lkd bench sim --scenario urban --out runs/bench/sim.json",
    )
]
