"""``lkd evaluate all REC --gt DIR/gt --report DIR``: every metric of a recorded replay."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lkd_perception.commands import Command, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="the recording folder written by `lkd replay --record` (rosbag2, mcap storage)")
    p.add_argument("--gt", required=True, help="ground-truth folder (DIR/gt of `lkd simulate`)")
    p.add_argument("--bag", default=None, help="the replayed input bag (default: GT/../drive.mcap), for "
                                                 "processed fractions and sample frames")
    p.add_argument("--report", default=None, help="write report.html and metrics.json into this folder")
    p.add_argument("--out", default=None, help="write the metrics JSON here (default stdout)")


def summary_table(metrics: dict) -> str:
    """The headline numbers as a fixed-width table for the terminal."""
    rows = []
    d = metrics.get("detection", {})
    if "mAP50-95" in d:
        rows.append(("detection", "mAP50-95 / mAP50", f"{d['mAP50-95']:.3f} / {d['mAP50']:.3f}"))
    ln = metrics.get("lines", {})
    if "sAP10" in ln:
        rows.append(
            (
                "lines",
                "sAP5/10/15, F^H",
                f"{ln.get('sAP5', float('nan')):.1f} / {ln['sAP10']:.1f} / "
                f"{ln.get('sAP15', float('nan')):.1f}, {ln.get('FH', float('nan')):.1f}",
            )
        )
    for frame in ("odom", "map"):
        o = metrics.get("odometry", {}).get(frame)
        if o:
            drift = o.get("drift") or {}
            rows.append(
                (
                    f"odometry ({frame})",
                    "APE RMSE, drift",
                    f"{o['ape_translation_m']['rmse']:.3f} m, "
                    f"{drift.get('translation_pct', float('nan')):.2f} % / "
                    f"{drift.get('rotation_deg_per_100m', float('nan')):.2f} deg/100m",
                )
            )
    for node, e in metrics.get("nodes", {}).items():
        lat = e.get("latency", {})
        frac = e.get("processed_fraction")
        rows.append(
            (
                node,
                "processed, latency p50/p95",
                f"{'n/a' if frac is None else f'{100 * frac:.0f} %'}, "
                f"{lat.get('p50_ms', float('nan')):.0f} / {lat.get('p95_ms', float('nan')):.0f} ms",
            )
        )
    w0 = max((len(r[0]) for r in rows), default=10)
    w1 = max((len(r[1]) for r in rows), default=10)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.eval.outputs import read_recorded_run
    from lkd_perception.eval.report import evaluate_run, write_report
    from lkd_perception.io.bag import bag_info

    gt = Path(args.gt)
    bag = Path(args.bag) if args.bag else gt.parent / "drive.mcap"
    run = read_recorded_run(args.recording)
    input_counts = {t.name: t.count for t in bag_info(bag).topics} if bag.exists() else None
    metrics = evaluate_run(run, gt, input_counts)
    if args.report:
        path = write_report(metrics, run, gt, bag if bag.exists() else None, args.report)
        metrics["report"] = str(path)
    print(summary_table(metrics), file=sys.stderr)
    emit_json(metrics, args.out)
    return 0


COMMANDS = [
    Command(
        ("evaluate", "all"),
        "evaluate a recorded replay: detection, lines, odometry, latency",
        _add,
        _run,
        example="lkd evaluate all runs/replay/recording --gt runs/sim/gt --out runs/eval",
    )
]
