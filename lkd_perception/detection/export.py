"""LeYOLO checkpoint -> ONNX following the detector contract (opset 17, metadata, YOLOv8 output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import onnx
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.config import DetectorFamily

OPSET = 17


def set_metadata(path: str | Path, family: DetectorFamily, class_names: Sequence[str], input_size: int,
                 extra: Mapping[str, str] | None = None) -> None:
    """Write the contract's metadata_props (model_family, class_names JSON, input_size) into an ONNX file,
    plus ``extra`` entries (provenance of imported weights: source, licence, ...)."""
    model = onnx.load(str(path))
    props = {"model_family": family.value, "class_names": json.dumps(list(class_names)),
             "input_size": str(int(input_size))}
    props.update({str(k): str(v) for k, v in (extra or {}).items()})
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def trace_to_onnx(model: torch.nn.Module, out_path: str | Path, input_size: int,
                  output_names: Sequence[str]) -> Path:
    """Trace ``model`` in eval mode with a static [1,3,S,S] ``images`` input to an opset-17 ONNX file."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(out), input_names=["images"], output_names=list(output_names),
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return out


def export_leyolo(model: torch.nn.Module, out_path: str | Path, input_size: int, class_names: Sequence[str],
                  extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Trace a LeYOLO module (eval mode, decode in-graph) to ONNX with a static [1,3,S,S] input."""
    if input_size % 32:
        raise ModelError(f"LeYOLO input size must be a multiple of 32 (strides up to 32), got {input_size}")
    if len(class_names) != model.nc:
        raise ModelError(f"{len(class_names)} class names for a model with {model.nc} classes")
    out = trace_to_onnx(model, out_path, input_size, ["output0"])
    set_metadata(out, DetectorFamily.LEYOLO, class_names, input_size, extra_metadata)
    return out
