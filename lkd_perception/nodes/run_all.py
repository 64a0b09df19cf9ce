"""Run the node graph in one process: ``lkd launch`` for machines without ``ros2 launch``.

The nodes, their names and remappings come from :mod:`lkd_perception.nodes.graph`, and each
node gets the same parameter file the launch file passes, parsed by rcl itself
(``--ros-args --params-file``), so a section keyed ``/**/node`` reaches the node under any
namespace exactly as it does under ``ros2 launch``. Each node gets its own
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
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from lkd_perception.common.errors import ConfigError
from lkd_perception.nodes.base import SigintWhileSpinning, spin_until_shutdown
from lkd_perception.nodes.dds import explain_node_error, use_dds_profile
from lkd_perception.nodes.graph import LOG_LEVELS, TOPIC_ARGUMENTS, NodeSpec, default_config_path, remappings, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchPlan:
    """What will be started, in the launch file's terms: the nodes, the parameter file every one
    of them reads, the parameters set over it, input topic remappings and the log level."""

    config_path: Path
    namespace: str
    use_sim_time: bool
    nodes: tuple[NodeSpec, ...] = field(default_factory=tuple)
    overrides: dict[str, Any] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # TOPIC_ARGUMENTS name -> topic
    log_level: str = "info"
    autostart: bool = True

    def parameters(self) -> dict[str, Any]:
        """What every node gets over the file (the launch file's second ``parameters`` entry)."""
        return {**self.overrides, "use_sim_time": self.use_sim_time, "autostart": self.autostart}

    def ros_arguments(self, spec: NodeSpec) -> list[str]:
        """The node's ``--ros-args``: the parameter file for rcl to parse and the remappings."""
        out = ["--ros-args", "--params-file", str(self.config_path)]
        for src, dst in remappings(spec, self.topics):
            out += ["-r", f"{src}:={dst}"]
        return out


def plan(
    config_path: str | Path | None = None,
    capabilities: str | Sequence[str] = "all",
    namespace: str = "",
    use_sim_time: bool = False,
    overrides: dict[str, Any] | None = None,
    topics: dict[str, str] | None = None,
    log_level: str = "info",
    autostart: bool = True,
) -> LaunchPlan:
    """Resolve the graph into the nodes to start, without starting them.

    ``overrides`` set parameters of every node on top of the file (like the launch file's
    ``use_sim_time``); ``topics`` rename inputs (keys of ``TOPIC_ARGUMENTS``); without
    ``autostart`` the nodes wait unconfigured for lifecycle transitions.
    """
    path = Path(config_path) if config_path else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    unknown = sorted(set(topics or {}) - set(TOPIC_ARGUMENTS))
    if unknown:
        raise ConfigError(f"unknown topic arguments {unknown}; known: {list(TOPIC_ARGUMENTS)}")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level {log_level!r} is not one of {list(LOG_LEVELS)}")
    return LaunchPlan(path.resolve(), namespace, use_sim_time, tuple(select(capabilities)), dict(overrides or {}),
                      {k: v for k, v in (topics or {}).items() if v}, log_level, autostart)


def instantiate(launch: LaunchPlan, context: Context | None = None) -> list[Node]:
    """Create the planned nodes (in ``context``) with their parameters and remappings."""
    created: list[Node] = []
    for spec in launch.nodes:
        cls = getattr(importlib.import_module(spec.module), spec.class_name)
        node = cls(
            context=context,
            namespace=launch.namespace or None,
            parameter_overrides=[Parameter(k, value=v) for k, v in launch.parameters().items()],
            cli_args=launch.ros_arguments(spec),
        )
        created.append(node)
    return created


def run(launch: LaunchPlan, args: Sequence[str] | None = None) -> None:
    """Start every planned node and spin them until Ctrl-C or shutdown."""
    profile = use_dds_profile()
    log.info("Fast DDS profile: %s", profile or "middleware defaults")
    with SigintWhileSpinning() as sigint:
        _run(launch, args, sigint)


def _run(launch: LaunchPlan, args: Sequence[str] | None, sigint: SigintWhileSpinning) -> None:
    # rcl configures logging once per process, from the global arguments
    rclpy.init(args=[*(args or ["lkd"]), "--ros-args", "--log-level", launch.log_level])
    nodes: list[Node] = []
    executors: list[SingleThreadedExecutor] = []
    threads: list[threading.Thread] = []
    try:
        try:
            nodes = instantiate(launch)
        except RCLError as exc:
            if (reason := explain_node_error(exc)) is None:
                raise
            raise ConfigError(reason) from None
        for n in nodes:
            ex = SingleThreadedExecutor()
            ex.add_node(n)
            executors.append(ex)
            log.info("started %s", n.get_fully_qualified_name())
        # the last node spins on this thread (so Ctrl-C lands here), the others on their own
        for ex, n in zip(executors[:-1], nodes[:-1]):
            t = threading.Thread(target=spin_until_shutdown, args=(ex,), name=n.get_name(), daemon=True)
            t.start()
            threads.append(t)
        if executors:
            sigint.spinning = True
            spin_until_shutdown(executors[-1])
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

