"""``lkd replay BAG``: publish a bag over ROS 2 with /clock; optionally run the nodes and record."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from lkd_perception.commands import Command, emit_json, parse_sets


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="bag to replay (mcap or sqlite3 rosbag2 folder/file)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="skip the first S seconds of the bag")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="play only S seconds (from --start)")
    p.add_argument(
        "--record", default=None, help="record the nodes' outputs into this new rosbag2 folder (mcap storage)"
    )
    p.add_argument("--launch", action="store_true", help="also start the vehicle's nodes (on sim time)")
    p.add_argument("--config", default=None, help="parameter file for --launch (default config/vehicle.yaml)")
    p.add_argument("--capabilities", default="all", help="nodes to start with --launch (default all)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --launch: set a parameter of every node (repeatable), e.g. sensor_qos_reliability=reliable",
    )
    p.add_argument(
        "--wait-for",
        nargs="*",
        default=[],
        metavar="TOPIC",
        help="hold the first message until these bag topics have a subscriber",
    )
    p.add_argument("--topics", nargs="*", default=None, help="only these bag topics (default all)")
    p.add_argument("--out", default=None, help="write the summary JSON here (default stdout)")


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lkd_perception.nodes.replay import lateness_warning, run_replay

    bars: list[tqdm] = []  # made on the first message, so a bag refused up front prints only its error

    def progress(p) -> None:
        if not bars:
            bars.append(tqdm(total=0, unit="msg", file=sys.stderr, desc="replay", dynamic_ncols=True))
        bars[0].total = p.total
        bars[0].n = p.published
        bars[0].refresh()

    try:
        result = run_replay(
            args.bag,
            rate=args.rate,
            record=args.record,
            launch_config=args.config,
            launch_nodes=args.launch,
            capabilities=args.capabilities,
            topics=args.topics,
            on_progress=progress,
            overrides=parse_sets(args.set),
            wait_for=args.wait_for,
            start_s=args.start,
            duration_s=args.duration,
        )
    finally:
        for bar in bars:
            bar.close()
    if warning := lateness_warning(result):
        print(f"warning: {warning}", file=sys.stderr)
    emit_json(dataclasses.asdict(result), args.out)
    return 0


COMMANDS = [
    Command(
        ("replay",),
        "replay a bag over ROS 2 with /clock (optionally run the nodes and record)",
        _add,
        _run,
        example="lkd replay runs/sim/drive.mcap --launch --record runs/replay/recording",
    )
]
