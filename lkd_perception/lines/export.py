"""ONNX export of a trained LSDNet (torch; not needed at run time).

The graph takes NCHW float32 RGB/255 (no mean/std, as the reference model) with dynamic batch,
height and width (multiples of 8 x the output stride s), and returns (N,2,H/s,W/s): heat and
θ/π. The metadata records the normalisation, layout, output stride and the input size the model
is meant to be run at, so the runtime can check it is being fed what the network was trained on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.errors import ModelError
from lkd_perception.lines.lsdnet import ExportHead, LSDNet, count_parameters
from lkd_perception.lines.runtime import TensorLayout

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "lines"


def save_checkpoint(net: LSDNet, path: str | Path, extra: dict | None = None) -> None:
    """Weights plus the channel widths needed to rebuild the network."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "widths": list(net.widths),
            "stride": net.stride,
            "decoder": net.decoder,
            "state_dict": net.state_dict(),
            **(extra or {}),
        },
        p,
    )


def load_checkpoint(path: str | Path) -> LSDNet:
    data = load_checkpoint_file(path, "line-model checkpoint")
    net = LSDNet(tuple(data["widths"]), int(data.get("stride", 1)), str(data.get("decoder", "concat")))
    net.load_state_dict(data["state_dict"])
    return net.eval()


def export_onnx(
    net: LSDNet, out: str | Path, input_width: int, input_height: int, extra_meta: dict | None = None
) -> Path:
    """Write the ONNX model (opset 17) with metadata; returns its path."""
    multiple = 8 * net.stride
    if input_width % multiple or input_height % multiple:
        raise ModelError(f"input size must be a multiple of {multiple}, got {input_width}x{input_height}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = ExportHead(net.eval()).eval()
    dummy = torch.rand(1, 3, input_height, input_width)
    axes = {0: "batch", 2: "height", 3: "width"}
    # the maps are smaller than the input when the stride is 2: their axes get names of their own
    out_axes = axes if net.stride == 1 else {0: "batch", 2: "out_height", 3: "out_width"}
    with warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False) announces its deprecation on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            head,
            dummy,
            str(out),
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: out_axes},
            dynamo=False,
        )
    model = onnx.load(str(out))
    meta = {
        "model": "lsdnet",
        "input_width": str(input_width),
        "input_height": str(input_height),
        "layout": TensorLayout.NCHW.value,
        "normalisation": "rgb/255",
        "outputs": "heat,theta_over_pi",
        "parameters": str(count_parameters(net)),
        "widths": ",".join(str(w) for w in net.widths),
        "output_stride": str(net.stride),
        "decoder": net.decoder,
        **{k: str(v) for k, v in (extra_meta or {}).items()},
    }
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
