"""Parameters survive namespacing: every node, started under a namespace from the shipped
parameter file, holds every value of that file, read back through the ROS parameter services
(rcl_interfaces ListParameters / GetParameters) over DDS from another process.

Both ways a node starts are covered: `lkd launch` (all nodes in one process) and a node
executable (`--ros-args --params-file`, what `ros2 launch` runs). The expected values are read
from the YAML text directly (the `/**` section, then the node's `/**/<node>` section), not
through any of our own parameter code (a nested mapping is the dotted parameters rcl makes of it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python

from lkd_perception.nodes.graph import GRAPH

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "vehicle.yaml"
# parameters rclpy declares on every node by itself; not ours to put in the file
ROS_OWN = {"use_sim_time", "start_type_description_service"}


def _dotted(values: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in values.items():
        out.update(_dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _expected(node_name: str) -> dict:
    data = yaml.safe_load(CONFIG.read_text())
    return _dotted({**data["/**"]["ros__parameters"], **data[f"/**/{node_name}"]["ros__parameters"]})


def _call(executor, client, request, timeout_s: float):
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout_s)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


def _read_back(executor, probe: Node, fqn: str, timeout_s: float = 90.0) -> dict:
    """Every parameter of node ``fqn`` with its value, through its parameter services."""
    lister = probe.create_client(ListParameters, f"{fqn}/list_parameters")
    getter = probe.create_client(GetParameters, f"{fqn}/get_parameters")
    deadline = time.monotonic() + timeout_s
    while not (lister.service_is_ready() and getter.service_is_ready()):
        assert time.monotonic() < deadline, f"{fqn}: parameter services did not appear"
        executor.spin_once(timeout_sec=0.1)
    names = list(_call(executor, lister, ListParameters.Request(depth=0), 20.0).result.names)
    values = _call(executor, getter, GetParameters.Request(names=names), 20.0).values
    return {n: parameter_value_to_python(v) for n, v in zip(names, values)}


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate()
    return proc.returncode, err


def _check(params: dict, node_name: str) -> None:
    expected = _expected(node_name)
    ours = {k: v for k, v in params.items() if k not in ROS_OWN and not k.startswith("qos_overrides.")}
    assert set(ours) == set(expected), f"{node_name}: declared and file parameters differ"
    for k, v in expected.items():
        got = params[k]
        if isinstance(v, list):
            got = list(got)
        assert got == v, f"{node_name}.{k}: {got!r} on the node, {v!r} in {CONFIG.name}"


@pytest.mark.slow
def test_every_parameter_reaches_nodes_under_a_namespace(ros_ctx):
    # the file must hold values a node would not have anyway, or the test proves nothing
    odometry = _expected("lidar_odometry_node")
    from lkd_perception.odometry.config import OdometryConfig

    assert odometry["base_T_lidar"] != OdometryConfig().base_T_lidar
    assert "loop.min_age_s" in odometry  # a section's settings are dotted parameters

    launch = _start([sys.executable, "-m", "lkd_perception.cli", "launch", str(CONFIG), "--namespace", "car1"])
    node_exe = _start([sys.executable, "-c", "from lkd_perception.nodes.lidar_odometry_node import main; main()",
                       "--ros-args", "-r", "__ns:=/car2/sensing", "--params-file", str(CONFIG)])
    probe = Node("lkd_param_probe", context=ros_ctx)
    executor = SingleThreadedExecutor(context=ros_ctx)
    executor.add_node(probe)
    try:
        for spec in GRAPH:
            _check(_read_back(executor, probe, f"/car1/{spec.name}"), spec.name)
        _check(_read_back(executor, probe, "/car2/sensing/lidar_odometry_node"), "lidar_odometry_node")
    finally:
        executor.shutdown()
        probe.destroy_node()
        results = [_stop(p) for p in (launch, node_exe)]
    for code, err in results:
        assert "Traceback" not in err, err[-3000:]
    if any(code not in (0, -signal.SIGINT) for code, _ in results):
        pytest.fail(f"exit codes {[c for c, _ in results]}: {[e[-2000:] for _, e in results]}")


def test_offline_reading_of_the_parameter_file_is_rcls(ros_ctx, tmp_path):
    """node_parameters (what the offline commands read from the file) applies sections as rcl does:
    wildcards, bare names, file order (a later matching section wins, per parameter), and nested
    mappings as dotted names."""
    from lkd_perception.common.config import load_yaml, node_parameters

    f = tmp_path / "params.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    a: 1\n    b: 1\n    c: 1\n    d: 1\n"
        "/**/n:\n  ros__parameters:\n    a: 2\n"
        "n:\n  ros__parameters:\n    b: 3\n"
        "/car1/*:\n  ros__parameters:\n    c: 4\n"
        "/*/front/n:\n  ros__parameters:\n    d: 5\n"
        "/**/*:\n  ros__parameters:\n    e: 6\n    loop:\n      x: 1\n      y: 1\n"
        "/*/n:\n  ros__parameters:\n    a: 7\n    loop:\n      y: 8\n      deep:\n        z: [1.5, 2.5]\n"
    )
    for namespace in ("", "car1", "car1/front", "car2/front"):
        node = Node("n", namespace=namespace or None, context=ros_ctx, cli_args=["--ros-args", "--params-file", str(f)],
                    automatically_declare_parameters_from_overrides=True)
        try:
            by_rcl = {k: p.value for k, p in node.get_parameters_by_prefix("").items() if k not in ROS_OWN}
        finally:
            node.destroy_node()
        assert node_parameters(load_yaml(f), "n", namespace) == by_rcl, namespace
