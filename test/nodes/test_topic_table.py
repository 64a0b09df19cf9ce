"""The topic table (io.topics) is what the nodes do: every node, started by `lkd launch` in its
own process under a namespace, publishes exactly the topics the table gives it (relative ones
inside the namespace, absolute ones outside), with the table's message types, and subscribes to
its inputs there. Read over DDS from another process, through the graph API; the recorder,
`lkd run`, the report and the soak take their topics from the same table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from lkd_perception.io.topics import NODE_TOPICS, Topic
from lkd_perception.nodes.graph import GRAPH

ROOT = Path(__file__).resolve().parents[2]
NS = "tt"
# topics rclpy and the lifecycle machinery create on every node by themselves
ROS_OWN = {"/rosout", "/parameter_events"}


def _resolved(t: Topic) -> str:
    return t.name if t.name.startswith("/") else f"/{NS}/{t.name}"


def _graph_of(probe: Node, name: str) -> tuple[dict[str, str], set[str]]:
    pubs = {t: types[0] for t, types in probe.get_publisher_names_and_types_by_node(name, f"/{NS}")}
    subs = {t for t, _ in probe.get_subscriber_names_and_types_by_node(name, f"/{NS}")}
    own = {t for t in pubs if t in ROS_OWN or t.endswith("/transition_event")}
    return {t: ty for t, ty in pubs.items() if t not in own}, subs


@pytest.mark.slow
def test_every_node_publishes_and_reads_what_the_table_says(ros_ctx):
    assert set(NODE_TOPICS) == {s.name for s in GRAPH}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lkd_perception.cli", "launch", "config/simulation.yaml", "--namespace", NS],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    probe = Node("lkd_topic_probe", context=ros_ctx)
    executor = SingleThreadedExecutor(context=ros_ctx)
    executor.add_node(probe)
    want = {spec.name: ({_resolved(t): t.msgtype for t in spec.topics.published},
                        {_resolved(t) for t in spec.topics.inputs}) for spec in GRAPH}
    seen: dict[str, tuple[dict[str, str], set[str]]] = {}
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.2)
            names = {n for n, ns in probe.get_node_names_and_namespaces() if ns == f"/{NS}"}
            seen = {n: _graph_of(probe, n) for n in want if n in names}
            if all(n in seen and seen[n][0] == p and i <= seen[n][1] for n, (p, i) in want.items()):
                break
        assert proc.poll() is None, f"lkd launch exited: {proc.stderr.read()[-2000:]}"
        for name, (pubs, inputs) in want.items():
            assert name in seen, f"{name} did not appear under /{NS}"
            assert seen[name][0] == pubs, f"{name} publishes {seen[name][0]}, the table says {pubs}"
            assert inputs <= seen[name][1], f"{name} reads {seen[name][1]}, the table says {inputs}"
    finally:
        executor.remove_node(probe)
        probe.destroy_node()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

