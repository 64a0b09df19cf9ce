"""Settings of the detector runtime (``detector_node``, ``lkd detect``, ``lkd bench detect``).

One flat dataclass: field name = YAML key = ROS parameter name.
"""

from __future__ import annotations

from dataclasses import dataclass

from lkd_perception.common.config import param


@dataclass(frozen=True)
class DetectorConfig:
    """Which model runs, where, and how its raw output becomes detections."""

    model: str = param("leyolo", "detector family to run", choices=("leyolo", "detr"), read_only=True)
    leyolo_model_path: str = param(
        "models/leyolo_n.onnx", "LeYOLO ONNX file (relative paths: working dir, then the package's models/)",
        read_only=True)
    detr_model_path: str = param(
        "models/detr_student.onnx", "DETR student ONNX file (relative paths as for leyolo_model_path)",
        read_only=True)
    conf_threshold: float = param(0.25, "minimum class score of a reported detection", lo=0.0, hi=1.0)
    iou_threshold: float = param(0.45, "NMS IoU above which a lower-scored box of the same class is dropped (LeYOLO)",
                                 lo=0.0, hi=1.0)
    max_detections: int = param(100, "most detections reported per image", lo=1, hi=1000)
    provider: str = param("cpu", "ONNX Runtime execution provider; falls back to cpu with a warning if unavailable",
                          choices=("cpu", "cuda", "tensorrt"), read_only=True)
    fp16: bool = param(True, "half precision where the provider supports it (TensorRT)", read_only=True)
    threads: int = param(2, "ONNX Runtime intra-op threads (0 = runtime default)", lo=0, hi=64, read_only=True)
    publish_debug_image: bool = param(False, "also publish the input image with boxes drawn (detector_node)")

    @property
    def model_path(self) -> str:
        """The ONNX file of the selected family."""
        return self.leyolo_model_path if self.model == "leyolo" else self.detr_model_path
