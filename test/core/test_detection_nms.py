"""NMS, letterbox geometry and output decoding of both families on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.detection.nms import batched_nms, box_iou_matrix, nms
from lkd_perception.detection.postprocess import decode_yolo, detections_to_coco
from lkd_perception.detection.preprocess import check_rgb, letterbox


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou_matrix(a, b), [[50 / 150, 0], [50 / 150, 0]])


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], float)
    scores = np.array([0.8, 0.9, 0.3, 0.5])
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 2]  # 0 and 3 overlap box 1 by IoU > 0.5
    assert nms(boxes, scores, 0.5, max_keep=1).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)  # IoU = 1/3
    assert nms(boxes, np.array([0.9, 0.8]), 1 / 3).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.33).tolist() == [0]


def test_batched_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 1, 0])
    assert sorted(batched_nms(boxes, scores, classes, 0.5).tolist()) == [0, 1]


def test_letterbox_geometry_round_trip():
    img = np.zeros((100, 200, 3), np.uint8)
    square, g = letterbox(img, 64)
    assert square.shape == (64, 64, 3) and square[0, 0, 0] == 114 and square[32, 32, 0] == 0
    assert g.scale_x == pytest.approx(0.32) and g.pad_y == 16 and g.pad_x == 0
    box = np.array([[20.0, 10.0, 120.0, 90.0]])
    in_tensor = box * 0.32 + np.array([0, 16, 0, 16])
    np.testing.assert_allclose(g.to_original(in_tensor), box, atol=1e-4)


def test_check_rgb_rejects_bad_images():
    with pytest.raises(InputError, match="RGB"):
        check_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        check_rgb(np.zeros((4, 4, 3), np.float32))


def test_decode_yolo_thresholds_nms_and_maps_back():
    _, g = letterbox(np.zeros((100, 200, 3), np.uint8), 64)  # scale 0.32, pad_y 16
    # three candidates: two overlapping class-1 boxes, one low-score class-0 box; nc = 2
    xywh = np.array([[32, 32, 16, 16], [33, 32, 16, 16], [10, 30, 8, 8]], np.float32)
    cls = np.array([[0.1, 0.9], [0.1, 0.6], [0.2, 0.05]], np.float32)
    out = np.concatenate((xywh, cls), 1).T  # [4 + nc, N]
    det = decode_yolo(out, g, ("a", "b"), conf_threshold=0.15, iou_threshold=0.5, max_detections=10)
    assert len(det) == 2 and det.labels == ["b", "a"]
    np.testing.assert_allclose(det.scores, [0.9, 0.2])
    np.testing.assert_allclose(
        det.boxes_xyxy[0], [(24) / 0.32, (24 - 16) / 0.32, 40 / 0.32, (40 - 16) / 0.32], rtol=1e-5
    )
    assert len(decode_yolo(out, g, ("a", "b"), 0.95, 0.5, 10)) == 0
    coco = detections_to_coco(det, 7, (3, 9))
    assert coco[0]["category_id"] == 9 and coco[0]["image_id"] == 7
    assert coco[0]["bbox"][2] == pytest.approx(16 / 0.32, rel=1e-5)

