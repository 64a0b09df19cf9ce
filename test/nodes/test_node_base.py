"""LkdNode: parameters from config dataclasses, guarded callbacks, /diagnostics reports."""

from __future__ import annotations

import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String

from lkd_perception.common.config import param
from lkd_perception.common.errors import InputError
from lkd_perception.nodes.base import LkdNode


@dataclass(frozen=True)
class EchoConfig:
    gain: float = param(2.0, "multiplier", lo=0.0, hi=10.0)
    label: str = param("a", "label", choices=("a", "b"))


class EchoNode(LkdNode):
    WORK_S = 0.02  # each good message takes this long: the reported latency must cover it

    def __init__(self, **kw):
        super().__init__("lkd_echo", **kw)
        self.cfg = self.declare_config(EchoConfig, on_change=self._changed)
        self.seen: list[str] = []
        self.create_subscription(String, "in", self.guarded("echo", self._on_msg), self.sensor_qos())

    def _changed(self, cfg: EchoConfig) -> None:
        self.cfg = cfg

    def _on_msg(self, msg: String) -> None:
        if msg.data == "bad":
            raise InputError("bad input on purpose")
        if msg.data == "bug":
            raise ZeroDivisionError("a bug")
        time.sleep(self.WORK_S)
        self.seen.append(msg.data)


def test_parameters_and_diagnostics(ros_ctx, spin_until):
    node = EchoNode(context=ros_ctx, parameter_overrides=[Parameter("gain", value=3.5)])
    assert node.cfg.gain == 3.5
    d = node.describe_parameter("gain")
    assert d.type == ParameterType.PARAMETER_DOUBLE and d.floating_point_range[0].to_value == 10.0
    assert node.describe_parameter("sensor_qos_depth").read_only
    # ranges and choices are enforced at runtime
    assert not node.set_parameters([Parameter("gain", value=11.0)])[0].successful
    assert not node.set_parameters([Parameter("label", value="z")])[0].successful
    assert node.set_parameters([Parameter("label", value="b")])[0].successful and node.cfg.label == "b"

    probe = Node("lkd_probe", context=ros_ctx)
    pub = probe.create_publisher(String, "in", 10)
    diags: list[DiagnosticArray] = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0)
        for text in ["ok1", "bad", "bug", "ok2"]:
            pub.publish(String(data=text))
            spin_until(ex, lambda: False, 0.2)
        assert spin_until(ex, lambda: node.seen == ["ok1", "ok2"], 5.0), node.seen

        def echo_status():
            for arr in reversed(diags):
                for s in arr.status:
                    if s.name == "lkd_echo: echo":
                        return s
            return None

        assert spin_until(ex, lambda: echo_status() is not None, 5.0)
        s = echo_status()
        values = {kv.key: kv.value for kv in s.values}
        assert s.level == DiagnosticStatus.ERROR  # the bug is the worst recent problem
        assert values["processed"] == "2" and values["warnings"] == "1" and values["errors"] == "1"
        # the latency is the callback's time, in milliseconds: at least the work it did
        mean, p95, worst = (float(values[f"latency_{k}_ms"]) for k in ("mean", "p95", "max"))
        assert 1e3 * EchoNode.WORK_S <= min(mean, p95) and max(mean, p95) <= worst, values
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_invalid_parameter_file_value_falls_back_to_default(ros_ctx):
    node = EchoNode(context=ros_ctx, parameter_overrides=[Parameter("label", value="zzz")])
    try:
        assert node.cfg.label == "a"
    finally:
        node.destroy_node()


def test_nodes_return_freed_heap_on_a_steady_timer(ros_ctx, monkeypatch):
    from rclpy.clock import ClockType

    import lkd_perception.nodes.base as base
    from lkd_perception.common.heap import release_free_heap

    assert release_free_heap()  # glibc (this Linux): malloc_trim exists and ran
    calls = []
    monkeypatch.setattr(base, "release_free_heap", lambda: calls.append(1) or True)
    node = EchoNode(context=ros_ctx, parameter_overrides=[Parameter("heap_trim_period_s", value=0.05)])
    off = EchoNode(context=ros_ctx, parameter_overrides=[Parameter("heap_trim_period_s", value=0.0)])
    try:
        timer = node._heap_timer
        assert timer is not None and timer.clock.clock_type == ClockType.STEADY_TIME
        assert abs(timer.timer_period_ns - 50_000_000) < 1000
        assert off._heap_timer is None
        ex = SingleThreadedExecutor(context=ros_ctx)
        ex.add_node(node)
        for _ in range(20):
            ex.spin_once(timeout_sec=0.05)
        assert len(calls) >= 2  # it fired, on the steady clock (no /clock here)
    finally:
        node.destroy_node()
        off.destroy_node()


def test_a_parameter_the_node_does_not_have_is_named_with_the_closest_one(ros_ctx):
    """rcl drops an undeclared parameter silently; the node names it, with the likely intended one."""
    node = EchoNode(context=ros_ctx, parameter_overrides=[Parameter("gian", value=2.0), Parameter("label", value="b"),
                                                          Parameter("completely_unrelated", value=1)])
    try:
        assert node.unknown_parameters == {"gian": "gain", "completely_unrelated": None}
        assert node.cfg.gain == 2.0  # the default: the misspelt value did not reach the setting
    finally:
        node.destroy_node()
