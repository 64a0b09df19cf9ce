"""Line-segment detection at run time: ONNX Runtime for the CNN, numpy/OpenCV for the grouping.

``LineDetector(config).detect(rgb)`` is the whole core API; the node and the ``lkd lines``
command both call it. No torch here (DESIGN: runtime needs numpy, opencv, onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.grouping import group_lines

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


@dataclass(frozen=True)
class LineSegments:
    """Detected segments in input-image pixels (pixel centres at integers).

    ``segments`` (N,4) float64 x1,y1,x2,y2; ``scores`` (N,) confidence in [0,1] (see
    ``LineConfig.confidence_length``); ``widths`` (N,) support width in pixels.
    """

    segments: np.ndarray
    scores: np.ndarray
    widths: np.ndarray

    def __len__(self) -> int:
        return len(self.segments)


def _checked_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"image is too small to hold a line: {arr.shape[1]}x{arr.shape[0]}")
    if arr.dtype != np.uint8:
        raise InputError(f"expected uint8 RGB, got {arr.dtype}")
    return arr


def network_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the network's (1,3,height,width) float32 RGB/255 (also what the INT8
    calibration feeds, so calibration sees exactly the run-time input)."""
    if rgb.shape[:2] != (height, width):
        # Bilinear down to half size (a 640x480 camera to the 480x352 default costs 5x less than
        # area averaging, same sAP on the validation drives); area averaging below that, where
        # bilinear would alias.
        mild = width >= rgb.shape[1] / 2 and height >= rgb.shape[0] / 2
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR if mild else cv2.INTER_AREA)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1.0 / 255.0)


class LineDetector:
    """LSDNet: CNN heat/direction maps (ONNX Runtime), then LSD-style grouping, rescaled to the input."""

    def __init__(self, config: LineConfig | None = None) -> None:
        import onnxruntime as ort

        self.config = config or LineConfig()
        cfg = self.config
        self.model_path = resolve_model_path(cfg.model_path)
        opts = ort.SessionOptions()
        if cfg.threads > 0:
            opts.intra_op_num_threads = cfg.threads
            opts.inter_op_num_threads = 1
        # No busy-waiting between frames: the node shares its cores with the other nodes.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The graph has dynamic batch/height/width; fixing them to what this detector feeds lets
        # ONNX Runtime plan memory and kernels for one shape (about 20 % faster on CPU).
        for name, value in (("batch", 1), ("height", cfg.input_height), ("width", cfg.input_width)):
            opts.add_free_dimension_override_by_name(name, value)
        available = set(ort.get_available_providers())
        providers = [p for p in _PROVIDERS[cfg.provider] if p in available]
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load line model {self.model_path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("model") != "lsdnet" or meta.get("normalisation") != "rgb/255" or meta.get("layout") != "NCHW":
            raise ModelError(f"{self.model_path} is not an LSDNet export (metadata {meta})")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.model_path}: expected one input and one output")
        self._input_name = inputs[0].name
        self.providers = self.session.get_providers()
        #: the maps are this many times smaller than the network input (1 = the reference U-Net)
        self.output_stride = int(meta.get("output_stride", "1"))
        multiple = 8 * self.output_stride
        if cfg.input_width % multiple or cfg.input_height % multiple:
            raise ModelError(
                f"input size must be a multiple of {multiple} for this model, got {cfg.input_width}x{cfg.input_height}"
            )

    def heat_and_angle(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network maps: heat (h,w) in [0,1] and direction θ (h,w) in radians [0,π), at the network
        input size divided by the model's output stride."""
        return self._maps(_checked_rgb(rgb))

    def _maps(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = network_input(arr, self.config.input_width, self.config.input_height)
        out = self.session.run(None, {self._input_name: x})[0]
        return out[0, 0], out[0, 1] * np.float32(np.pi)

    def detect(self, rgb: np.ndarray) -> LineSegments:
        """Segments of an (H,W,3) uint8 RGB image, in its own pixel coordinates."""
        arr = _checked_rgb(rgb)
        heat, theta = self._maps(arr)
        found = group_lines(heat, theta, self.config)
        sx = arr.shape[1] / heat.shape[1]
        sy = arr.shape[0] / heat.shape[0]
        seg = found.segments.copy()
        seg[:, 0::2] = (seg[:, 0::2] + 0.5) * sx - 0.5
        seg[:, 1::2] = (seg[:, 1::2] + 0.5) * sy - 0.5
        # Width is measured across the segment; scale by the axis the normal mostly points along.
        d = found.segments[:, 2:4] - found.segments[:, 0:2]
        across_x = np.abs(d[:, 1]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        widths = found.widths * (across_x * sx + (1 - across_x) * sy)
        return LineSegments(segments=seg, scores=found.scores.astype(np.float64), widths=widths)
