"""Fuzzed input on every node subscription: no crash, a diagnostics report, and the next good
message is processed. Real nodes (shipped models), real DDS."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2, PointField
from vision_msgs.msg import Detection2DArray

from lkd_perception.nodes.conversions import ns_to_stamp, numpy_to_image, stamp_to_ns

ENCODINGS = ["rgb8", "bgr8", "rgba8", "mono8", "mono16", "yuv422", "bayer_rggb8", "", "32FC1", "RGB8", "jpeg"]


@st.composite
def bad_images(draw) -> Image:
    enc = draw(st.sampled_from(ENCODINGS))
    h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    step = max(0, w * 3 + draw(st.integers(-4, 4)))
    n = max(0, step * h + draw(st.integers(-8, 4)))
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=draw(st.integers(0, 1)), step=step)
    msg.data = bytes(draw(st.binary(min_size=n, max_size=n)))
    msg.header.stamp = ns_to_stamp(draw(st.integers(0, 2**40)))  # time jumps both ways
    return msg


@st.composite
def bad_clouds(draw) -> PointCloud2:
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "intensity", "t"]), max_size=5, unique=True))
    fields = [PointField(name=nm, offset=4 * i, datatype=draw(st.sampled_from([7, 7, 8, 2, 42])), count=1)
              for i, nm in enumerate(names)]
    width = draw(st.integers(0, 30))
    point_step = 4 * len(names) + draw(st.integers(-2, 4))
    n = max(0, width * max(point_step, 0) + draw(st.integers(-6, 2)))
    kind = draw(st.sampled_from(["random", "nan", "zeros"]))
    raw = (np.full(n // 4 + 1, np.nan, np.float32).tobytes()[:n] if kind == "nan"
           else bytes(n) if kind == "zeros" else bytes(draw(st.binary(min_size=n, max_size=n))))
    msg = PointCloud2(height=1, width=width, fields=fields, point_step=max(point_step, 0),
                      row_step=max(point_step, 0) * width, is_bigendian=False, is_dense=False)
    msg.data = raw
    msg.header.stamp = ns_to_stamp(draw(st.integers(0, 2**40)))
    return msg


def _good_image(stamp_ns: int) -> Image:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), 90, np.uint8)
    img[60:180, 80:240] = 220  # a bright rectangle: edges for the line detector
    img += rng.integers(0, 8, img.shape, dtype=np.uint8)
    return numpy_to_image(img, "rgb8", ns_to_stamp(stamp_ns), "camera_optical")


def _problems_seen_by(probe: Node) -> list[DiagnosticStatus]:
    """A list that fills with every WARN/ERROR status the probe receives on /diagnostics."""
    problems: list[DiagnosticStatus] = []
    probe.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: problems.extend(s for s in m.status if s.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR)),
        10)
    return problems


IMAGE_NODES = [("lkd_perception.nodes.detector_node", "DetectorNode", "lkd/detections"),
               ("lkd_perception.nodes.line_node", "LineNode", "lkd/lines")]


@pytest.mark.parametrize("module, cls_name, out_topic", IMAGE_NODES)
@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.generate],  # DDS rounds: no shrinking
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bad=st.lists(bad_images(), min_size=6, max_size=10))
@pytest.mark.slow
def test_image_nodes_survive_fuzz(ros_ctx, spin_until, module, cls_name, out_topic, bad):
    node = getattr(importlib.import_module(module), cls_name)(context=ros_ctx)
    probe = Node("lkd_fuzzer", context=ros_ctx)
    pub = probe.create_publisher(Image, "camera/image_raw", 10)
    outputs: list[Detection2DArray] = []
    probe.create_subscription(Detection2DArray, out_topic, outputs.append, 10)
    problems = _problems_seen_by(probe)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and
                          probe.count_publishers(out_topic) > 0, 15.0)
        for msg in bad:
            pub.publish(msg)
            ex.spin_once(timeout_sec=0.02)
        stamp = 1_000_000_000_000 + 123
        # the next good message is processed, whatever came before
        for _ in range(3):
            pub.publish(_good_image(stamp))
            if spin_until(ex, lambda: any(stamp_to_ns(o.header.stamp) == stamp for o in outputs), 10.0):
                break
        assert any(stamp_to_ns(o.header.stamp) == stamp for o in outputs), "no output for the good image"
        if any(m.encoding not in ("rgb8", "bgr8", "rgba8", "mono8", "mono16", "yuv422", "RGB8") for m in bad):
            assert spin_until(ex, lambda: bool(problems), 5.0), "bad input was not reported on /diagnostics"
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()


def _room_cloud(rng: np.random.Generator, n: int = 6000) -> np.ndarray:
    """Points on the floor and four walls of a 30 x 20 m yard, with a few boxes: enough
    structure for registration."""
    pts = []
    k = n // 6
    pts.append(np.c_[rng.uniform(-15, 15, k), rng.uniform(-10, 10, k), np.full(k, -1.5)])
    for x in (-15.0, 15.0):
        pts.append(np.c_[np.full(k, x), rng.uniform(-10, 10, k), rng.uniform(-1.5, 3, k)])
    for y in (-10.0, 10.0):
        pts.append(np.c_[rng.uniform(-15, 15, k), np.full(k, y), rng.uniform(-1.5, 3, k)])
    pts.append(np.c_[rng.uniform(3, 5, k), rng.uniform(2, 4, k), rng.uniform(-1.5, 1, k)])
    return np.concatenate(pts).astype(np.float32) + rng.normal(0, 0.01, (6 * k, 3)).astype(np.float32)


@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bad=st.lists(bad_clouds(), min_size=6, max_size=10))
@pytest.mark.slow
def test_odometry_node_survives_fuzz_and_time_going_backwards(ros_ctx, spin_until, bad):
    from nav_msgs.msg import Odometry

    from lkd_perception.nodes.conversions import Cloud, cloud_to_pointcloud2
    from lkd_perception.nodes.lidar_odometry_node import LidarOdometryNode

    node = LidarOdometryNode(context=ros_ctx)
    probe = Node("lkd_fuzzer", context=ros_ctx)
    pub = probe.create_publisher(PointCloud2, "lidar/points", 10)
    odom: list[Odometry] = []
    probe.create_subscription(Odometry, "lkd/odometry", odom.append, 10)
    problems = _problems_seen_by(probe)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    rng = np.random.default_rng(1)
    t0 = 2_000_000_000_000_000_000

    def good(i: int) -> PointCloud2:
        return cloud_to_pointcloud2(Cloud(_room_cloud(rng)), ns_to_stamp(t0 + i * 100_000_000), "lidar")

    def send(msg) -> None:
        pub.publish(msg)
        spin_until(ex, lambda: False, 0.15)

    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and
                          probe.count_publishers("lkd/odometry") > 0, 15.0)
        send(good(10))
        for msg in bad:
            send(msg)
        send(good(5))  # time going backwards: reported, skipped
        assert spin_until(ex, lambda: bool(problems), 5.0), "bad scans were not reported on /diagnostics"
        # a good, later scan is processed whatever came before
        for i in (11, 12, 13):
            send(good(i))
        stamps = {stamp_to_ns(o.header.stamp) for o in odom}
        assert spin_until(ex, lambda: {stamp_to_ns(o.header.stamp) for o in odom} & {t0 + 12 * 10**8, t0 + 13 * 10**8},
                          10.0), f"no odometry for the good scans after the fuzz; got {sorted(stamps)}"
        assert t0 + 5 * 10**8 not in {stamp_to_ns(o.header.stamp) for o in odom}
        assert all(o.header.frame_id == "odom" and o.child_frame_id == "base_link" for o in odom)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
