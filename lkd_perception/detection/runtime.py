"""ONNX Runtime inference for both detector families behind one call: ``Detector(config)(rgb)``.

Which contract a model follows (our LeYOLO export, our DETR student, a published DEIMv2 export) is
read from its input and output tensors; class names and input size from its static input shape
and metadata. Swapping models therefore needs no code or config change beyond the path, and a
file name means nothing.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.common.providers import Provider
from lkd_perception.detection.coco import COCO_CLASSES
from lkd_perception.detection.config import DetectorConfig, DetectorFamily
from lkd_perception.detection.onnx_graph import labels_class_count
from lkd_perception.detection.postprocess import Detections, decode_deimv2, decode_yolo
from lkd_perception.detection.preprocess import check_rgb, deimv2_resize, letterbox, to_tensor

log = logging.getLogger(__name__)

class ContractName(enum.Enum):
    """The ONNX interfaces the runtime drives (what ``lkd bench detect --photos`` reports)."""

    YOLO = "yolo"  # our LeYOLO export: YOLOv8 output0
    DEIMV2 = "deimv2"  # a DEIMv2 export as published: labels, boxes, scores in original pixels


@dataclass(frozen=True)
class Contract:
    """One ONNX interface the runtime can drive: the family it serves and its exact tensor names."""

    name: ContractName
    family: DetectorFamily
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    needs_metadata: bool  # our own exports name their classes in metadata; published ones may not

    def describe(self) -> str:
        return f"{self.name.value} ({self.family.value}): inputs {list(self.inputs)}, outputs {list(self.outputs)}"


#: Recognised by tensor names, not file names, so a renamed file still runs as what it is.
CONTRACTS = (
    Contract(ContractName.YOLO, DetectorFamily.LEYOLO, ("images",), ("output0",), True),
    Contract(ContractName.DEIMV2, DetectorFamily.DETR, ("images", "orig_target_sizes"), ("labels", "boxes", "scores"),
             False),
)


@dataclass(frozen=True)
class ModelInfo:
    """What a detector model is: from its tensors (contract, static input size) and its metadata."""

    family: DetectorFamily
    class_names: tuple[str, ...]
    input_size: int
    path: str
    contract: ContractName = ContractName.YOLO


def match_contract(inputs: list[str], outputs: list[str]) -> Contract | None:
    """The contract whose inputs are exactly the model's (in any order) and whose outputs the model
    has (most specific first: a DEIMv2 export also has boxes and scores, but two inputs)."""
    for c in sorted(CONTRACTS, key=lambda c: -len(c.inputs) - len(c.outputs)):
        if sorted(c.inputs) == sorted(inputs) and set(c.outputs) <= set(outputs):
            return c
    return None


def read_model_info(session, path: str) -> ModelInfo:
    """Identify the contract of a loaded session from its input/output names and fill in class
    names and input size (metadata first; DEIMv2 files as published carry none)."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    contract = match_contract(inputs, outputs)
    if contract is None:
        known = "; ".join(c.describe() for c in CONTRACTS)
        raise ModelError(f"{path}: inputs {inputs} / outputs {outputs} fit no detector contract. Expected one of: "
                         f"{known}")
    meta = session.get_modelmeta().custom_metadata_map
    if contract.needs_metadata:
        missing = [k for k in ("model_family", "class_names", "input_size") if k not in meta]
        if missing:
            raise ModelError(f"{path}: ONNX metadata lacks {missing}; export it with 'lkd export leyolo|detr'")
    family = meta.get("model_family", contract.family.value)
    if family != contract.family.value:
        raise ModelError(f"{path}: metadata model_family {family!r} but its tensors are the {contract.describe()}")
    try:
        names = tuple(str(n) for n in json.loads(meta["class_names"])) if "class_names" in meta else None
        size = _input_size(session, meta)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: malformed class_names/input_size metadata: {exc}") from exc
    if size is None:
        raise ModelError(f"{path}: input 'images' has no static square size and no input_size metadata")
    if names is None:
        names = _deimv2_class_names(path)
    return ModelInfo(contract.family, names, size, path, contract.name)


def _input_size(session, meta: dict[str, str]) -> int | None:
    """The side of the square ``images`` input: its static shape when fixed, else the metadata."""
    shape = next(i.shape for i in session.get_inputs() if i.name == "images")
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3] and shape[2] > 0:
        return int(shape[2])
    return int(meta["input_size"]) if "input_size" in meta else None


def _deimv2_class_names(path: str) -> tuple[str, ...]:
    """Class names of a DEIMv2 export without metadata, from the class count baked into its graph.

    The export's post-processing computes ``label = index mod num_classes`` over the flattened
    (query, class) scores, so the divisor is the class count: 80 means COCO (what DEIMv2
    publishes). Another count gets neutral names with a warning, so a custom-trained model still
    runs; add ``class_names`` metadata to name them.
    """
    try:
        count = labels_class_count(Path(path).read_bytes())
    except (ValueError, IndexError):  # not the protobuf this reader understands
        count = None
    if count is None:
        raise ModelError(f"{path}: DEIMv2 model without class_names metadata, and its class count could not be "
                         "read from the graph; add class_names (a JSON list) to its metadata_props")
    if count == len(COCO_CLASSES):
        return COCO_CLASSES
    log.warning("%s: %d classes and no class_names metadata; naming them class_0..class_%d", path, count, count - 1)
    return tuple(f"class_{i}" for i in range(count))


def make_session(path: Path, provider: str, fp16: bool, threads: int):
    """An InferenceSession on the requested provider, falling back to CPU with a logged warning."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chain = Provider(provider).ort_chain
    wanted = chain[0]
    providers: list = []
    if wanted in available:  # the chain's fallbacks that this build has, CPU last
        trt = {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True}
        providers = [(p, trt if p == "TensorrtExecutionProvider" else {}) for p in chain if p in available]
    else:
        log.warning("ONNX Runtime provider %s is not available here (have %s); running on CPU", wanted, available)
        providers = [("CPUExecutionProvider", {})]
    so = ort.SessionOptions()
    if threads > 0:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # No busy-waiting between frames: ONNX Runtime's worker threads otherwise spin after every
    # run, which on a vehicle computer burns the cores the other nodes need (measured: several
    # times the CPU of the inference itself at 10 Hz).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # ORT raises its own types for corrupt files
        raise ModelError(f"{path}: ONNX Runtime could not load the model: {exc}") from exc


class Detector:
    """A loaded detector. Call it with an (H, W, 3) uint8 RGB image to get :class:`Detections`."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        path = resolve_model_path(config.model_path)
        self.session = make_session(path, config.provider, config.fp16, config.threads)
        self.info = read_model_info(self.session, str(path))
        if self.info.family is not config.family:
            raise ModelError(f"{path}: holds a {self.info.family.value} model but model={config.model!r} was asked for")
        self.providers = tuple(self.session.get_providers())

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def __call__(self, image: np.ndarray) -> Detections:
        check_rgb(image)
        cfg, info = self.config, self.info
        if info.family is DetectorFamily.LEYOLO:
            square, geom = letterbox(image, info.input_size)
            (out,) = self.session.run(["output0"], {"images": to_tensor(square)})
            return decode_yolo(out[0], geom, info.class_names, cfg.conf_threshold, cfg.iou_threshold,
                               cfg.max_detections)
        # the DETR family's one contract: a DEIMv2 export as published
        square, geom = deimv2_resize(image, info.input_size)
        sizes = np.array([[geom.width, geom.height]], np.int64)  # (width, height), as the contract says
        labels, boxes, scores = self.session.run(
            ["labels", "boxes", "scores"], {"images": to_tensor(square), "orig_target_sizes": sizes}
        )
        return decode_deimv2(
            labels[0],
            boxes[0],
            scores[0],
            geom.width,
            geom.height,
            info.class_names,
            cfg.conf_threshold,
            cfg.max_detections,
        )
