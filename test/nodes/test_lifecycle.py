"""The nodes are managed nodes, driven over DDS through lifecycle_msgs ChangeState / GetState.

`lkd launch --no-autostart` starts detector_node in its own process, unconfigured; this test,
another process, walks it through configure, activate, deactivate, cleanup, configure, activate
and shutdown, and checks at each step what the node offers on the graph (subscription, publisher)
and whether a camera frame gives detections.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from lkd_perception.nodes.conversions import numpy_to_image
from lkd_perception.nodes.qos import output_qos

ROOT = Path(__file__).resolve().parents[2]
NODE = "/lc/detector_node"


def _call(executor, client, request, timeout_s: float = 60.0):
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout_s)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


@pytest.mark.slow
def test_transitions_over_dds(ros_ctx, spin_until):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lkd_perception.cli", "launch", "--capabilities", "detection", "--namespace", "lc",
         "--no-autostart", "--set", "threads=1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    probe = Node("lkd_lifecycle_probe", context=ros_ctx)
    executor = SingleThreadedExecutor(context=ros_ctx)
    executor.add_node(probe)
    change = probe.create_client(ChangeState, f"{NODE}/change_state")
    get = probe.create_client(GetState, f"{NODE}/get_state")
    camera = probe.create_publisher(Image, "/lc/camera/image_raw", output_qos())
    received: list[Detection2DArray] = []
    probe.create_subscription(Detection2DArray, "/lc/lkd/detections", received.append, output_qos())
    frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8), "rgb8",
                           probe.get_clock().now().to_msg(), "camera")

    def state() -> str:
        return _call(executor, get, GetState.Request()).current_state.label

    def transition(tid: int) -> bool:
        return _call(executor, change, ChangeState.Request(transition=Transition(id=tid))).success

    def detections_for_a_frame(expect: bool) -> bool:
        before = len(received)
        camera.publish(frame)
        return spin_until(executor, lambda: len(received) > before, 10.0 if expect else 2.0)

    try:
        assert spin_until(executor, lambda: change.service_is_ready() and get.service_is_ready(), 90.0), \
            "lifecycle services did not appear"
        assert state() == "unconfigured"
        assert probe.count_publishers("/lc/lkd/detections") == 0 and camera.get_subscription_count() == 0

        assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"  # model loaded, outputs exist
        assert spin_until(executor, lambda: probe.count_publishers("/lc/lkd/detections") == 1, 10.0)
        assert camera.get_subscription_count() == 0  # not subscribed before activate

        assert transition(Transition.TRANSITION_ACTIVATE) and state() == "active"
        assert spin_until(executor, lambda: camera.get_subscription_count() == 1, 10.0)
        assert detections_for_a_frame(expect=True)

        assert transition(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
        assert spin_until(executor, lambda: camera.get_subscription_count() == 0, 10.0)
        assert not detections_for_a_frame(expect=False)  # stopped publishing
        assert probe.count_publishers("/lc/lkd/detections") == 1  # the publisher stays, quiet

        assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured"
        assert spin_until(executor, lambda: probe.count_publishers("/lc/lkd/detections") == 0, 10.0)
        # an invalid transition is refused, the node stays where it is
        assert not transition(Transition.TRANSITION_ACTIVATE) and state() == "unconfigured"

        assert transition(Transition.TRANSITION_CONFIGURE) and transition(Transition.TRANSITION_ACTIVATE)
        assert spin_until(executor, lambda: camera.get_subscription_count() == 1, 10.0)
        assert detections_for_a_frame(expect=True)

        assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN) and state() == "finalized"
        assert spin_until(executor, lambda: camera.get_subscription_count() == 0, 10.0)
        assert _call(executor, get, GetState.Request()).current_state.id == State.PRIMARY_STATE_FINALIZED
    finally:
        executor.shutdown()
        probe.destroy_node()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate()
    assert "Traceback" not in err, err[-3000:]
