"""Shared test fixtures.

ROS tests run real rclpy nodes over FastDDS. Each pytest session picks its own ROS_DOMAIN_ID
(before any context is created) so that concurrent test runs on one machine never see each
other's topics, and discovery stays on localhost.
"""

from __future__ import annotations

import os
import random
import time
from typing import Callable

import pytest

os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(20, 160))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# the transport profile the product runs with (config/fastdds.xml), before any participant exists
from lkd_perception.nodes.dds import use_dds_profile  # noqa: E402

use_dds_profile()


@pytest.fixture
def ros_ctx():
    """An initialised rclpy Context, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


def _spin_until(executor, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


@pytest.fixture
def spin_until():
    """``spin_until(executor, predicate, timeout_s=10) -> bool``: spin until predicate holds."""
    return _spin_until


def _latest_status(diagnostics: list, name: str):
    """The newest DiagnosticStatus called ``name`` among received DiagnosticArrays, or None."""
    for arr in reversed(diagnostics):
        for status in arr.status:
            if status.name == name:
                return status
    return None


@pytest.fixture
def latest_status():
    """``latest_status(received_arrays, "node: task") -> DiagnosticStatus | None``."""
    return _latest_status
