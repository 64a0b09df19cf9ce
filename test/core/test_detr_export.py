"""A tiny DETR exported to ONNX follows the detector contract and agrees with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.detr import Detr, DetrArch
from lkd_perception.detection.detr_export import check_parity, export_detr

TINY = DetrArch(0.35, (13, 17), 32, 4, 1, 2, 64, 7)


@pytest.mark.slow
def test_onnx_contract_and_parity(tmp_path):
    torch.manual_seed(0)
    model = Detr(TINY, 3).eval()
    # Give the heads non-trivial weights so parity is tested on real variation.
    for h in model.box_heads:
        torch.nn.init.normal_(h.layers[-1].weight, std=0.05)
    path = export_detr(model, tmp_path / "d.onnx", 64, ["car", "pedestrian", "sign"])
    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["model_family"] == "detr" and int(meta["input_size"]) == 64
    assert json.loads(meta["class_names"]) == ["car", "pedestrian", "sign"]
    assert m.opset_import[0].version == 17
    ops = {n.op_type for n in m.graph.node}
    assert "GridSample" not in ops and "NonMaxSuppression" not in ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"]
    assert sess.get_inputs()[0].shape == [1, 3, 64, 64]
    boxes, scores = sess.run(
        ["boxes", "scores"], {"images": np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)}
    )
    assert boxes.shape == (1, 7, 4) and scores.shape == (1, 7, 3)
    rep = check_parity(model, path, 64, samples=2)
    assert rep.max_abs_boxes < 1e-4 and rep.max_abs_scores < 1e-4


def test_export_rejects_wrong_class_list(tmp_path):
    with pytest.raises(ModelError, match="class names"):
        export_detr(Detr(TINY, 3), tmp_path / "d.onnx", 64, ["car"])
    with pytest.raises(ModelError, match="stride"):
        export_detr(Detr(TINY, 1), tmp_path / "d.onnx", 80, ["car"])


@pytest.mark.slow
def test_lkd_export_detr_command(tmp_path):
    from lkd_perception.cli import main
    from lkd_perception.common.config import from_dict
    from lkd_perception.detection.train_detr import DetrTrainConfig, save_checkpoint

    torch.manual_seed(0)
    ck = save_checkpoint(
        tmp_path / "m.pt", Detr(TINY, 2), ["a", "b"], 64, from_dict(DetrTrainConfig, {"input_size": 64})
    )
    out = tmp_path / "report.json"
    assert main(["export", "detr", "--ckpt", str(ck), "--out", str(tmp_path / "m.onnx"), "--json-out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["max_abs_diff_scores"] < 1e-4 and rep["class_names"] == ["a", "b"] and rep["input_size"] == 64


def test_shipped_student_follows_the_contract():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "models" / "detr_student.onnx"
    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["model_family"] == "detr"
    assert json.loads(meta["class_names"]) == ["car", "pedestrian", "cyclist", "traffic_sign"]
    size = int(meta["input_size"])
    assert m.opset_import[0].version == 17 and "GridSample" not in {n.op_type for n in m.graph.node}
    assert path.stat().st_size < 15e6
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    boxes, scores = sess.run(["boxes", "scores"], {"images": x})
    assert boxes.shape[0] == 1 and boxes.shape[2] == 4 and scores.shape == (1, boxes.shape[1], 4)
    assert np.isfinite(boxes).all() and (scores >= 0).all() and (scores <= 1).all()
