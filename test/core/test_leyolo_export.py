"""ONNX export follows the contract and agrees with PyTorch; the runtime loads it (real ORT)."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.detection.config import DetectorConfig
from lkd_perception.detection.export import export_leyolo
from lkd_perception.detection.leyolo import LeYOLO
from lkd_perception.detection.postprocess import decode_yolo
from lkd_perception.detection.preprocess import letterbox, to_tensor
from lkd_perception.detection.runtime import Detector

torch.set_num_threads(1)
NAMES = ["car", "pedestrian", "cyclist"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = LeYOLO("n", nc=3).eval()
    # non-trivial BN statistics so that a wrong export cannot agree by accident
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    for branch in model.head.cls:  # scores near 0.5 instead of the rare-object prior, so boxes pass thresholds
        torch.nn.init.zeros_(branch[-1].bias)
    path = export_leyolo(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", 96, NAMES)
    return model, path


def test_onnx_matches_pytorch_and_contract(tiny):
    model, path = tiny
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_family"] == "leyolo" and json.loads(meta["class_names"]) == NAMES and meta["input_size"] == "96"
    assert proto.opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"] and list(sess.get_inputs()[0].shape) == [1, 3, 96, 96]
    x = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    (onnx_out,) = sess.run(["output0"], {"images": x})
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (1, 4 + 3, 12 * 12 + 6 * 6 + 3 * 3)
    np.testing.assert_allclose(onnx_out, torch_out, atol=2e-4, rtol=1e-3)


def test_detector_runs_the_export_like_pytorch(tiny):
    model, path = tiny
    cfg = from_dict(DetectorConfig, {"leyolo_model_path": str(path), "conf_threshold": 0.3, "threads": 1})
    det = Detector(cfg)
    assert det.class_names == tuple(NAMES) and det.info.input_size == 96
    img = np.random.default_rng(1).integers(0, 255, (60, 140, 3), dtype=np.uint8)
    got = det(img)
    square, geom = letterbox(img, 96)
    with torch.no_grad():
        ref = model(torch.from_numpy(to_tensor(square))).numpy()[0]
    want = decode_yolo(ref, geom, tuple(NAMES), 0.3, cfg.iou_threshold, cfg.max_detections)
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, atol=0.05)
    assert (got.boxes_xyxy[:, [0, 2]] <= 140).all() and (got.boxes_xyxy[:, [1, 3]] <= 60).all()
    with pytest.raises(InputError):
        det(np.zeros((10, 10), np.uint8))


def test_missing_model_and_wrong_family(tiny, tmp_path):
    _, path = tiny
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ModelError, match="nope.onnx"):
        Detector(from_dict(DetectorConfig, {"leyolo_model_path": str(missing)}))
    with pytest.raises(ModelError, match="holds a leyolo model"):
        Detector(from_dict(DetectorConfig, {"model": "detr", "detr_model_path": str(path)}))
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    with pytest.raises(ModelError, match="metadata"):
        Detector(from_dict(DetectorConfig, {"leyolo_model_path": str(bare)}))


def test_unavailable_provider_falls_back_to_cpu(tiny, caplog):
    _, path = tiny
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is present here; nothing to fall back from")
    with caplog.at_level(logging.WARNING):
        det = Detector(from_dict(DetectorConfig, {"leyolo_model_path": str(path), "provider": "tensorrt"}))
    assert det.providers == ("CPUExecutionProvider",)
    assert "TensorrtExecutionProvider" in caplog.text
