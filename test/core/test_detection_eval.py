"""COCO evaluation: ground truth against itself is perfect; errors are reported clearly."""

from __future__ import annotations

import pytest
from helpers.toy_coco import gt_as_predictions

from lkd_perception.common.errors import InputError
from lkd_perception.eval.detection import evaluate_detections

GT = {
    "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
               {"id": 2, "file_name": "b.png", "width": 100, "height": 80}],
    "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]},
        {"image_id": 1, "category_id": 2, "bbox": [50, 20, 10, 30]},
        {"image_id": 2, "category_id": 1, "bbox": [5, 40, 40, 30]},
    ],
    "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "pedestrian"}, {"id": 3, "name": "cyclist"}],
}


def test_ground_truth_against_itself_is_perfect():
    m = evaluate_detections(GT, gt_as_predictions(GT))
    assert m.map50_95 == pytest.approx(1.0) and m.map50 == pytest.approx(1.0)
    assert m.per_class_ap["car"] == pytest.approx(1.0) and m.per_class_ap["pedestrian"] == pytest.approx(1.0)
    assert m.per_class_ap["cyclist"] == -1.0  # no ground truth for it
    assert m.num_images == 2 and m.num_predictions == 3


def test_errors_lower_the_score():
    preds = gt_as_predictions(GT)
    preds[0]["bbox"] = [14, 10, 30, 20]  # IoU 26/34 ~ 0.76: counts at 0.5..0.75 only
    preds.append({"image_id": 2, "category_id": 2, "bbox": [60, 0, 20, 20], "score": 0.9})  # false positive
    m = evaluate_detections(GT, preds)
    assert m.map50 < 1.0 or m.map50_95 < 1.0
    assert 0.0 < m.per_class_ap["car"] < 1.0
    assert evaluate_detections(GT, []).map50_95 == 0.0


def test_bad_inputs():
    with pytest.raises(InputError, match="absent from the ground truth"):
        evaluate_detections(GT, [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(InputError, match="lacks"):
        evaluate_detections(GT, [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(InputError, match="COCO dict"):
        evaluate_detections({"images": []}, [])
