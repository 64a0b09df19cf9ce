"""``lkd launch [CONFIG]``: the vehicle's nodes in one process, from the launch file's graph."""

from __future__ import annotations

import argparse

from lkd_perception.commands import Command, emit_json, parse_sets


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None, help="ROS 2 parameter file (default: config/vehicle.yaml)")
    p.add_argument("--capabilities", default="all", help="comma-separated: detection,lines,odometry (default all)")
    p.add_argument("--namespace", default="", help="namespace of all nodes")
    p.add_argument("--use-sim-time", action="store_true", help="follow /clock (for replayed bags)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter of every node, over the file (repeatable; VALUE is YAML)")
    from lkd_perception.nodes.graph import LOG_LEVELS, TOPIC_ARGUMENTS

    for arg, own in TOPIC_ARGUMENTS.items():  # the launch file's arguments of the same names
        p.add_argument("--" + arg.replace("_", "-"), dest=arg, default=own,
                       help=f"input topic, remapped from the nodes' {own} (default %(default)s)")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log level of the nodes (default info)")
    p.add_argument("--autostart", action=argparse.BooleanOptionalAction, default=True,
                   help="configure and activate the (lifecycle) nodes at start-up (default); --no-autostart: "
                        "they wait for `ros2 lifecycle set` or a lifecycle manager")
    p.add_argument("--dry-run", action="store_true", help="print the nodes and parameters as JSON, start nothing")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.nodes import run_all
    from lkd_perception.nodes.graph import TOPIC_ARGUMENTS, remappings

    topics = {a: getattr(args, a) for a in TOPIC_ARGUMENTS}
    launch = run_all.plan(args.config, args.capabilities, args.namespace, args.use_sim_time, parse_sets(args.set),
                          topics, args.log_level, args.autostart)
    if args.dry_run:
        emit_json(
            {
                "config": str(launch.config_path),
                "namespace": launch.namespace,
                "log_level": launch.log_level,
                "nodes": [
                    {"name": s.name, "executable": s.executable, "parameters": [str(launch.config_path),
                                                                               launch.parameters()],
                     "remappings": remappings(s, launch.topics), "ros_arguments": launch.ros_arguments(s)}
                    for s in launch.nodes
                ],
            },
            None,
        )
        return 0
    run_all.run(launch)
    return 0


COMMANDS = [Command(("launch",), "run the vehicle's nodes in one process (no ros2 launch needed)", _add, _run,
            example='lkd launch config/vehicle.yaml --namespace car1')]
