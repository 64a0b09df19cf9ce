"""Published DEIMv2 ONNX exports -> our PyTorch :class:`DEIMv2`, and checkpoints of it.

The published files hold the weights as graph initializers, many of them anonymous
(``onnx::Conv_2273``). What each one is comes from the node that consumes it: node names are the
PyTorch module paths of the exporting model (``/model/backbone/stem/stem1/conv/Conv``), which our
modules reproduce. MatMul weights are stored (in, out) and are transposed into ``nn.Linear``; the
bias of a MatMul is the initializer added to its output. Weights the deploy export dropped (score
heads and quality estimators of the layers before the last, used only by training's auxiliary
losses) start as copies of the last layer's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import sha256_of
from lkd_perception.detection.coco import COCO_CLASSES
from lkd_perception.detection.deimv2_decoder import weighting_function
from lkd_perception.detection.deimv2_model import SPECS, DEIMv2

_QKV = {"MatMul": "q_proj", "MatMul_1": "k_proj", "MatMul_2": "v_proj"}
_RENAMES = (("decoder.decoder.", "decoder."), ("dec_bbox_head.0.", "dec_bbox_head."), ("conv_bn_fused", "conv"))


def _module_key(node_name: str) -> str:
    """'/model/encoder/fpn_block/cv2/cv2.0/conv1/conv_bn_fused/Conv' -> 'encoder.fpn_block.cv2.0.conv1.conv'."""
    segs = node_name.strip("/").split("/")
    if segs[0] == "model":
        segs = segs[1:]
    op = segs.pop()
    segs = [re.sub(r"_\d+$", "", s) for s in segs]  # second call of a shared module: 'layers.0_1'
    kept = [s for i, s in enumerate(segs) if not (i + 1 < len(segs) and segs[i + 1].startswith(s + "."))]
    if kept and kept[-1] == "self_attn" and op in _QKV:
        kept.append(_QKV[op])
    return _rename(".".join(kept))


def _rename(key: str) -> str:
    for a, b in _RENAMES:
        key = key.replace(a, b)
    return key


def onnx_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Our state-dict keys -> arrays, from a published DEIMv2 file; plus facts read on the way
    (variant, input size, class count, FDR bin values)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf errors have no common type
        raise ModelError(f"{path}: not an ONNX file: {exc}") from exc
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for n in g.node:
        for x in n.input:
            consumers[x].append(n)
    out: dict[str, np.ndarray] = {}
    facts: dict[str, Any] = {}
    for n in g.node:
        if n.op_type == "Conv" and len(n.input) == 3 and n.input[1] in inits:
            key = _module_key(n.name)
            out[key + ".weight"], out[key + ".bias"] = inits[n.input[1]], inits[n.input[2]]
        elif n.op_type == "MatMul" and n.input[1] in inits and inits[n.input[1]].ndim == 2:
            key = _module_key(n.name)
            out[key + ".weight"] = inits[n.input[1]].T.copy()
            for add in consumers[n.output[0]]:
                bias = [x for x in add.input if x in inits and x != n.output[0]]
                if add.op_type == "Add" and bias:
                    out[key + ".bias"] = inits[bias[0]]
        elif n.op_type == "MatMul" and "integral" in n.name and n.input[1] in inits:
            facts["project"] = inits[n.input[1]]
    for name, arr in inits.items():
        if name.startswith("model.") and re.search(r"(lab\.(scale|bias)|norm\d\.scale|out_proj\.(weight|bias))$", name):
            out[_rename(name[len("model."):])] = arr
    if "model.decoder.reg_scale" in inits:
        facts["reg_scale"] = float(inits["model.decoder.reg_scale"].reshape(-1)[0])
    agg = out.get("backbone.stages.2.blocks.0.aggregation.1.conv.weight")
    variant = {256: "atto", 512: "femto"}.get(None if agg is None else agg.shape[0])
    if variant is None:
        raise ModelError(
            f"{path}: not a DEIMv2 HGNetv2 Atto/Femto export (no third backbone stage of 256/512 channels)"
        )
    facts["variant"] = variant
    score = out.get("decoder.enc_score_head.weight")
    facts["num_classes"] = int(score.shape[0]) if score is not None else 0
    shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    facts["input_size"] = int(shape[2]) if len(shape) == 4 and shape[2] == shape[3] and shape[2] > 0 else None
    return out, facts


@dataclass(frozen=True)
class ImportReport:
    """What the import did: variant, tensors loaded from the file, ours filled by copying."""

    variant: str
    input_size: int
    loaded: int
    copied: tuple[str, ...]


def model_from_onnx(path: str | Path) -> tuple[DEIMv2, ImportReport]:
    """Our DEIMv2 with the weights of a published export, strict both ways: every weight in the
    file lands in a parameter of the same shape, every parameter is loaded or explicitly copied."""
    weights, facts = onnx_weights(path)
    spec = SPECS[facts["variant"]]
    if facts["input_size"] not in (None, spec.input_size):
        spec = type(spec)(**{**spec.__dict__, "input_size": facts["input_size"]})
    model = DEIMv2(spec, num_classes=facts["num_classes"])
    if "reg_scale" in facts and abs(facts["reg_scale"] - model.decoder.reg_scale) > 1e-6:
        raise ModelError(f"{path}: reg_scale {facts['reg_scale']} but our decoder uses {model.decoder.reg_scale}")
    if "project" in facts and not np.allclose(facts["project"], weighting_function(32, 0.5, 4.0).numpy(), atol=1e-5):
        raise ModelError(f"{path}: FDR bin values differ from W(n) with up=0.5, reg_scale=4")
    state = model.state_dict()
    unknown = sorted(k for k in weights if k not in state)
    if unknown:
        raise ModelError(
            f"{path}: weights with no place in our DEIMv2: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}"
        )
    bad = [k for k, v in weights.items() if tuple(v.shape) != tuple(state[k].shape)]
    if bad:
        raise ModelError(
            f"{path}: shape mismatch for {[(k, weights[k].shape, tuple(state[k].shape)) for k in bad[:5]]}"
        )
    last = len(model.decoder.layers) - 1
    copied = []
    for k in state:
        if k in weights:
            continue
        src = re.sub(r"^decoder\.(dec_score_head|lqe_layers)\.\d+\.", lambda m: f"decoder.{m.group(1)}.{last}.", k)
        if src == k or src not in weights:
            raise ModelError(f"{path}: no weight for {k}")
        weights[k] = weights[src]
        copied.append(k)
    model.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}, strict=True)
    return model.eval(), ImportReport(spec.name, spec.input_size, len(weights) - len(copied), tuple(copied))


def save_deimv2(
    path: str | Path, model: DEIMv2, class_names: list[str] | tuple[str, ...], extra: dict[str, Any] | None = None
) -> Path:
    """A checkpoint: the spec, the class names and the state dict (tensors only, so that loading
    runs no code: ``torch.load(weights_only=True)``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "spec": dict(model.spec.__dict__),
            "class_names": list(class_names),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        p,
    )
    return p


def load_deimv2(path: str | Path) -> tuple[DEIMv2, list[str], dict[str, Any]]:
    """Model, class names and the checkpoint's other entries (training state) from :func:`save_deimv2`."""
    from lkd_perception.detection.deimv2_model import DEIMv2Spec

    ckpt = load_checkpoint_file(path, "DEIMv2 checkpoint")
    try:
        spec = DEIMv2Spec(**ckpt["spec"])
        names = list(ckpt["class_names"])
        model = DEIMv2(spec, num_classes=len(names))
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: not a DEIMv2 checkpoint of ours: {exc}") from exc
    return model, names, ckpt


def import_deimv2(onnx_path: str | Path, out: str | Path, export: str | Path | None = None) -> dict[str, Any]:
    """``lkd import deimv2``: the published file into a checkpoint of our code (and, with ``export``,
    back to ONNX through our own exporter), with the import's facts as a JSON-able dict."""
    model, rep = model_from_onnx(onnx_path)
    names = (
        list(COCO_CLASSES)
        if model.num_classes == len(COCO_CLASSES)
        else [f"class_{i}" for i in range(model.num_classes)]
    )
    source = {"source_file": Path(onnx_path).name, "source_sha256": sha256_of(Path(onnx_path))}
    save_deimv2(out, model, names, {"provenance": source})
    result: dict[str, Any] = {
        "checkpoint": str(out),
        "variant": rep.variant,
        "input_size": rep.input_size,
        "tensors_loaded": rep.loaded,
        "copied_from_last_layer": list(rep.copied),
        **source,
    }
    if export:
        from lkd_perception.detection.deimv2_export import export_deimv2

        result["onnx"] = str(export_deimv2(model, export, names, extra={"imported_from": source["source_file"]}))
    return result
