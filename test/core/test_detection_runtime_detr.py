"""The shared runtime serves the DETR family too: plain resize, no NMS, class names from metadata."""

from __future__ import annotations

import numpy as np
import torch

from lkd_perception.common.config import from_dict
from lkd_perception.detection.config import DetectorConfig, DetectorFamily
from lkd_perception.detection.detr import Detr, DetrArch
from lkd_perception.detection.detr_export import export_detr
from lkd_perception.detection.postprocess import decode_detr
from lkd_perception.detection.preprocess import plain_resize, to_tensor
from lkd_perception.detection.runtime import Detector

torch.set_num_threads(1)


def test_detector_runs_a_detr_export(tmp_path):
    torch.manual_seed(0)
    model = Detr(DetrArch(0.35, (13, 17), 32, 4, 1, 2, 64, 7), 3).eval()
    path = export_detr(model, tmp_path / "d.onnx", 64, ["car", "pedestrian", "sign"])
    det = Detector(from_dict(DetectorConfig, {"model": "detr", "detr_model_path": str(path), "conf_threshold": 0.0,
                                              "max_detections": 5, "threads": 1}))
    assert det.info.family is DetectorFamily.DETR and det.class_names == ("car", "pedestrian", "sign")
    img = np.random.default_rng(2).integers(0, 255, (48, 100, 3), dtype=np.uint8)
    got = det(img)
    square, geom = plain_resize(img, 64)
    with torch.no_grad():
        boxes, scores = model(torch.from_numpy(to_tensor(square)))
    want = decode_detr(boxes[0].numpy(), scores[0].numpy(), geom, det.class_names, 0.0, 5)
    assert len(got) == 5
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, atol=0.05)
    assert (got.boxes_xyxy[:, [0, 2]] <= 100).all() and (got.boxes_xyxy[:, [1, 3]] <= 48).all()
