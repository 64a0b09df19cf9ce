"""``lkd bench fleet``: lkd run's real-time factor per capability, and fleet bags/hour with 1 vs N workers."""

from __future__ import annotations

import argparse
import sys

from lkd_perception.commands import Command, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", required=True, help="working folder (the simulated drives are kept there and reused)")
    p.add_argument("--bags", type=int, default=4, help="simulated drives, scenarios in turn (default 4)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each drive (default 60)")
    p.add_argument("--workers", type=int, default=2, help="workers compared with 1 (default 2)")
    p.add_argument("--width", type=int, default=640, help="camera width (default 640, the simulator's)")
    p.add_argument("--height", type=int, default=480, help="camera height (default 480)")
    p.add_argument("--azimuths", type=int, default=1024, help="LiDAR columns per revolution (default 1024)")
    p.add_argument("--config", default=None, help="parameter file (default config/simulation.yaml); "
                                                  "its threads settings are set to 1 for the bench")
    p.add_argument("--out", default=None, help="JSON result file (default stdout)")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.offline.bench import bench_fleet

    result = bench_fleet(args.work, bags=args.bags, seconds=args.seconds, workers=args.workers, width=args.width,
                         height=args.height, azimuths=args.azimuths, config=args.config,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    for b in result["lkd_run"]["per_bag"]:
        caps = ", ".join(f"{n} {c['realtime_factor']}x (CPU time {c['cpu_realtime_factor']}x)"
                         for n, c in b["capabilities"].items())
        print(f"lkd run {b['bag']}: {b['realtime_factor']}x real time overall; {caps}", file=sys.stderr)
    runs = result["runs"]
    print(f"fleet: {runs['1']['bags_per_hour']} bags/h with 1 worker, "
          f"{runs[str(args.workers)]['bags_per_hour']} with {args.workers}: {result['speedup']}x; "
          f"identical results: {result['identical_results']}", file=sys.stderr)
    emit_json(result, args.out)
    return 0


COMMANDS = [Command(("bench", "fleet"), "lkd run vs real time per capability; fleet bags/hour, 1 vs N Ray workers",
                    _add, _run,
            example='lkd bench fleet --work runs/fleet_bench --bags 4 --out runs/bench/fleet.json')]
