"""Run the node graph in one process: ``lkd launch`` for machines without ``ros2 launch``.

The nodes, their names and remappings come from :mod:`lkd_perception.nodes.graph` and their
parameters from the same YAML parameter file the launch file passes, applied with the ROS 2
rules (``/**`` for all nodes, a node's own section over it). Each node gets its own
single-threaded executor on its own thread: a node sees one message at a time, a slow node does
not hold back the others (ONNX Runtime, open3d and GTSAM release the GIL), and an idle node
sleeps in its wait set. rclpy's MultiThreadedExecutor was measured to busy-poll while a callback
runs on one of its workers; in the replay process that starved the player of the GIL and
delivered frames late and in bursts, which depth-1 subscribers then dropped.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from lkd_perception.common.config import load_yaml, node_parameters
from lkd_perception.nodes.dds import use_dds_profile
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
    profile = use_dds_profile()
    log.info("Fast DDS profile: %s", profile or "middleware defaults")
    rclpy.init(args=args)
    nodes: list[Node] = []
    executors: list[SingleThreadedExecutor] = []
    threads: list[threading.Thread] = []
    try:
        nodes = instantiate(launch)
        for n in nodes:
            ex = SingleThreadedExecutor()
            ex.add_node(n)
            executors.append(ex)
            log.info("started %s", n.get_fully_qualified_name())
        # the last node spins on this thread (so Ctrl-C lands here), the others on their own
        for ex, n in zip(executors[:-1], nodes[:-1]):
            t = threading.Thread(target=_spin, args=(ex,), name=n.get_name(), daemon=True)
            t.start()
            threads.append(t)
        if executors:
            executors[-1].spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for ex in executors:
            ex.shutdown()
        for t in threads:
            t.join(timeout=10.0)
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()


def _spin(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass
