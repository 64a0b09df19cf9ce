"""``lkd evaluate fleet BAG_OR_FOLDER... --out DIR``: every bag offline and scored, on Ray; one fleet report.
``lkd evaluate compare A B``: which metrics moved between two fleet runs, on which bags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lkd_perception.commands import Command, counting_bar, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG_OR_FOLDER",
                   help="bags (.mcap, .db3, rosbag2 folders) or folders searched recursively for them")
    p.add_argument("--out", required=True, help="fleet output folder: fleet.json, fleet.html, bags/<name>/ per bag")
    p.add_argument("--workers", type=int, default=None,
                   help="bags evaluated at once (local Ray: default all CPUs; with --address: default no limit)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                                                   "default: a local Ray instance")
    p.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs Ray reserves per bag (default 1)")
    p.add_argument("--gpus-per-task", type=float, default=0.0,
                   help="GPUs Ray reserves per bag (default 0; set the models' provider in --config to use them)")
    p.add_argument(
        "--gt-root",
        default=None,
        help="ground truth of bag NAME in GT_ROOT/NAME[/gt] or GT_ROOT/<bag "
        "folder>[/gt] (default: gt/ beside each bag, as lkd simulate writes)",
    )
    p.add_argument("--capabilities", default="all", help="comma-separated: detection, lines, odometry (default all)")
    p.add_argument("--config", default=None, help="the nodes' parameter file (default config/vehicle.yaml)")
    p.add_argument("--baseline", default=None, help="an earlier fleet output folder (software A) to compare with")
    p.add_argument(
        "--force", action="store_true", help="re-evaluate bags already evaluated with the same software, config and bag"
    )


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.eval import fleet as report
    from lkd_perception.offline.fleet import run_fleet

    with counting_bar("fleet", "bag") as progress:
        result = run_fleet(
            args.bags,
            args.out,
            capabilities=args.capabilities,
            config=args.config,
            gt_root=args.gt_root,
            workers=args.workers,
            address=args.address,
            cpus_per_task=args.cpus_per_task,
            gpus_per_task=args.gpus_per_task,
            force=args.force,
            on_progress=progress,
        )
    out = Path(args.out)
    doc = write_fleet(
        out,
        result.rows,
        {
            "software": result.software,
            "config": args.config or "config/vehicle.yaml",
            "capabilities": args.capabilities,
        },
        baseline=args.baseline,
        skipped=result.skipped,
        wall_s=result.wall_s,
    )
    print(report.text_table(report.worst_first(result.rows)), file=sys.stderr)
    if result.skipped:
        print(
            f"{len(result.skipped)} bag(s) already evaluated with this software and config: not re-run", file=sys.stderr
        )
    if "comparison" in doc:
        print(report.comparison_text(doc["comparison"]), file=sys.stderr)
    print(f"report: {out / 'fleet.html'}", file=sys.stderr)
    emit_json(doc["summary"], None)
    return 0


def write_fleet(
    out: Path,
    rows: list,
    meta: dict,
    baseline: str | None = None,
    skipped: list | None = None,
    wall_s: float | None = None,
) -> dict:
    """fleet.json and fleet.html of a fleet run (with the comparison when a baseline is given)."""
    from lkd_perception.eval import fleet as report

    summary = report.summarize(rows)
    doc = {**meta, "summary": summary, "rows": rows, "skipped": skipped or [], "wall_s": wall_s}
    comparison = None
    if baseline:
        comparison = report.compare(report.load_fleet(baseline)["rows"], rows)
        doc["comparison"] = comparison
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    report.write_fleet_html(out / "fleet.html", rows, summary, meta, comparison)
    return doc


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="fleet output folder (or fleet.json) of software A, the baseline")
    p.add_argument("b", help="fleet output folder (or fleet.json) of software B")
    p.add_argument("--out", default=None, help="write the comparison JSON here (default stdout)")


def _run_compare(args: argparse.Namespace) -> int:
    from lkd_perception.eval import fleet as report

    cmp = report.compare(report.load_fleet(args.a)["rows"], report.load_fleet(args.b)["rows"])
    print(report.comparison_text(cmp), file=sys.stderr)
    emit_json(cmp, args.out)
    return 0


COMMANDS = [
    Command(
        ("evaluate", "fleet"),
        "evaluate many bags on Ray (lkd run + evaluate all per bag): one fleet report",
        _add,
        _run,
        example="lkd evaluate fleet bags/ --out runs/fleet --workers 2",
    ),
    Command(
        ("evaluate", "compare"),
        "compare two fleet runs (software A vs B on the same bags)",
        _add_compare,
        _run_compare,
        example="lkd evaluate compare runs/fleet_a runs/fleet_b",
    ),
]
