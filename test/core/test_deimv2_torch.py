"""Our PyTorch DEIMv2 against the published ONNX files it imports, and its export back to ONNX.

Tolerances were measured on the three reference photographs (published ONNX Runtime session vs our
PyTorch modules, same pre-processed input): largest score difference over all 300 outputs
6.3e-4 (Atto; Femto 8.1e-5), largest box difference of the 21 / 24 detections above 0.3
0.012 / 0.010 px; the bounds
below leave some room for other CPUs' float rounding, not for a wrong layer (which moves scores by
> 0.05 and boxes by pixels, as seen while building it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lkd_perception.cli import main
from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.config import DetectorConfig
from lkd_perception.detection.deimv2_export import export_deimv2
from lkd_perception.detection.deimv2_import import load_deimv2, model_from_onnx
from lkd_perception.detection.deimv2_model import DEIMv2Deploy
from lkd_perception.detection.preprocess import deimv2_resize, to_tensor
from lkd_perception.detection.runtime import ContractName, Detector
from lkd_perception.io.formats import read_rgb

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "detection_real"
NAMES = ("deimv2_sample.jpg", "messi5.jpg", "basketball2.png")
MODELS = {"atto": "models/deimv2_atto_coco.onnx", "femto": "models/deimv2_femto_coco.onnx"}
SCORE_TOL, BOX_TOL_PX, SHOWN = 2e-3, 0.5, 0.3


@pytest.fixture(scope="module", params=sorted(MODELS))
def imported(request):
    torch.set_num_threads(1)  # shared CPUs: more threads only spin
    path = resolve_model_path(MODELS[request.param])
    model, report = model_from_onnx(path)
    return request.param, path, model, report


def _published(path: Path, x: np.ndarray, sizes: np.ndarray):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["labels", "boxes", "scores"], {"images": x, "orig_target_sizes": sizes})


def _match(a_labels, a_boxes, a_scores, b_labels, b_boxes, b_scores):
    """For every detection of A above SHOWN: the B detection of the same label nearest in box."""
    worst_box, worst_score = 0.0, 0.0
    for lab, box, sc in zip(a_labels, a_boxes, a_scores):
        if sc < SHOWN:
            continue
        same = np.flatnonzero(b_labels == lab)
        assert same.size, f"label {lab} (score {sc:.3f}) missing"
        d = np.abs(b_boxes[same] - box).max(1)
        j = same[int(d.argmin())]
        worst_box, worst_score = max(worst_box, float(d.min())), max(worst_score, abs(float(b_scores[j] - sc)))
    return worst_box, worst_score


def test_import_is_complete_and_strict(imported):
    name, _, model, report = imported
    assert report.variant == name and report.input_size == {"atto": 320, "femto": 416}[name]
    # every tensor of the deploy graph loaded; only training-only heads of earlier layers copied
    assert all(k.startswith(("decoder.dec_score_head.", "decoder.lqe_layers.")) for k in report.copied)
    assert report.loaded == sum(1 for _ in model.state_dict()) - len(report.copied)


@pytest.mark.slow
def test_parity_with_published_onnx_on_photographs(imported):
    name, path, model, report = imported
    shown = 0
    for photo in NAMES:
        square, geom = deimv2_resize(read_rgb(PHOTOS / photo), report.input_size)
        x, sizes = to_tensor(square), np.array([[geom.width, geom.height]], np.int64)
        ol, ob, os_ = _published(path, x, sizes)
        with torch.no_grad():
            tl, tb, ts = (t.numpy() for t in DEIMv2Deploy(model)(torch.from_numpy(x), torch.from_numpy(sizes)))
        # all 300 scores, order-free (near-ties may swap places between the two)
        assert np.abs(np.sort(ts[0]) - np.sort(os_[0])).max() < SCORE_TOL, photo
        box, score = _match(ol[0], ob[0], os_[0], tl[0], tb[0], ts[0])
        assert box < BOX_TOL_PX and score < SCORE_TOL, (photo, box, score)
        shown += int((os_[0] >= SHOWN).sum())
    assert shown >= 3  # the photographs do hold detections (persons at least)


@pytest.mark.slow
def test_export_back_to_onnx_runs_in_the_runtime_like_the_published_file(imported, tmp_path):
    name, path, model, _ = imported
    ours = export_deimv2(model, tmp_path / f"{name}.onnx", [f"c{i}" for i in range(80)])
    img = read_rgb(PHOTOS / "messi5.jpg")
    cfg = {"model": "detr", "threads": 2, "conf_threshold": SHOWN}
    pub = Detector(from_dict(DetectorConfig, {**cfg, "detr_model_path": str(path)}))(img)
    det = Detector(from_dict(DetectorConfig, {**cfg, "detr_model_path": str(ours)}))
    assert det.info.contract is ContractName.DEIMV2 and det.class_names[0] == "c0"  # metadata names the classes
    got = det(img)
    assert len(pub.scores) >= 1
    box, score = _match(pub.class_ids, pub.boxes_xyxy, pub.scores, got.class_ids, got.boxes_xyxy, got.scores)
    assert box < BOX_TOL_PX and score < SCORE_TOL


def test_lkd_import_deimv2_writes_a_checkpoint_that_loads(tmp_path, capsys):
    ckpt = tmp_path / "atto.pt"
    assert main(["import", "deimv2", str(resolve_model_path(MODELS["atto"])), "--out", str(ckpt)]) == 0
    assert '"variant": "atto"' in capsys.readouterr().out
    model, names, extra = load_deimv2(ckpt)
    ref, _ = model_from_onnx(resolve_model_path(MODELS["atto"]))
    assert names[0] == "person" and extra["provenance"]["source_file"] == "deimv2_atto_coco.onnx"
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_import_refuses_what_is_not_deimv2(tmp_path):
    with pytest.raises(ModelError, match="not a DEIMv2"):
        model_from_onnx(resolve_model_path("models/lsdnet.onnx"))
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        model_from_onnx(bad)
    with pytest.raises(ModelError):
        load_deimv2(bad)
