"""line_node over real DDS: Image in; oriented boxes, markers and a debug image out."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray
from visualization_msgs.msg import ImageMarker

from lkd_perception.io.line_encoding import boxes_to_segments
from lkd_perception.nodes.conversions import numpy_to_image
from lkd_perception.nodes.line_node import LineNode

# A dark quadrilateral on a light background: four straight edges.
QUAD = np.array([[60.0, 50.0], [250.0, 70.0], [230.0, 190.0], [80.0, 170.0]])


def _image() -> np.ndarray:
    import cv2

    grey = np.full((240 * 8, 320 * 8), 220, np.uint8)
    cv2.fillPoly(grey, [np.round(((QUAD + 0.5) * 8 - 0.5) * 16).astype(np.int32)], 30, cv2.LINE_8, 4)
    grey = cv2.resize(grey, (320, 240), interpolation=cv2.INTER_AREA)
    return np.dstack([grey, grey, grey])


def test_answers_images_and_survives_bad_ones(ros_ctx, spin_until, latest_status):
    node = LineNode(context=ros_ctx, parameter_overrides=[Parameter("publish_debug_image", value=True),
                                                         Parameter("threads", value=1)])
    assert node.detector is not None, node.model_error
    probe = Node("line_probe", context=ros_ctx)
    pub = probe.create_publisher(Image, "camera/image_raw", 10)
    lines: list[Detection2DArray] = []
    markers: list[ImageMarker] = []
    debug: list[Image] = []
    diags: list[DiagnosticArray] = []
    probe.create_subscription(Detection2DArray, "lkd/lines", lines.append, 10)
    probe.create_subscription(ImageMarker, "lkd/lines/markers", markers.append, 10)
    probe.create_subscription(Image, "lkd/lines/debug_image", debug.append, 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and probe.count_publishers("lkd/lines") > 0)
        # bad input first: an unsupported encoding and an empty image
        pub.publish(Image(encoding="32FC1", height=4, width=4, step=16, data=bytes(64)))
        spin_until(ex, lambda: False, 0.3)
        pub.publish(Image(encoding="rgb8", height=0, width=0, step=0, data=b""))
        spin_until(ex, lambda: False, 0.3)
        pub.publish(numpy_to_image(_image(), "rgb8", Time(sec=7, nanosec=11), "camera"))
        assert spin_until(ex, lambda: lines and markers and debug, 15.0)
        out = lines[-1]
        assert out.header.stamp.sec == 7 and out.header.stamp.nanosec == 11 and out.header.frame_id == "camera"
        assert len(out.detections) >= 4
        centers = np.array([[d.bbox.center.position.x, d.bbox.center.position.y] for d in out.detections])
        thetas = np.array([d.bbox.center.theta for d in out.detections])
        lengths = np.array([d.bbox.size_x for d in out.detections])
        for d in out.detections:
            assert d.results[0].hypothesis.class_id == "line"
            assert 0.0 < d.results[0].hypothesis.score <= 1.0 and d.bbox.size_y >= 1.0
        # each quad edge is in the boxes: decode endpoints and find it within 3 px
        segs = boxes_to_segments(centers, thetas, lengths)
        for a, b in zip(QUAD, np.roll(QUAD, -1, axis=0)):
            fwd = np.maximum(np.linalg.norm(segs[:, :2] - a, axis=1), np.linalg.norm(segs[:, 2:] - b, axis=1))
            rev = np.maximum(np.linalg.norm(segs[:, :2] - b, axis=1), np.linalg.norm(segs[:, 2:] - a, axis=1))
            assert np.minimum(fwd, rev).min() < 3.0, (a, b, segs)
        m = markers[-1]
        assert m.type == ImageMarker.LINE_LIST and len(m.points) == 2 * len(out.detections)
        assert len(m.outline_colors) == len(m.points)
        assert (debug[-1].width, debug[-1].height, debug[-1].encoding) == (320, 240, "rgb8")

        def image_status():
            s = latest_status(diags, "line_node: image")
            return s if s is not None and dict((kv.key, kv.value) for kv in s.values).get("processed") == "1" else None

        assert spin_until(ex, lambda: image_status() is not None, 5.0)
        values = dict((kv.key, kv.value) for kv in image_status().values)
        assert values["warnings"] == "2"  # both bad images reported, the node kept going
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
