"""detector_node over real DDS: Image in, Detection2DArray out, with the shipped models: the
simulator-trained one on a simulator frame, every COCO model on real photographs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from lkd_perception.detection.runtime import resolve_model_path
from lkd_perception.io.formats import read_rgb
from lkd_perception.nodes.conversions import numpy_to_image
from lkd_perception.nodes.detector_node import DetectorNode
from lkd_perception.sim.dataset import iter_frames

SHIPPED = "models/leyolo_n_sim.onnx"
PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "detection_real"
#: (family, parameter naming the file, file): every shipped detector trained on COCO
COCO_MODELS = (
    ("leyolo", "leyolo_model_path", "models/leyolo_n_coco.onnx"),
    ("leyolo", "leyolo_model_path", "models/leyolo_n_coco_480.onnx"),
    ("detr", "detr_model_path", "models/deimv2_atto_coco.onnx"),
    ("detr", "detr_model_path", "models/deimv2_femto_coco.onnx"),
)


def _class_names() -> list[str]:
    meta = {p.key: p.value for p in onnx.load(str(resolve_model_path(SHIPPED))).metadata_props}
    return json.loads(meta["class_names"])


@pytest.fixture(scope="module")
def frame():
    """A simulator frame (not in the training set: other seed) and its ground-truth boxes, xyxy."""
    f = next(iter_frames(1, seed=77, width=320, height=240, lines=False))
    gt = [(b.category_id, (b.bbox[0], b.bbox[1], b.bbox[0] + b.bbox[2], b.bbox[1] + b.bbox[3])) for b in f.boxes]
    return f.rgb, gt


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _wired(ros_ctx, overrides: list[Parameter]):
    """The node with ``overrides`` and a probe node that publishes images and collects detections,
    both on one executor."""
    node = DetectorNode(context=ros_ctx, parameter_overrides=overrides)
    assert node.detector is not None, node.model_error
    probe = Node("detector_probe", context=ros_ctx)
    pub = probe.create_publisher(Image, "camera/image_raw", 10)
    dets: list[Detection2DArray] = []
    probe.create_subscription(Detection2DArray, "lkd/detections", dets.append, 10)
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(node)
    ex.add_node(probe)
    return node, probe, pub, dets, ex


@pytest.mark.slow
def test_answers_images_and_survives_bad_ones(ros_ctx, spin_until, frame, latest_status):
    image, gt = frame
    node, probe, pub, dets, ex = _wired(ros_ctx, [Parameter("publish_debug_image", value=True),
                                                  Parameter("leyolo_model_path", value=SHIPPED)])
    debug: list[Image] = []
    diags: list[DiagnosticArray] = []
    probe.create_subscription(Image, "lkd/detections/debug_image", debug.append, 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and probe.count_publishers("lkd/detections") > 0)
        bad = Image(encoding="rgb8", height=10, width=10, step=30, data=bytes(7))  # truncated data
        pub.publish(bad)
        spin_until(ex, lambda: False, 0.3)
        msg = numpy_to_image(image, "rgb8", Time(sec=12, nanosec=345), "camera")
        pub.publish(msg)
        assert spin_until(ex, lambda: len(dets) >= 1 and len(debug) >= 1, 15.0)
        out = dets[-1]
        assert out.header.stamp.sec == 12 and out.header.stamp.nanosec == 345 and out.header.frame_id == "camera"
        names = set(_class_names())
        assert len(out.detections) > 0
        for d in out.detections:
            hyp = d.results[0].hypothesis
            assert hyp.class_id in names and 0.25 < hyp.score <= 1.0
            assert 0 <= d.bbox.center.position.x <= 320 and 0 <= d.bbox.center.position.y <= 240
            assert d.bbox.size_x > 0 and d.bbox.size_y > 0
        # the trained model finds the large cars of the frame (car = category 1 = first class name)
        cars = [box for cat, box in gt if cat == 1 and (box[2] - box[0]) * (box[3] - box[1]) > 2000]
        assert cars
        found = [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                  d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2)
                 for d in out.detections if d.results[0].hypothesis.class_id == "car"]
        for car in cars:
            assert max((_iou(car, f) for f in found), default=0.0) > 0.5, (car, found)
        assert (debug[-1].width, debug[-1].height, debug[-1].encoding) == (320, 240, "rgb8")
        assert spin_until(ex, lambda: (s := latest_status(diags, "detector_node: image")) is not None
                          and dict((kv.key, kv.value) for kv in s.values)["warnings"] == "1", 5.0)
        s = latest_status(diags, "detector_node: image")
        assert dict((kv.key, kv.value) for kv in s.values)["processed"] == "1"
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()


@pytest.mark.parametrize("family,param,model", COCO_MODELS, ids=[Path(m[2]).stem for m in COCO_MODELS])
def test_every_coco_model_finds_the_people_in_real_photographs(ros_ctx, spin_until, family, param, model):
    """messi5.jpg and basketball2.png show people (checked by eye); each model must report a person
    box on both, through the node over DDS with a real ONNX Runtime session."""
    node, probe, pub, dets, ex = _wired(ros_ctx, [Parameter("model", value=family), Parameter(param, value=model)])
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and probe.count_publishers("lkd/detections") > 0)
        for sec, name in enumerate(("messi5.jpg", "basketball2.png"), start=1):
            rgb = read_rgb(PHOTOS / name)
            pub.publish(numpy_to_image(rgb, "rgb8", Time(sec=sec), "camera"))
            assert spin_until(ex, lambda: any(d.header.stamp.sec == sec for d in dets), 20.0), name
            out = next(d for d in dets if d.header.stamp.sec == sec)
            people = [d for d in out.detections if d.results[0].hypothesis.class_id == "person"]
            assert people, (name, [d.results[0].hypothesis.class_id for d in out.detections])
            for d in people:
                assert 0.25 < d.results[0].hypothesis.score <= 1.0
                assert 0 <= d.bbox.center.position.x <= rgb.shape[1] and 0 <= d.bbox.center.position.y <= rgb.shape[0]
                assert d.bbox.size_x > 10 and d.bbox.size_y > 10
    finally:
        ex.shutdown()
        node.destroy_node()
        probe.destroy_node()
