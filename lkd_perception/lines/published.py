"""The published Wireframe-trained LSDNet as one of our line models (``lkd import lsdnet``).

iitpvisionlab/LSDNet ships ``lsd/models_onnx/model.onnx`` (BSD-3-Clause; REFERENCE 2.1): input
``input_1:0`` NHWC [N,288,288,3] float32 RGB/255, output ``Identity:0`` [N,288,288,2] sigmoid,
channel 0 line heat, channel 1 tangent angle / pi (x right, y down). Its graph already computes
exactly what our runtime wants from a line model, so importing it means checking that contract
and adding the metadata our runtime reads (``model``, ``layout``, ``normalisation``,
``output_stride``) plus provenance; the graph, its weights and its opset are left as published,
so the imported file gives bit-identical maps (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import sha256_of
from lkd_perception.lines.runtime import TensorLayout

#: the published file's contract (REFERENCE 2.1)
INPUT_NAME = "input_1:0"
OUTPUT_NAME = "Identity:0"
SIZE = 288
DEFAULT_SOURCE = "iitpvisionlab/LSDNet lsd/models_onnx/model.onnx (trained on Wireframe)"
LICENCE = "BSD-3-Clause"


@dataclass(frozen=True)
class ImportedModel:
    """What :func:`import_wireframe_lsdnet` wrote: the file, both sha256 digests, the metadata added."""

    out: Path
    source_sha256: str
    out_sha256: str
    metadata: dict[str, str]


def _dims(value_info) -> list:
    """Dimensions of a graph input/output: ints, symbolic names, or None when unset."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def _check_contract(model, src: Path) -> None:
    """The published contract, so that a different file is refused rather than mislabelled."""
    graph = model.graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError(f"{src}: expected one input and one output, got {len(inputs)} and {len(graph.output)}")
    (inp,), out = inputs, graph.output[0]
    want_in, want_out = [SIZE, SIZE, 3], [SIZE, SIZE, 2]
    if inp.name != INPUT_NAME or _dims(inp)[1:] != want_in or inp.type.tensor_type.elem_type != 1:
        raise ModelError(f"{src}: expected input {INPUT_NAME} float32 [N,{SIZE},{SIZE},3] (the published "
                         f"Wireframe LSDNet), got {inp.name} {_dims(inp)}")
    if out.name != OUTPUT_NAME or _dims(out)[1:] != want_out:
        raise ModelError(f"{src}: expected output {OUTPUT_NAME} [N,{SIZE},{SIZE},2], got {out.name} {_dims(out)}")


def import_wireframe_lsdnet(src: str | Path, out: str | Path, source: str = DEFAULT_SOURCE) -> ImportedModel:
    """Write ``out``: the published LSDNet ONNX ``src`` with our metadata, graph unchanged.

    Metadata added: ``model=lsdnet``, ``layout=NHWC``, ``normalisation=rgb/255``,
    ``output_stride=1``, ``input_width``/``input_height`` 288 and ``fixed_input_size``, ``outputs``
    (heat,theta_over_pi), ``endpoint_refinement=none`` (see
    :meth:`~lkd_perception.lines.runtime.LineDetector.grouping_config`), ``source``,
    ``source_sha256``, ``licence``. Metadata the source already
    has is kept unless one of these keys replaces it.
    """
    import onnx

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise ModelError(f"published LSDNet not found: {src}")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises protobuf's errors
        raise ModelError(f"cannot read {src} as ONNX: {exc}") from exc
    _check_contract(model, src)
    digest = sha256_of(src)
    meta = {p.key: p.value for p in model.metadata_props} | {
        "model": "lsdnet",
        "layout": TensorLayout.NHWC.value,
        "normalisation": "rgb/255",
        "output_stride": "1",
        "input_width": str(SIZE),
        "input_height": str(SIZE),
        "fixed_input_size": f"{SIZE}x{SIZE}",
        "outputs": "heat,theta_over_pi",
        # its heat ridge runs past the line ends; our refinement is calibrated to our target
        "endpoint_refinement": "none",
        "source": source,
        "source_sha256": digest,
        "licence": LICENCE,
    }
    onnx.helper.set_model_props(model, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return ImportedModel(out=out, source_sha256=digest, out_sha256=sha256_of(out), metadata=meta)
