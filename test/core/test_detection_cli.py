"""``lkd detect`` -> COCO results -> ``lkd evaluate detections``, through the real command line."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.toy_coco import TOY_CLASSES, gt_as_predictions, write_toy_coco

from lkd_perception.cli import main
from lkd_perception.detection.export import export_leyolo
from lkd_perception.detection.leyolo import LeYOLO


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ann = write_toy_coco(root / "data", 3, seed=4, width=96, height=64)
    torch.manual_seed(0)
    model = LeYOLO("n", nc=4)
    for branch in model.head.cls:
        torch.nn.init.zeros_(branch[-1].bias)
    return root, ann, export_leyolo(model, root / "m.onnx", 64, list(TOY_CLASSES))


def test_detect_then_evaluate(setup, capsys):
    root, ann, onnx_path = setup
    images = sorted(str(p) for p in (root / "data" / "images").glob("*.png"))
    pred = root / "pred.json"
    assert main(["detect", *images, "--model-path", str(onnx_path), "--gt", str(ann), "--conf", "0.3",
                 "--threads", "1", "--out", str(pred)]) == 0
    results = json.loads(pred.read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2, 3}
    assert all(r["category_id"] in (1, 2, 3, 4) and len(r["bbox"]) == 4 for r in results)
    assert main(["evaluate", "detections", "--pred", str(pred), "--gt", str(ann)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["mAP50-95"] < 0.5 and set(metrics["per_class_AP50-95"]) == set(TOY_CLASSES)


def test_evaluate_gt_against_itself(setup, capsys):
    root, ann, _ = setup
    perfect = root / "perfect.json"
    perfect.write_text(json.dumps(gt_as_predictions(json.loads(ann.read_text()))))
    assert main(["evaluate", "detections", "--pred", str(perfect), "--gt", str(ann)]) == 0
    assert json.loads(capsys.readouterr().out)["mAP50-95"] == pytest.approx(1.0)


def test_missing_model_is_a_clean_error(setup, capsys):
    root, _, _ = setup
    img = next((root / "data" / "images").glob("*.png"))
    assert main(["detect", str(img), "--model-path", str(root / "absent.onnx")]) == 2
    assert "absent.onnx" in capsys.readouterr().err
