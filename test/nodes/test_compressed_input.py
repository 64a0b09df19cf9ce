"""Camera nodes on ``sensor_msgs/CompressedImage`` (``image_transport: compressed``) over real DDS:
JPEG frames on image_transport's ``<image topic>/compressed``, remapping honoured, a corrupt frame
reported and survived."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage
from vision_msgs.msg import Detection2DArray

from lkd_perception.io.codecs import encode_compressed_image
from lkd_perception.io.formats import read_rgb
from lkd_perception.nodes.detector_node import DetectorNode
from lkd_perception.nodes.line_node import LineNode

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures"


def _jpeg(rgb: np.ndarray, sec: int) -> CompressedImage:
    fmt, data = encode_compressed_image(rgb, "jpeg", 90)
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp = Time(sec=sec)
    msg.header.frame_id = "camera"
    return msg


def _run(ros_ctx, spin_until, latest_status, node_cls, name, output, photo, check):
    node = node_cls(context=ros_ctx, parameter_overrides=[Parameter("image_transport", value="compressed")],
                    cli_args=["--ros-args", "-r", "camera/image_raw:=/front_camera/image"])
    probe = Node(f"{name}_compressed_probe", context=ros_ctx)
    pub = probe.create_publisher(CompressedImage, "/front_camera/image/compressed", 10)
    got: list[Detection2DArray] = []
    diags: list[DiagnosticArray] = []
    probe.create_subscription(Detection2DArray, output, got.append, 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and probe.count_publishers(output) > 0)
        corrupt = _jpeg(read_rgb(photo), 1)
        corrupt.data = bytes(corrupt.data[:40])  # a truncated JPEG: warned about, then the next frame works
        pub.publish(corrupt)
        spin_until(ex, lambda: False, 0.5)  # sensor QoS keeps the last frame only: let this one be taken
        pub.publish(_jpeg(read_rgb(photo), 2))
        assert spin_until(ex, lambda: any(m.header.stamp.sec == 2 for m in got), 20.0)
        out = next(m for m in got if m.header.stamp.sec == 2)
        assert out.header.frame_id == "camera"
        check(out)
        assert spin_until(ex, lambda: (s := latest_status(diags, f"{name}: image")) is not None
                          and dict((kv.key, kv.value) for kv in s.values).get("warnings") == "1", 5.0)
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_detector_takes_jpeg_on_the_remapped_compressed_topic(ros_ctx, spin_until, latest_status):
    def check(out: Detection2DArray) -> None:
        assert any(d.results[0].hypothesis.class_id == "person" for d in out.detections)

    _run(ros_ctx, spin_until, latest_status, DetectorNode, "detector_node", "lkd/detections",
         PHOTOS / "detection_real" / "messi5.jpg", check)


def test_line_node_takes_jpeg_on_the_remapped_compressed_topic(ros_ctx, spin_until, latest_status):
    def check(out: Detection2DArray) -> None:
        assert len(out.detections) >= 5  # the box photograph has many straight edges

    _run(ros_ctx, spin_until, latest_status, LineNode, "line_node", "lkd/lines",
         PHOTOS / "lines_real" / "box.png", check)
