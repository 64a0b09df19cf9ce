"""Published DEIMv2 exports (COCO) run as the DETR family of our runtime.

The contract is read from the ONNX tensors, not the file name; preprocessing is the one the
models were trained with (PIL bilinear, /255); our ``Detector`` gives exactly what the raw ONNX
session gives on that input; real photographs with people in them give persons; a model of no
known contract is a ModelError that says what was expected; ``lkd detect`` names classes and draws.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lkd_perception.cli import main
from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.coco import COCO_CLASSES
from lkd_perception.detection.config import DetectorConfig, DetectorFamily
from lkd_perception.detection.preprocess import antialiased_bilinear_resize
from lkd_perception.detection.runtime import ContractName, Detector, labels_class_count
from lkd_perception.io.formats import read_rgb

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "detection_real"
#: every photograph shows at least one person (checked by eye; both models find them at 0.5)
PHOTO_NAMES = ("deimv2_sample.jpg", "messi5.jpg", "basketball2.png")
MODELS = {"atto": ("models/deimv2_atto_coco.onnx", 320), "femto": ("models/deimv2_femto_coco.onnx", 416)}


def _iou(a, b) -> float:
    """IoU of two x1y1x2y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _detector(path: str | Path, **values) -> Detector:
    cfg = {"model": "detr", "detr_model_path": str(path), "threads": 2, **values}
    return Detector(from_dict(DetectorConfig, cfg))


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    return {name: _detector(path, conf_threshold=0.5) for name, (path, _) in MODELS.items()}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: read_rgb(PHOTOS / name) for name in PHOTO_NAMES}


def test_default_detr_model_is_deimv2_atto():
    assert DetectorConfig().detr_model_path == MODELS["atto"][0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_contract_comes_from_the_tensors_not_the_file_name(tmp_path, name):
    path, size = MODELS[name]
    neutral = tmp_path / "some_model.onnx"
    shutil.copyfile(resolve_model_path(path), neutral)
    det = _detector(neutral)
    assert (det.info.contract, det.info.family, det.info.input_size) == (ContractName.DEIMV2, DetectorFamily.DETR, size)
    assert det.class_names == COCO_CLASSES  # no metadata in the published file: 80-class graph -> COCO


def test_class_count_is_read_from_the_graph():
    for path, _ in MODELS.values():
        assert labels_class_count(resolve_model_path(path).read_bytes()) == 80
    # a hand-made graph whose labels are a plain Mod by 3 (int64 initializer)
    idx = helper.make_tensor_value_info("index", TensorProto.INT64, [1, 5])
    labels = helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 5])
    nc = helper.make_tensor("nc", TensorProto.INT64, [], [3])
    graph = helper.make_graph([helper.make_node("Mod", ["index", "nc"], ["labels"])], "g", [idx], [labels], [nc])
    assert labels_class_count(helper.make_model(graph).SerializeToString()) == 3
    assert labels_class_count(b"") is None


def test_resize_is_pil_bilinear(photos):
    """DEIMv2 trained and evaluated on torchvision Resize of PIL images: its pre-processing must
    give PIL bilinear's pixels (OpenCV's INTER_LINEAR does not)."""
    from PIL import Image

    for rgb in photos.values():
        for size in (320, 416):
            want = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
            np.testing.assert_array_equal(antialiased_bilinear_resize(rgb, size, size), want)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("photo", PHOTO_NAMES)
def test_a_person_is_found_in_each_photograph(detectors, photos, name, photo):
    det = detectors[name](photos[photo])
    assert "person" in det.labels, list(zip(det.labels, det.scores.tolist()))
    assert (det.scores > 0.5).all() and len(det) <= 100


@pytest.mark.parametrize("name", sorted(MODELS))
def test_detector_equals_the_raw_onnx_session(detectors, photos, name):
    """Same labels, scores and boxes (within 1e-3 px) as the ONNX file run directly with the
    contract's preprocessing (Pillow resize, RGB / 255, orig_target_sizes = (width, height))."""
    from PIL import Image

    path, size = MODELS[name]
    session = ort.InferenceSession(str(resolve_model_path(path)), providers=["CPUExecutionProvider"])
    for rgb in photos.values():
        h, w = rgb.shape[:2]
        x = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), np.float32) / 255.0
        labels, boxes, scores = (a[0] for a in session.run(
            ["labels", "boxes", "scores"],
            {"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None]), "orig_target_sizes": np.array([[w, h]])}))
        keep = scores > 0.5
        want = boxes[keep].copy()
        want[:, [0, 2]] = want[:, [0, 2]].clip(0, w)
        want[:, [1, 3]] = want[:, [1, 3]].clip(0, h)
        got = detectors[name](rgb)
        assert got.class_ids.tolist() == labels[keep].tolist()
        np.testing.assert_allclose(got.scores, scores[keep], atol=1e-5)
        np.testing.assert_allclose(got.boxes_xyxy, want, atol=1e-3)


def test_threshold_cap_and_clipping(photos):
    det = _detector(MODELS["atto"][0], conf_threshold=0.0, max_detections=7)(photos["messi5.jpg"])
    h, w = photos["messi5.jpg"].shape[:2]
    assert len(det) == 7 and (np.diff(det.scores) <= 0).all()
    b = det.boxes_xyxy
    assert (b >= 0).all() and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all()


def test_our_fine_tuned_export_runs_as_a_deimv2_with_its_own_classes(tmp_path):
    """models/deimv2_atto_sim.onnx (our DEIMv2 code, fine-tuned on the simulator) is the DEIMv2 contract
    with the simulator's classes from its metadata, and finds the car of a rendered street."""
    det = _detector("models/deimv2_atto_sim.onnx", conf_threshold=0.3)
    assert det.info.contract is ContractName.DEIMV2 and det.info.family is DetectorFamily.DETR
    assert det.class_names == ("car", "pedestrian", "cyclist", "traffic_sign")
    assert det.info.input_size == 256
    assert main(["simulate", "--dataset", "detection", "--frames", "4", "--seed", "12", "--out", str(tmp_path)]) == 0
    coco = json.loads((tmp_path / "annotations.json").read_text())
    found = total = 0
    for image in coco["images"]:
        rgb = cv2.cvtColor(cv2.imread(str(tmp_path / "images" / image["file_name"])), cv2.COLOR_BGR2RGB)
        d = det(rgb)
        cars = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"] and a["category_id"] == 1
                and a["bbox"][2] * a["bbox"][3] > 40 * 40]
        for x, y, w, h in cars:
            total += 1
            ious = [_iou((x, y, x + w, y + h), b) for b, c in zip(d.boxes_xyxy, d.class_ids) if c == 0]
            found += max(ious, default=0.0) >= 0.5
    assert total >= 4 and found >= 0.75 * total, (found, total)  # measured: 8 of 8


def test_foreign_model_is_a_model_error_naming_the_contracts(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "foreign", [x], [y])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError) as err:
        _detector(path)
    text = str(err.value)
    assert "foreign.onnx" in text and "['input']" in text and "['logits']" in text
    for name in ("output0", "orig_target_sizes", "labels", "boxes", "scores", "deimv2", "yolo"):
        assert name in text


def test_a_deimv2_file_asked_for_as_leyolo_says_so():
    with pytest.raises(ModelError, match="holds a detr model"):
        Detector(from_dict(DetectorConfig, {"model": "leyolo", "leyolo_model_path": MODELS["atto"][0]}))


def test_lkd_detect_names_classes_and_draws(tmp_path):
    out, draw = tmp_path / "det.json", tmp_path / "drawn"
    images = [str(PHOTOS / n) for n in PHOTO_NAMES]
    assert main(["detect", *images, "--model", "detr", "--conf", "0.5", "--out", str(out), "--draw", str(draw)]) == 0
    results = json.loads(out.read_text())
    assert results and all(r["category_name"] == COCO_CLASSES[r["category_id"] - 1] for r in results)
    assert {r["image_id"] for r in results if r["category_name"] == "person"} == {0, 1, 2}
    for n in PHOTO_NAMES:
        drawn, original = cv2.imread(str(draw / f"{Path(n).stem}.png")), cv2.imread(str(PHOTOS / n))
        assert drawn is not None and drawn.shape == original.shape
        assert (drawn != original).any()  # boxes were drawn


def test_results_for_annotations_with_other_categories_are_a_clear_error():
    from lkd_perception.common.errors import InputError
    from lkd_perception.detection.postprocess import Detections, detections_to_coco

    det = Detections(np.array([[0, 0, 5, 5]], np.float32), np.array([0.9], np.float32), np.array([3]),
                     tuple(f"c{i}" for i in range(80)))
    assert detections_to_coco(det, 7)[0]["category_name"] == "c3"
    with pytest.raises(InputError, match="80 classes but the annotations 4 categories"):
        detections_to_coco(det, 7, (1, 2, 3, 4))
