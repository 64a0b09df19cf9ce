"""Node health on ``/diagnostics``: per-task rate, latency, and the last problem.

Each node reports one ``DiagnosticStatus`` per task (e.g. ``image``, ``scan``). A problem
raises the level for ``hold_s`` seconds so a single bad message is visible to a monitor that
samples once a second, then the level falls back to OK once good input flows again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy._rclpy_pybind11 import InvalidHandle, RCLError
from rclpy.node import Node

from lkd_perception.common.timing import LatencyWindow
from lkd_perception.io.topics import DIAGNOSTICS

# Levels are one-byte ``bytes`` in rclpy (the message field is ``byte``); they compare in order.
OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE)


@dataclass
class TaskHealth:
    """What one task of a node has done recently."""

    window: LatencyWindow = field(default_factory=LatencyWindow)
    warnings: int = 0
    errors: int = 0
    problem_level: bytes = OK
    problem_message: str = ""
    problem_time: float = -1e18
    last_ok_time: float = -1e18


class DiagnosticsReporter:
    """Collects task health for a node and publishes it periodically on ``/diagnostics``."""

    def __init__(self, node: Node, period_s: float = 1.0, hold_s: float = 5.0, stale_s: float = 10.0) -> None:
        self._node = node
        self._hold_s = hold_s
        self._stale_s = stale_s
        self._tasks: dict[str, TaskHealth] = {}
        self._values: dict[str, Callable[[], dict[str, object]]] = {}  # task -> its own figures
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS.name, 10)
        self._timer = node.create_timer(period_s, self.publish)

    def task(self, name: str) -> TaskHealth:
        return self._tasks.setdefault(name, TaskHealth())

    def record(self, task: str, latency_s: float) -> None:
        """A message of ``task`` was processed in ``latency_s`` seconds."""
        h = self.task(task)
        h.window.record(latency_s)
        h.last_ok_time = time.monotonic()

    def report_values(self, task: str, values: Callable[[], dict[str, object]]) -> None:
        """Figures of ``task``'s own state shown beside its health (e.g. the IMU biases the
        odometry estimates): ``values`` is read when a report is published, not per message."""
        self._values[task] = values

    def warn(self, task: str, message: str) -> None:
        h = self.task(task)
        h.warnings += 1
        self._problem(h, WARN, message)

    def error(self, task: str, message: str) -> None:
        h = self.task(task)
        h.errors += 1
        self._problem(h, ERROR, message)

    def _problem(self, h: TaskHealth, level: bytes, message: str) -> None:
        now = time.monotonic()
        if level >= h.problem_level or now - h.problem_time > self._hold_s:
            h.problem_level, h.problem_message = level, message
        h.problem_time = now

    def status(self, name: str) -> DiagnosticStatus:
        """The current status of one task."""
        h = self.task(name)
        now = time.monotonic()
        s = h.window.summary()
        if now - h.problem_time <= self._hold_s:
            level, message = h.problem_level, h.problem_message
        elif s.count and now - h.last_ok_time > self._stale_s:
            level, message = STALE, f"no input for {now - h.last_ok_time:.0f} s"
        else:
            level, message = OK, ("ok" if s.count else "waiting for input")
            h.problem_level = OK
        values = {
            "processed": s.count,
            "rate_hz": round(s.rate_hz, 3),
            "latency_mean_ms": round(s.mean_ms, 3),
            "latency_p95_ms": round(s.p95_ms, 3),
            "latency_max_ms": round(s.max_ms, 3),
            "warnings": h.warnings,
            "errors": h.errors,
            "last_problem": h.problem_message,
            **{k: str(v) for k, v in (self._values[name]() if name in self._values else {}).items()},
        }
        return DiagnosticStatus(
            level=level,
            name=f"{self._node.get_name()}: {name}",
            message=message,
            hardware_id=self._node.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def publish(self) -> None:
        """Report every task (the timer's callback).

        A node stopped by Ctrl-C can be inside this callback when rclpy's signal handler shuts
        the context down; the publish then fails because the context is gone. That is the end of
        the node, not an error: it returns quietly instead of ending the process with a traceback.
        """
        context = self._node.context
        if not self._tasks or not context.ok():
            return
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [self.status(name) for name in sorted(self._tasks)]
        try:
            self._pub.publish(msg)
        except (RCLError, InvalidHandle):
            if context.ok():
                raise
