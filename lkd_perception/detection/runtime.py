"""ONNX Runtime inference for both detector families behind one call: ``Detector(config)(rgb)``.

The family, class names and input size come from the model's own metadata (the ONNX contract in
DESIGN/brief), so swapping models needs no code or config change beyond the path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.config import DetectorConfig
from lkd_perception.detection.postprocess import Detections, decode_detr, decode_yolo
from lkd_perception.detection.preprocess import check_rgb, letterbox, plain_resize, to_tensor

log = logging.getLogger(__name__)

FAMILIES = ("leyolo", "detr")
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX metadata says about a detector model."""

    family: str
    class_names: tuple[str, ...]
    input_size: int
    path: str


def read_model_info(session, path: str) -> ModelInfo:
    """Validate the contract's metadata_props and input/output names of a loaded session."""
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in ("model_family", "class_names", "input_size") if k not in meta]
    if missing:
        raise ModelError(f"{path}: ONNX metadata lacks {missing}; export it with 'lkd export leyolo|detr'")
    family = meta["model_family"]
    if family not in FAMILIES:
        raise ModelError(f"{path}: model_family {family!r} is not one of {list(FAMILIES)}")
    try:
        names = tuple(str(n) for n in json.loads(meta["class_names"]))
        size = int(meta["input_size"])
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: malformed class_names/input_size metadata: {exc}") from exc
    inputs = [i.name for i in session.get_inputs()]
    outputs = {o.name for o in session.get_outputs()}
    want = {"leyolo": {"output0"}, "detr": {"boxes", "scores"}}[family]
    if inputs != ["images"] or not want <= outputs:
        raise ModelError(f"{path}: expected input ['images'] and outputs {sorted(want)}, got {inputs} / {sorted(outputs)}")
    return ModelInfo(family, names, size, path)


def make_session(path: Path, provider: str, fp16: bool, threads: int):
    """An InferenceSession on the requested provider, falling back to CPU with a logged warning."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = _PROVIDERS[provider]
    providers: list = []
    if wanted != "CPUExecutionProvider":
        if wanted in available:
            opts = {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True} if provider == "tensorrt" else {}
            providers.append((wanted, opts))
            if provider == "tensorrt" and "CUDAExecutionProvider" in available:
                providers.append(("CUDAExecutionProvider", {}))
        else:
            log.warning("ONNX Runtime provider %s is not available here (have %s); running on CPU", wanted, available)
    providers.append("CPUExecutionProvider")
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
        if self.info.family != config.model:
            raise ModelError(f"{path}: holds a {self.info.family} model but model={config.model!r} was asked for")
        self.providers = tuple(self.session.get_providers())

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def __call__(self, image: np.ndarray) -> Detections:
        check_rgb(image)
        cfg, info = self.config, self.info
        if info.family == "leyolo":
            square, geom = letterbox(image, info.input_size)
            (out,) = self.session.run(["output0"], {"images": to_tensor(square)})
            return decode_yolo(out[0], geom, info.class_names, cfg.conf_threshold, cfg.iou_threshold, cfg.max_detections)
        square, geom = plain_resize(image, info.input_size)
        boxes, scores = self.session.run(["boxes", "scores"], {"images": to_tensor(square)})
        return decode_detr(boxes[0], scores[0], geom, info.class_names, cfg.conf_threshold, cfg.max_detections)
