"""The official LeYOLO-nano COCO weights in our code: the published layer list, strict loading by
name, parity of PyTorch and the shipped ONNX with the official outputs, and end-to-end detections.

The official outputs (``leyolo_nano_reference.npz``) were computed with the fork's own module code
on three real photographs. Tolerances: scores 1e-4 everywhere; boxes 1e-3 px on every anchor
whose best class score is at least 0.001 (the lowest threshold ``lkd detect`` uses, so every box
any command reports). On the remaining near-zero-score anchors the DFL distribution is flat and
float32 rounding alone moves the box by up to ~2e-3 px: our model evaluated in float64 is 1.6e-3 px
from the reference there, i.e. that is the reference's own rounding, bounded here at 3e-3 px.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import ModelError
from lkd_perception.detection.config import DetectorConfig
from lkd_perception.detection.leyolo import SIZES
from lkd_perception.detection.leyolo_import import (
    build_official,
    match_size,
    read_checkpoint,
    table_from_official,
)
from lkd_perception.detection.postprocess import decode_yolo
from lkd_perception.detection.preprocess import Geometry
from lkd_perception.detection.runtime import Detector
from lkd_perception.io.formats import read_rgb

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "test" / "fixtures" / "leyolo_official"
WEIGHTS = OFFICIAL / "leyolo_nano_coco.npz"
PHOTOS = ROOT / "test" / "fixtures" / "detection_real"
SHIPPED = {320: ROOT / "models" / "leyolo_n_coco.onnx", 480: ROOT / "models" / "leyolo_n_coco_480.onnx"}

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def reference():
    with np.load(OFFICIAL / "leyolo_nano_reference.npz", allow_pickle=False) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def official_model():
    return build_official(read_checkpoint(WEIGHTS))


def assert_matches_reference(out: np.ndarray, ref: np.ndarray) -> None:
    assert out.shape == ref.shape == (3, 84, 2100)
    diff = np.abs(out - ref)
    assert diff[:, 4:].max() <= 1e-4, f"scores differ by {diff[:, 4:].max()}"
    reportable = np.broadcast_to((ref[:, 4:].max(1) >= 0.001)[:, None, :], diff[:, :4].shape)
    assert reportable.sum() > 400  # the bound below covers real boxes, not an empty set
    assert diff[:, :4][reportable].max() <= 1e-3, f"boxes differ by {diff[:, :4][reportable].max()} px"
    assert diff[:, :4].max() <= 3e-3, f"boxes differ by {diff[:, :4].max()} px on low-score anchors"


def test_our_nano_table_is_the_published_layer_list():
    ckpt = read_checkpoint(WEIGHTS)
    rows = table_from_official(ckpt.layers)
    assert len(rows) == 35 and len(rows) == len(SIZES["n"].table)
    for i, (theirs, ours) in enumerate(zip(rows, SIZES["n"].table)):
        src = list(ours[0]) if isinstance(ours[0], (list, tuple)) else ours[0]
        assert (theirs[0], theirs[1], tuple(theirs[2])) == (src, ours[1], tuple(ours[2])), f"layer {i}"
    assert match_size(ckpt.layers) == "n"
    assert len(ckpt.class_names) == 80 and ckpt.class_names[0] == "person"


def test_pytorch_reproduces_the_official_outputs(official_model, reference):
    with torch.no_grad():
        out = official_model(torch.from_numpy(reference["inputs"])).numpy()
    assert_matches_reference(out, reference["outputs"])
    # every official tensor was loaded: the parameter count is the checkpoint's minus the fixed DFL bins
    assert sum(p.numel() for p in official_model.parameters()) == 1_120_480 - 16


def test_shipped_onnx_reproduces_the_official_outputs_and_says_where_it_came_from(reference):
    sess = ort.InferenceSession(str(SHIPPED[320]), providers=["CPUExecutionProvider"])
    out = np.concatenate([sess.run(["output0"], {"images": reference["inputs"][i:i + 1]})[0] for i in range(3)])
    assert_matches_reference(out, reference["outputs"])
    for size, path in SHIPPED.items():
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert meta["model_family"] == "leyolo" and meta["input_size"] == str(size)
        assert json.loads(meta["class_names"]) == [str(n) for n in reference["names"]]
        assert meta["licence"] == "AGPL-3.0" and "LeYOLO" in meta["source"]
        assert meta["source_sha256"].startswith("08983bf90fc3d0d6")


@pytest.mark.slow
def test_import_command_rebuilds_the_shipped_model(tmp_path, reference):
    from lkd_perception.cli import main

    out = tmp_path / "n480.onnx"
    assert main(["import", "leyolo", str(WEIGHTS), "--out", str(out), "--img-size", "480"]) == 0
    x = np.random.default_rng(0).random((1, 3, 480, 480), dtype=np.float32)
    ours = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    shipped = ort.InferenceSession(str(SHIPPED[480]), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert ours.shape == (1, 84, 60 * 60 + 30 * 30 + 15 * 15)
    # Equal bytes only on the CPU that made the shipped file: PyTorch folds batch norm into the
    # convolutions with its CPU's vector kernels (AVX2 vs AVX-512 differ in the last bit of some
    # folded weights; measured up to 5.6e-4 px on these outputs). Scores and boxes stay within the
    # fidelity bounds of the model card.
    np.testing.assert_allclose(ours[:, 4:], shipped[:, 4:], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[:, :4], shipped[:, :4], rtol=0, atol=2e-3)


def _official_detections(reference, index: int):
    """The official raw outputs decoded with the same rule (conf 0.25, class-aware NMS 0.45)."""
    gain, left, top = (float(v) for v in reference["letterbox"][index])
    h, w = read_rgb(PHOTOS / str(reference["files"][index])).shape[:2]
    geom = Geometry(gain, gain, left, top, w, h)
    return decode_yolo(reference["outputs"][index], geom, tuple(reference["names"]), 0.25, 0.45, 100)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_detector_finds_the_official_detections_on_real_photographs(reference):
    detector = Detector(from_dict(DetectorConfig, {"threads": 2}))  # the default: the shipped COCO nano at 320
    assert Path(detector.info.path).name == "leyolo_n_coco.onnx"
    people = 0
    for i, name in enumerate(reference["files"]):
        official = _official_detections(reference, i)
        ours = detector(read_rgb(PHOTOS / str(name)))
        assert len(official) > 0
        for box, cls in zip(official.boxes_xyxy, official.class_ids):
            same = [_iou(box, b) for b, c in zip(ours.boxes_xyxy, ours.class_ids) if c == cls]
            assert same and max(same) >= 0.9, f"{name}: official {official.class_names[cls]} {box} not found"
        people += sum(label == "person" for label in ours.labels)
    assert people >= 3


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_checkpoint(tmp_path / "nope.npz")
    with np.load(WEIGHTS) as data:
        tensors = {k: data[k] for k in data.files}
    shutil.copy(OFFICIAL / "leyolo_nano_coco.json", tmp_path / "w.json")

    def write(t: dict) -> Path:
        np.savez(tmp_path / "w.npz", **t)
        return tmp_path / "w.npz"

    missing = dict(tensors)
    del missing["model.35.cv3.2.3.bias"]
    with pytest.raises(ModelError, match=r"missing tensors \[model\.35\.cv3\.2\.3\.bias\]"):
        build_official(read_checkpoint(write(missing)))
    wrong = dict(tensors, **{"model.0.c.weight": np.zeros((8, 3, 3, 3), np.float32)})
    with pytest.raises(ModelError, match=r"model\.0\.c\.weight \(8, 3, 3, 3\) \(expected \(16, 3, 3, 3\)\)"):
        build_official(read_checkpoint(write(wrong)))
    extra = dict(tensors, **{"model.36.c.weight": np.zeros(3, np.float32)})
    with pytest.raises(ModelError, match=r"no place for \[model\.36\.c\.weight\]"):
        build_official(read_checkpoint(write(extra)))
    (tmp_path / "w.json").write_text("{}")
    with pytest.raises(ModelError, match="'names', 'stride' and 'layers'"):
        read_checkpoint(write(tensors))
