"""The settings every node has beside its capability's own: ROS-free, so the offline run and the
parameter-file generator know them without importing rclpy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from lkd_perception.common.config import describe, flatten, from_dict, param, unknown_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class NodeIOConfig:
    """Settings every node has: how it subscribes to sensors and how often it reports health."""

    sensor_qos_reliability: str = param(
        "best_effort", "Reliability of sensor subscriptions", choices=("best_effort", "reliable"), read_only=True
    )
    sensor_qos_depth: int = param(1, "Queue depth of sensor subscriptions", lo=1, hi=1000, read_only=True)
    diagnostics_period_s: float = param(1.0, "Period of /diagnostics reports (s)", lo=0.05, hi=60.0, read_only=True)
    heap_trim_period_s: float = param(
        10.0, "Period of giving freed heap memory back to the OS (s, glibc only; 0 = never)",
        lo=0.0, hi=3600.0, read_only=True,
    )
    autostart: bool = param(
        True, "Configure and activate at start-up; false: wait for lifecycle transitions (ros2 lifecycle set, "
        "a lifecycle manager)", read_only=True,
    )


def node_settings(cls: type[T], values: Mapping[str, Any], node: str, source: str) -> T:
    """A node's capability config from its section of a parameter file, as the node reads it offline.

    The node's I/O settings (and ``use_sim_time``) are not the capability's and are skipped;
    anything else that is not a setting is logged with the closest name, as the node logs it,
    since rcl would drop it silently.
    """
    io_names = {s.name for s in describe(NodeIOConfig)} | {"use_sim_time"}
    known = {s.name for s in describe(cls)} | io_names
    for name, close in unknown_settings(flatten(values), known).items():
        hint = f"; did you mean {close!r}?" if close else ""
        log.warning("%s: %s is not a parameter of %s and is ignored%s", source, name, node, hint)
    return from_dict(cls, values, strict=False)
