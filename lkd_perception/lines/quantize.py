"""Static INT8 quantisation of the line model for CPUs (ONNX Runtime, QDQ, per-channel weights).

On a 2-core x86 CPU with VNNI the INT8 graph runs the network about twice as fast as FP32 for a
small loss of sAP (models/MODEL_CARD.md). Activation ranges are calibrated on images fed exactly
as at run time (:func:`~lkd_perception.lines.runtime.network_input`); use training images, never
the evaluation ones. The FP32 model's metadata is copied, so the runtime accepts the result.
GPUs (CUDA/TensorRT with FP16) should keep the FP32 model.

Weights are quantised to 7 bits ([-64, 64], ONNX Runtime's ``reduce_range``). Why: on x86 CPUs
with AVX2 but without VNNI, ONNX Runtime multiplies UINT8 activations by INT8 weights with
``vpmaddubsw``, which adds each pair of u8*s8 products into a *saturating* int16. With 8-bit
weights a pair can reach 2*255*127 = 64770 and is clipped to 32767: the maps come out wrong on
those CPUs only (VNNI's ``vpdpbusd`` adds into int32 and never saturates, so a VNNI machine hides
the defect). With |w| <= 64 a pair is at most 2*255*64 = 32640, representable on every kernel, at
the cost of one bit of weight precision (measured in models/MODEL_CARD.md). ONNX Runtime's
quantisation guide names the same two remedies (reduce_range, or UINT8 weights, which run the
u8u8 kernel: no saturation, but slower). ARM64 kernels (sdot/udot or widening multiplies) add
into int32 and do not saturate; the bound holds there as well.
:func:`u8s8_pair_sum_bound` checks an exported graph for this property.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.lines.runtime import network_input

INT16_MAX = 32767
"""Largest sum of a u8*s8 pair that ``vpmaddubsw`` (AVX2 without VNNI) returns unclipped."""


class _Frames(CalibrationDataReader):
    """Feeds the calibration images one by one, preprocessed like the runtime."""

    def __init__(self, name: str, images: Sequence[np.ndarray], width: int, height: int) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = ({name: network_input(im, width, height)} for im in images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(model: str | Path, out: str | Path, images: Sequence[np.ndarray]) -> Path:
    """Write the INT8 version of an FP32 LSDNet export, calibrated on ``images`` (uint8 RGB)."""
    src = Path(model)
    if not src.is_file():
        raise ModelError(f"line model not found: {src}")
    if len(images) == 0:
        raise InputError("INT8 calibration needs at least one image")
    fp32 = onnx.load(str(src))
    meta = {p.key: p.value for p in fp32.metadata_props}
    if meta.get("model") != "lsdnet":
        raise ModelError(f"{src} is not an LSDNet export (metadata {meta})")
    width, height = int(meta["input_width"]), int(meta["input_height"])
    name = fp32.graph.input[0].name
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        quantize_static(
            str(prepared), str(out), _Frames(name, images, width, height), quant_format=QuantFormat.QDQ,
            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    q = onnx.load(str(out))
    worst = u8s8_pair_sum_bound(q)
    if worst > INT16_MAX:  # would only happen if ONNX Runtime changed what reduce_range means
        raise ModelError(f"INT8 weights too large for AVX2 u8s8 kernels: a pair can reach {worst} > {INT16_MAX}")
    onnx.helper.set_model_props(q, meta | {"precision": "int8", "calibration_images": str(len(images))})
    onnx.save(q, str(out))
    return out


def u8s8_pair_sum_bound(model: onnx.ModelProto) -> int:
    """The largest |a0*w0 + a1*w1| any Conv/MatMul of a QDQ graph can form from UINT8 activations
    ``a`` (0..255) and its INT8 weights ``w``: 2 * 255 * max|w| over the graph (0 if no such pair).

    Above 32767 the AVX2 u8s8 kernel (``vpmaddubsw``) clips the pair sum; see the module docstring.
    The bound is per tensor, not per actual pair, because the kernel's pairing of the reduction
    axis is an implementation detail."""
    init = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def dequantised(name: str) -> tuple[np.dtype, np.ndarray | None] | None:
        """(integer type, integer tensor if constant) behind a DequantizeLinear output."""
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[2] not in init:
            return None
        dtype = numpy_helper.to_array(init[dq.input[2]]).dtype  # the zero point carries the type
        return dtype, (numpy_helper.to_array(init[dq.input[0]]) if dq.input[0] in init else None)

    worst = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        act, weight = dequantised(node.input[0]), dequantised(node.input[1])
        if act is None or weight is None or act[0] != np.uint8 or weight[0] != np.int8 or weight[1] is None:
            continue
        worst = max(worst, 2 * 255 * int(np.abs(weight[1].astype(np.int32)).max(initial=0)))
    return worst
