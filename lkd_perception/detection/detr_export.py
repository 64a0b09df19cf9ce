"""DETR -> ONNX following the detector contract, and the check that ONNX Runtime agrees with PyTorch.

Contract (shared with :mod:`lkd_perception.detection.runtime`): input ``images`` [1,3,S,S] RGB in
[0,1]; outputs ``boxes`` [1,Q,4] normalised cxcywh and ``scores`` [1,Q,nc] sigmoid; opset 17
(native LayerNormalization, REFERENCE 1.7); metadata model_family=detr, class_names, input_size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.config import DetectorFamily
from lkd_perception.detection.detr import Detr
from lkd_perception.detection.export import set_metadata, trace_to_onnx

# Ops that break TensorRT export of DETRs (REFERENCE 1.7); the graph must not contain them.
FORBIDDEN_OPS = frozenset({"GridSample", "NonMaxSuppression"})


def export_detr(model: Detr, out_path: str | Path, input_size: int, class_names: Sequence[str]) -> Path:
    """Trace ``model`` (eval mode) to ONNX with a static [1,3,S,S] input and write the metadata."""
    coarsest = max(model.backbone.out_strides)
    if input_size % coarsest:
        raise ModelError(f"input size {input_size} is not a multiple of the backbone's coarsest stride {coarsest}")
    if len(class_names) != model.num_classes:
        raise ModelError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    out = trace_to_onnx(model, out_path, input_size, ["boxes", "scores"])
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    bad = sorted(ops & FORBIDDEN_OPS)
    if bad:
        raise ModelError(f"exported DETR graph contains {bad}, which the TensorRT contract forbids")
    set_metadata(out, DetectorFamily.DETR, class_names, input_size)
    return out


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute differences between ONNX Runtime and PyTorch outputs on the same inputs."""

    max_abs_boxes: float
    max_abs_scores: float
    samples: int


def check_parity(model: Detr, onnx_path: str | Path, input_size: int, samples: int = 3, seed: int = 0) -> ParityReport:
    """Run random images through both and report the worst differences."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    db = ds = 0.0
    model.eval()
    for _ in range(samples):
        x = rng.random((1, 3, input_size, input_size), dtype=np.float32)
        with torch.no_grad():
            tb, ts = model(torch.from_numpy(x))
        ob, os_ = sess.run(["boxes", "scores"], {"images": x})
        db = max(db, float(np.abs(ob - tb.numpy()).max()))
        ds = max(ds, float(np.abs(os_ - ts.numpy()).max()))
    return ParityReport(db, ds, samples)
