"""A node whose model file is missing reports ERROR on /diagnostics and stays up."""

from __future__ import annotations

import importlib

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter


@pytest.mark.parametrize("module, cls_name, param", [
    ("lkd_perception.nodes.detector_node", "DetectorNode", "leyolo_model_path"),
    ("lkd_perception.nodes.line_node", "LineNode", "model_path"),
])
def test_missing_model_reports_error_and_stays_up(ros_ctx, spin_until, latest_status, tmp_path, module, cls_name,
                                                  param):
    missing = str(tmp_path / "gone.onnx")
    cls = getattr(importlib.import_module(module), cls_name)
    node = cls(context=ros_ctx, parameter_overrides=[Parameter(param, value=missing)])
    assert node.detector is None and "gone.onnx" in node.model_error
    probe = Node("lkd_model_probe", context=ros_ctx)
    diags: list[DiagnosticArray] = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    name = f"{node.get_name()}: model"
    try:
        assert spin_until(ex, lambda: latest_status(diags, name) is not None, 10.0)
        s = latest_status(diags, name)
        assert s.level == DiagnosticStatus.ERROR and "gone.onnx" in s.message
        # a managed node: the failed configure left it unconfigured, and configuring again fails the same way
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE and node.detector is None
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
