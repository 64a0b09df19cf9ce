"""``lkd run BAG --out DIR``: every capability on a bag offline (no DDS), outputs as a recording."""

from __future__ import annotations

import argparse
import sys

from lkd_perception.commands import Command, counting_bar, emit_json
from lkd_perception.io.topics import IMAGE, IMU, LIDAR


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="input bag (mcap or sqlite3 rosbag2 folder/file)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: DIR/outputs.mcap (the nodes' topics, read by "
        "`lkd evaluate all`) and DIR/run.json (speed and health per capability)",
    )
    p.add_argument("--capabilities", default="all", help="comma-separated: detection, lines, odometry (default all)")
    p.add_argument("--config", default=None, help="the nodes' parameter file (default config/vehicle.yaml)")
    p.add_argument("--image-topic", default=IMAGE.path, help="camera images in the bag")
    p.add_argument("--lidar-topic", default=LIDAR.path, help="LiDAR point clouds in the bag")
    p.add_argument("--imu-topic", default=IMU.path, help="IMU samples in the bag")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.offline.runner import run_bag

    with counting_bar("run", "msg") as progress:
        result = run_bag(
            args.bag,
            args.out,
            capabilities=args.capabilities,
            config=args.config,
            on_progress=progress,
            image_topic=args.image_topic,
            lidar_topic=args.lidar_topic,
            imu_topic=args.imu_topic,
        )
    for name, t in result.tasks.items():
        print(
            f"{name}: {t['inputs']} messages, {t['ms_per_message']} ms each, "
            f"{t['realtime_factor']}x real time ({t['cpu_realtime_factor']}x in CPU time)",
            file=sys.stderr,
        )
    emit_json(result.to_dict(), None)
    return 0


COMMANDS = [
    Command(
        ("run",),
        "run the capabilities on a bag offline (no DDS) and record their outputs",
        _add,
        _run,
        example="lkd run runs/sim/drive.mcap --out runs/offline",
    )
]
