"""Our DEIMv2 -> ONNX with the published contract, so that the runtime (which reads the contract
from the tensors) runs a fine-tuned or distilled model exactly like the published files.

Opset 17 as published (GridSample needs >= 16). Metadata names the classes (a fine-tuned model's
classes are not COCO's) and the input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.config import DetectorFamily
from lkd_perception.detection.deimv2_model import DEIMv2, DEIMv2Deploy
from lkd_perception.detection.export import OPSET, set_metadata


def export_deimv2(model: DEIMv2, out_path: str | Path, class_names: Sequence[str],
                  extra: Mapping[str, str] | None = None) -> Path:
    """Trace ``model`` with its post-processing to ``out_path`` (static 1x3xSxS input)."""
    if len(class_names) != model.num_classes:
        raise ModelError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    size = model.spec.input_size
    if size % 32:
        raise ModelError(f"DEIMv2 input size must be a multiple of 32 (strides up to 32), got {size}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    deploy = DEIMv2Deploy(model.eval().float()).eval()
    images = torch.zeros(1, 3, size, size)
    sizes = torch.tensor([[size, size]], dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(deploy, (images, sizes), str(out), input_names=["images", "orig_target_sizes"],
                          output_names=["labels", "boxes", "scores"], opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    set_metadata(out, DetectorFamily.DETR, class_names, size, extra)
    return out
