"""Run the node graph in one process: ``lkd launch`` for machines without ``ros2 launch``.

The nodes, their names and remappings come from :mod:`lkd_perception.nodes.graph` and their
parameters from the same YAML parameter file the launch file passes, applied with the ROS 2
rules (``/**`` for all nodes, a node's own section over it). One multi-threaded executor spins
them all; each node's callbacks stay mutually exclusive, so a node sees one message at a time
while a slow node does not hold back the others (ONNX Runtime, open3d and GTSAM release the GIL).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from lkd_perception.common.config import load_yaml, node_parameters
from lkd_perception.nodes.graph import NodeSpec, default_config_path, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchPlan:
    """What will be started: per node, its spec and the parameters it receives."""

    config_path: Path
    namespace: str
    use_sim_time: bool
    nodes: tuple[tuple[NodeSpec, dict[str, Any]], ...] = field(default_factory=tuple)


def plan(
    config_path: str | Path | None = None,
    capabilities: str | Sequence[str] = "all",
    namespace: str = "",
    use_sim_time: bool = False,
    overrides: dict[str, Any] | None = None,
) -> LaunchPlan:
    """Resolve the graph and parameter file into the nodes to start, without starting them.

    ``overrides`` set parameters of every node on top of the file (like ``/**`` given last).
    """
    path = Path(config_path) if config_path else default_config_path()
    params_file = load_yaml(path)
    nodes = []
    for spec in select(capabilities):
        params = node_parameters(params_file, spec.name)
        params.update(overrides or {})
        params["use_sim_time"] = use_sim_time
        nodes.append((spec, params))
    return LaunchPlan(path, namespace, use_sim_time, tuple(nodes))


def instantiate(launch: LaunchPlan, context: Context | None = None) -> list[Node]:
    """Create the planned nodes (in ``context``) with their parameters and remappings."""
    created: list[Node] = []
    for spec, params in launch.nodes:
        cls = getattr(importlib.import_module(spec.module), spec.class_name)
        cli_args = ["--ros-args"] + [a for src, dst in spec.remappings for a in ("-r", f"{src}:={dst}")]
        node = cls(
            context=context,
            namespace=launch.namespace or None,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            cli_args=cli_args if spec.remappings else None,
        )
        created.append(node)
    return created


def run(launch: LaunchPlan, args: Sequence[str] | None = None) -> None:
    """Start every planned node and spin them until Ctrl-C or shutdown."""
    rclpy.init(args=args)
    nodes: list[Node] = []
    executor = MultiThreadedExecutor(num_threads=max(2, len(launch.nodes) + 1))
    try:
        nodes = instantiate(launch)
        for n in nodes:
            executor.add_node(n)
            log.info("started %s", n.get_fully_qualified_name())
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()
