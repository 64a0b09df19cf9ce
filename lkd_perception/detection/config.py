"""Settings of the detectors: the runtime (``detector_node``, ``lkd detect``) and LeYOLO training.

Flat dataclasses: field name = YAML key = ROS parameter name = CLI flag (dashes for underscores).
Kept free of torch so that building the command line stays fast.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from lkd_perception.common.config import from_dict, param
from lkd_perception.common.providers import PROVIDER_CHOICES


class DetectorFamily(enum.Enum):
    """Detector families: the ``model`` setting and the ``model_family`` metadata of our ONNX files."""

    LEYOLO = "leyolo"
    DETR = "detr"


@dataclass(frozen=True)
class DetectorConfig:
    """Which model runs, where, and how its raw output becomes detections."""

    model: str = param("leyolo", "detector family to run", choices=tuple(f.value for f in DetectorFamily),
                       read_only=True)
    leyolo_model_path: str = param(
        "models/leyolo_n_coco.onnx", "LeYOLO ONNX file (models/leyolo_n_coco.onnx: official COCO weights at 320, "
        "leyolo_n_coco_480.onnx at 480, AGPL-3.0; leyolo_n_sim.onnx: our simulator-trained model; relative paths: "
        "working dir, then the package's models/)",
        read_only=True)
    detr_model_path: str = param(
        "models/deimv2_atto_coco.onnx",
        "DETR-family ONNX file, a DEIMv2 export: the published COCO models (models/deimv2_femto_coco.onnx is the "
        "larger one) or ours (models/deimv2_atto_sim.onnx: Atto fine-tuned on simulator classes; lkd export deimv2); "
        "relative paths as for leyolo_model_path",
        read_only=True)
    conf_threshold: float = param(0.25, "minimum class score of a reported detection", lo=0.0, hi=1.0)
    iou_threshold: float = param(0.45, "NMS IoU above which a lower-scored box of the same class is dropped (LeYOLO)",
                                 lo=0.0, hi=1.0)
    max_detections: int = param(100, "most detections reported per image", lo=1, hi=1000)
    provider: str = param("cpu", "ONNX Runtime execution provider; falls back to cpu with a warning if unavailable",
                          choices=PROVIDER_CHOICES, read_only=True)
    fp16: bool = param(True, "half precision where the provider supports it (TensorRT)", read_only=True)
    threads: int = param(2, "ONNX Runtime intra-op threads (0 = runtime default)", lo=0, hi=64, read_only=True)
    publish_debug_image: bool = param(False, "also publish the input image with boxes drawn (detector_node)")
    image_transport: str = param("raw", "camera input: raw sensor_msgs/Image on camera/image_raw, or compressed: "
                                 "sensor_msgs/CompressedImage (JPEG/PNG) on camera/image_raw/compressed "
                                 "(image_transport's topic name; read when the node is configured)",
                                 choices=("raw", "compressed"), read_only=True)

    @property
    def family(self) -> DetectorFamily:
        return DetectorFamily(self.model)

    @property
    def model_path(self) -> str:
        """The ONNX file of the selected family."""
        return self.leyolo_model_path if self.family is DetectorFamily.LEYOLO else self.detr_model_path


def detector_config(family: DetectorFamily, model_path: str | None = None, **settings: Any) -> DetectorConfig:
    """A checked :class:`DetectorConfig` running ``family`` (from ``model_path`` when given: the
    setting of that family's file) with other ``settings`` by field name."""
    values = {"model": family.value, **settings}
    if model_path:
        values[f"{family.value}_model_path"] = str(model_path)
    return from_dict(DetectorConfig, values)


@dataclass(frozen=True)
class LeyoloTrainConfig:
    """Everything one training run depends on (saved into every checkpoint)."""

    data: str = param("", "COCO annotations.json of the training set (images/ beside it)")
    val_data: str = param("", "COCO annotations.json of the held-out set ('' = no validation)")
    out_dir: str = param("runs/leyolo", "folder for last.pt, best.pt and log.jsonl")
    size: str = param("n", "LeYOLO size", choices=("n", "s", "m"))
    img_size: int = param(320, "square training input (multiple of 32)", lo=64, hi=1280)
    epochs: int = param(30, "training epochs", lo=1, hi=10000)
    time_limit_min: float = param(0.0, "wall-time budget; the schedule ends on time (0 = epochs only)",
                                  lo=0.0, hi=1e6)
    batch: int = param(16, "images per step (per process with torchrun)", lo=1, hi=1024)
    optimizer: str = param(
        "adamw", "adamw suits short runs; sgd is the 500-epoch COCO recipe", choices=("adamw", "sgd")
    )
    lr0: float = param(0.002, "initial learning rate", lo=1e-6, hi=1.0)
    lrf: float = param(0.01, "final learning rate as a fraction of lr0 (cosine)", lo=0.0, hi=1.0)
    momentum: float = param(0.937, "SGD momentum / Adam beta1", lo=0.0, hi=1.0)
    weight_decay: float = param(5e-4, "weight decay on conv/linear weights (not BN, not biases)", lo=0.0, hi=0.1)
    warmup_epochs: float = param(1.0, "linear learning-rate warm-up", lo=0.0, hi=100.0)
    hsv_h: float = param(0.015, "hue jitter", lo=0.0, hi=1.0)
    hsv_s: float = param(0.7, "saturation jitter", lo=0.0, hi=1.0)
    hsv_v: float = param(0.4, "value jitter", lo=0.0, hi=1.0)
    fliplr: float = param(0.5, "horizontal flip probability", lo=0.0, hi=1.0)
    scale: float = param(0.5, "random scale range +/-", lo=0.0, hi=0.95)
    translate: float = param(0.1, "random translation range +/- (fraction of size)", lo=0.0, hi=0.5)
    ema_decay: float = param(0.9999, "EMA decay", lo=0.0, hi=1.0)
    ema_tau: float = param(2000.0, "EMA warm-up in updates", lo=1.0, hi=1e6)
    box_gain: float = param(7.5, "CIoU loss gain", lo=0.0, hi=100.0)
    cls_gain: float = param(0.5, "BCE loss gain", lo=0.0, hi=100.0)
    dfl_gain: float = param(1.5, "DFL loss gain", lo=0.0, hi=100.0)
    val_every: int = param(1, "validate every N epochs (and always after the last)", lo=1, hi=1000)
    val_max_images: int = param(0, "validate on at most this many held-out images (0 = all)", lo=0, hi=1000000)
    workers: int = param(0, "data-loader worker processes", lo=0, hi=64)
    threads: int = param(1, "torch CPU threads per process (0 = torch default)", lo=0, hi=256)
    device: str = param("auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda"))
    amp: bool = param(True, "mixed precision when on CUDA")
    seed: int = param(0, "random seed (data order, augmentation, init)", lo=0, hi=2**31 - 1)
    resume: str = param("", "checkpoint to resume from exactly: weights, optimiser, epoch ('' = fresh start)")
    weights: str = param("", "start from a checkpoint's EMA weights with a fresh optimiser and schedule (fine-tune)")
