"""``lkd demo``: the main job on the built-in default data.

Simulate a drive (camera, LiDAR, IMU, exact ground truth), replay it over DDS through every node
(each in its own process, on sim time) while recording their outputs, evaluate everything
against the ground truth and write a self-contained HTML report. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from lkd_perception.commands import Command, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="working folder, replaced on each run (default out/demo)")
    p.add_argument("--scenario", default="loop", help="simulated scenario (default loop: one closed loop)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the drive (default 60 s)")
    p.add_argument("--seed", type=int, default=0, help="world and noise seed (default 0)")
    p.add_argument("--rate", type=float, default=0.5,
                   help="replay speed; below 1 gives the nodes time on a slow machine (default 0.5)")
    p.add_argument("--config", default=None,
                   help="parameter file of the nodes (default config/simulation.yaml: the simulator-trained models, "
                        "whose classes the simulated ground truth knows)")


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lkd_perception.commands.evaluate_all import summary_table
    from lkd_perception.eval.outputs import read_recorded_run
    from lkd_perception.eval.report import evaluate_run, write_report
    from lkd_perception.io.bag import bag_info
    from lkd_perception.nodes.graph import default_config_path
    from lkd_perception.nodes.replay import lateness_warning, run_replay
    from lkd_perception.sim.drive import make_config
    from lkd_perception.sim.recording import write_drive

    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"[1/3] simulating {args.seconds:.0f} s of '{args.scenario}' (seed {args.seed}) -> {out}", file=sys.stderr)
    drive = write_drive(out, make_config(args.scenario, args.seconds, args.seed, camera=True))
    bag = out / "drive.mcap"

    print(f"[2/3] replaying at {args.rate}x through all nodes over DDS, recording outputs", file=sys.stderr)
    bar = tqdm(total=0, unit="msg", file=sys.stderr, desc="replay", dynamic_ncols=True)

    def progress(p) -> None:
        bar.total, bar.n = p.total, p.published
        bar.refresh()

    try:
        # the nodes exactly as configured (best-effort sensor subscriptions as shipped); they get
        # every frame because lkd replay and the nodes run Fast DDS with config/fastdds.xml
        config = args.config or default_config_path("simulation.yaml")
        replay = run_replay(bag, rate=args.rate, record=out / "outputs", launch_config=config,
                            launch_nodes=True, on_progress=progress)
    finally:
        bar.close()
    if warning := lateness_warning(replay):
        print(f"warning: {warning}", file=sys.stderr)

    print("[3/3] evaluating against ground truth", file=sys.stderr)
    run = read_recorded_run(out / "outputs")
    metrics = evaluate_run(run, out / "gt", {t.name: t.count for t in bag_info(bag).topics})
    report = write_report(metrics, run, out / "gt", bag, out / "report")
    print(summary_table(metrics), file=sys.stderr)
    emit_json({"simulation": drive, "replay": replay, "metrics": metrics, "report": str(report)},
              out / "demo.json")
    print(f"\nreport: {report}\nmetrics: {out / 'report' / 'metrics.json'}", file=sys.stderr)
    return 0


COMMANDS = [Command(("demo",), "simulate a drive, run all nodes on it over DDS, evaluate, report", _add, _run,
            example='lkd demo --out runs/demo')]
