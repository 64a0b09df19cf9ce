"""A node stopped by Ctrl-C exits cleanly, even while its diagnostics timer fires.

rclpy's SIGINT handler shuts the context down from another thread (rcl_shutdown, the nodes not
yet destroyed). A timer callback that publishes at that moment got
``RCLError: Failed to publish: publisher's context is invalid`` (and the executor, building its
next wait set, ``RCLError: failed to initialize wait set``), and the process ended with a
traceback, as seen at the end of `lkd bench soak`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from rclpy.parameter import Parameter

from lkd_perception.nodes.base import LkdNode, SigintWhileSpinning

# a node executable (run_node) whose diagnostics timer fires all the time, so that Ctrl-C lands
# in or next to a publish: before the fix every run ended with a traceback
_BUSY_NODE = """
from rclpy.node import Node
from lkd_perception.nodes.base import run_node
from lkd_perception.nodes.diagnostics import DiagnosticsReporter

class Busy(Node):
    def __init__(self, **kw):
        super().__init__("lkd_busy_diagnostics", **kw)
        self.diagnostics = DiagnosticsReporter(self, period_s=1e-4)
        self.diagnostics.record("work", 0.001)
        self.create_timer(0.2, lambda: print("spinning", flush=True))

run_node(Busy)
"""


@pytest.mark.slow
def test_ctrl_c_while_diagnostics_publish_exits_without_traceback():
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _BUSY_NODE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout.readline().strip() == "spinning", proc.stderr.read()  # it is up and spinning
            time.sleep(0.1 * attempt)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "Traceback" not in err, err[-3000:]
        assert proc.returncode == 0, err[-3000:]


def test_diagnostics_publish_after_the_context_is_shut_down_is_quiet(ros_ctx):
    node = LkdNode("lkd_shutdown_probe", context=ros_ctx,
                   parameter_overrides=[Parameter("diagnostics_period_s", value=0.05)])
    node.diagnostics.record("work", 0.001)
    node.diagnostics.publish()  # a live context: published
    ros_ctx.handle.shutdown()  # what the SIGINT handler does: rcl_shutdown, nodes still there
    node.diagnostics.publish()  # the timer firing now: no exception
    node.destroy_node()


def test_ctrl_c_raises_only_before_the_spin_starts():
    # a start (model load, TensorRT build) can be interrupted; a spin is ended by rclpy's own
    # handler (context shutdown), never by a KeyboardInterrupt landing inside rclpy
    before = signal.getsignal(signal.SIGINT)
    with SigintWhileSpinning() as sigint:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        sigint.spinning = True
        signal.raise_signal(signal.SIGINT)  # quiet
    assert signal.getsignal(signal.SIGINT) is before
