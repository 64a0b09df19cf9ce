"""The node graph of the vehicle, described once.

Both ``launch/vehicle.launch.py`` (real ROS 2 launch) and ``lkd launch`` (all nodes in one
process, for machines without ``ros2 launch``) build from this description, so they start the
same nodes, with the same names, parameters and remappings. This module imports no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lkd_perception.io.topics import IMAGE, IMU, LIDAR, NODE_TOPICS, NodeTopics

PACKAGE = "lkd_perception"


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph; ``name`` is also its section in the parameter file."""

    name: str
    executable: str  # console script (setup.py entry point)
    capability: str  # detection | lines | odometry: what a user switches on or off
    module: str  # python module that holds the node class
    class_name: str

    @property
    def topics(self) -> NodeTopics:
        """What the node reads and publishes, with message types (the one topic table, io.topics)."""
        return NODE_TOPICS[self.name]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The topics it answers, as the node names them (relative): what launch arguments remap."""
        return tuple(t.name for t in self.topics.inputs)


GRAPH: tuple[NodeSpec, ...] = (
    NodeSpec("detector_node", "detector_node", "detection", "lkd_perception.nodes.detector_node", "DetectorNode"),
    NodeSpec("line_node", "line_node", "lines", "lkd_perception.nodes.line_node", "LineNode"),
    NodeSpec(
        "lidar_odometry_node", "lidar_odometry_node", "odometry",
        "lkd_perception.nodes.lidar_odometry_node", "LidarOdometryNode",
    ),
)

#: launch argument -> the input topic it renames (the node's own, relative name; the default)
TOPIC_ARGUMENTS: dict[str, str] = {"image_topic": IMAGE.name, "lidar_topic": LIDAR.name, "imu_topic": IMU.name}

#: rcl's log levels, for the ``log_level`` launch argument
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error", "fatal")

CAPABILITIES: tuple[str, ...] = tuple(dict.fromkeys(s.capability for s in GRAPH))


def select(capabilities: str | list[str] | tuple[str, ...] = "all") -> list[NodeSpec]:
    """The nodes of the chosen capabilities (a comma-separated string or a list; ``all``)."""
    if isinstance(capabilities, str):
        wanted = [c.strip() for c in capabilities.split(",") if c.strip()]
    else:
        wanted = list(capabilities)
    if not wanted or "all" in wanted:
        return list(GRAPH)
    unknown = sorted(set(wanted) - set(CAPABILITIES))
    if unknown:
        from lkd_perception.common.errors import ConfigError

        raise ConfigError(f"unknown capabilities {unknown}; choose from {list(CAPABILITIES)} or 'all'")
    return [s for s in GRAPH if s.capability in wanted]


def remappings(spec: NodeSpec, topics: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The remappings of a node's inputs from the topic launch arguments (``TOPIC_ARGUMENTS``).

    An argument left at its default (the node's own name) remaps nothing, so the launch
    description stays as small as the graph.
    """
    out = []
    for arg, own in TOPIC_ARGUMENTS.items():
        target = (topics or {}).get(arg, own) or own
        if own in spec.inputs and target != own:
            out.append((own, target))
    return out


def config_class(spec: NodeSpec) -> type:
    """The config dataclass a node declares its parameters from (its ``declare_config`` call).

    Read from the node's source and taken from its module, so the YAML tooling and the tests
    follow the node code instead of a second list that could drift from it.
    """
    import ast
    import importlib

    module = importlib.import_module(spec.module)
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "declare_config":
            return getattr(module, node.args[0].id)
    from lkd_perception.common.errors import ConfigError

    raise ConfigError(f"{spec.module} declares no config dataclass")


def default_config_path(name: str = "vehicle.yaml") -> Path:
    """``config/<name>`` (default ``vehicle.yaml``) of a source checkout or, when installed, of the package share."""
    here = Path(__file__).resolve().parents[2] / "config" / name
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config" / name
    except Exception:  # noqa: BLE001 - no ament index: report the source-tree path
        return here
