"""Line-segment detection at run time: ONNX Runtime for the CNN, numpy/OpenCV for the grouping.

``LineDetector(config).detect(rgb)`` is the whole core API; the node and the ``lkd lines``
command both call it. No torch here (DESIGN: runtime needs numpy, opencv, onnxruntime).

Two kinds of LSDNet model run here, told apart by the ONNX graph itself (:func:`model_layout`):

* our own exports (``lkd export lines``): NCHW ``[N,3,H,W]`` with dynamic height and width, maps
  at 1/``output_stride`` of the input (``models/lsdnet.onnx``: stride 2);
* the published Wireframe-trained LSDNet imported with ``lkd import lsdnet``
  (``models/lsdnet_wireframe.onnx``): NHWC ``[N,288,288,3]``, a fixed input size, full-size maps
  ``[N,288,288,2]``.

Both take RGB/255 and give sigmoid maps (heat, direction / pi). The grouping's pixel-sized
settings are scaled to each model's maps (:meth:`LineDetector.grouping_config`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import cv2
import numpy as np

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.common.providers import Provider
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.grouping import group_lines


class TensorLayout(enum.Enum):
    """Axis order of an LSDNet graph's input and output (the ``layout`` metadata carries the value)."""

    NCHW = "NCHW"  # [N,3,H,W] in, [N,2,h,w] out: our exports
    NHWC = "NHWC"  # [N,H,W,3] in, [N,h,w,2] out: the published Wireframe LSDNet


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


def resize_for_network(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """An image resized to the network input, as every model input and training target is.

    Bilinear down to half size (a 640x480 camera to the 480x352 default costs 5x less than area
    averaging, same sAP on the validation drives); area averaging below that, where bilinear
    would alias."""
    if rgb.shape[:2] == (height, width):
        return rgb
    mild = width >= rgb.shape[1] / 2 and height >= rgb.shape[0] / 2
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR if mild else cv2.INTER_AREA)


def network_input(rgb: np.ndarray, width: int, height: int, layout: TensorLayout = TensorLayout.NCHW) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the network's float32 RGB/255 input of ``height`` x ``width``, as
    (1,3,height,width) for NCHW or (1,height,width,3) for NHWC (also what the INT8 calibration
    feeds, so calibration sees exactly the run-time input)."""
    rgb = resize_for_network(rgb, width, height)
    if layout is TensorLayout.NHWC:
        return rgb[None].astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class ModelLayout:
    """How an LSDNet ONNX graph wants its input and gives its maps, read from the graph.

    ``layout``: the axis order of input and output;
    ``fixed_size`` (width, height) when the graph's spatial input dimensions are numbers, None when
    they are symbolic (any size); ``dim_names`` the symbolic input dimension names mapped to what
    they stand for ("batch", "height", "width"), so ONNX Runtime can be told the one shape fed.
    """

    layout: TensorLayout
    fixed_size: tuple[int, int] | None
    dim_names: dict[str, str]


_EXPECTED = ("an LSDNet graph: one input NCHW [N,3,H,W] (our export) or NHWC [N,H,W,3] (the published "
             "Wireframe LSDNet), one output with 2 channels (heat, direction/pi) in the same layout")


def model_layout(inputs: list, outputs: list) -> ModelLayout:
    """The :class:`ModelLayout` of a session's ``get_inputs()`` / ``get_outputs()``; anything else is
    a :class:`ModelError` that says what was expected.

    A 3 in the last input dimension means NHWC, a 3 in the second NCHW (an image with 3 rows or
    3 columns is no camera image, so the two cannot be confused)."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"expected {_EXPECTED}; got {len(inputs)} inputs and {len(outputs)} outputs")
    shape, out_shape = list(inputs[0].shape), list(outputs[0].shape)
    if len(shape) != 4 or len(out_shape) != 4:
        raise ModelError(f"expected {_EXPECTED}; got input {shape}, output {out_shape}")
    if shape[3] == 3 and out_shape[3] == 2:
        layout, spatial = TensorLayout.NHWC, (shape[1], shape[2])
    elif shape[1] == 3 and out_shape[1] == 2:
        layout, spatial = TensorLayout.NCHW, (shape[2], shape[3])
    else:
        raise ModelError(f"expected {_EXPECTED}; got input {shape}, output {out_shape}")
    fixed = all(isinstance(d, int) and d > 0 for d in spatial)
    if not fixed and any(isinstance(d, int) for d in spatial):
        raise ModelError(f"expected both spatial input dimensions fixed or both dynamic; got input {shape}")
    names = {shape[0]: "batch"} if isinstance(shape[0], str) else {}
    if not fixed:
        names |= {spatial[0]: "height", spatial[1]: "width"}
    size = (int(spatial[1]), int(spatial[0])) if fixed else None
    return ModelLayout(layout, size, {k: v for k, v in names.items() if isinstance(k, str) and k})


#: the output stride the pixel-sized grouping settings of :class:`LineConfig` are stated for
SETTINGS_STRIDE = 2


def scaled_grouping(cfg: LineConfig, output_stride: int) -> LineConfig:
    """``cfg`` with its pixel-sized grouping settings moved from maps of stride
    :data:`SETTINGS_STRIDE` to maps of ``output_stride``.

    Why: those settings count map pixels, and a map pixel of a stride-1 model covers half the
    input pixels of one of a stride-2 model's, so a line, a gap or a block of the same size in
    the image spans twice as many of them. Lengths (adaptive block, minimum length, joining gap
    and offset, confidence length) and the region size (pixels along a line of about constant
    width in map pixels) are multiplied by ``SETTINGS_STRIDE / output_stride``; the adaptive block
    is rounded to the next odd size. For the stride-1 Wireframe LSDNet this turns block 5 and
    regions of 5 px into 11 and 10 px, the reference grouping's own values (REFERENCE 2.2), so one
    parameter file serves every shipped model and nobody re-tunes when switching models.
    Thresholds on heat and angle are not pixel-sized and stay as they are.
    """
    if output_stride == SETTINGS_STRIDE:
        return cfg
    k = SETTINGS_STRIDE / output_stride
    block = int(round(cfg.adaptive_block * k))
    return replace(
        cfg,
        adaptive_block=(block | 1) if cfg.adaptive_block >= 3 else cfg.adaptive_block,
        min_region_size=max(1, int(round(cfg.min_region_size * k))),
        min_length=cfg.min_length * k,
        merge_gap=cfg.merge_gap * k,
        merge_offset=cfg.merge_offset * k,
        confidence_length=cfg.confidence_length * k,
    )


class LineDetector:
    """LSDNet: CNN heat/direction maps (ONNX Runtime), then LSD-style grouping, rescaled to the input.

    Input size: a model with dynamic spatial dimensions (our exports) runs at
    ``config.input_width`` x ``config.input_height``; a model with a fixed input size (the
    Wireframe LSDNet: 288x288) runs at that size whatever the config says, because the graph
    accepts nothing else and one parameter file should work with every shipped model.
    ``input_size`` tells which size is used.
    """

    def __init__(self, config: LineConfig | None = None) -> None:
        import onnxruntime as ort

        self.config = config or LineConfig()
        cfg = self.config
        self.model_path = resolve_model_path(cfg.model_path)
        # A first, unoptimised session only to read the graph's shapes and metadata: the real one
        # needs the symbolic dimensions fixed before it is created.
        probe_opts = ort.SessionOptions()
        probe_opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            probe = ort.InferenceSession(str(self.model_path), probe_opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load line model {self.model_path}: {exc}") from exc
        meta = probe.get_modelmeta().custom_metadata_map
        if meta.get("model") != "lsdnet" or meta.get("normalisation") != "rgb/255":
            raise ModelError(
                f"{self.model_path} is not an LSDNet model of ours (metadata model=lsdnet, normalisation=rgb/255 "
                f"expected, got {meta}); export one with 'lkd export lines' or import the published one with "
                f"'lkd import lsdnet'"
            )
        try:
            layout = model_layout(probe.get_inputs(), probe.get_outputs())
        except ModelError as exc:
            raise ModelError(f"{self.model_path}: {exc}") from None
        if meta.get("layout", layout.layout.value) != layout.layout.value:
            raise ModelError(f"{self.model_path}: metadata says layout {meta['layout']}, the graph is "
                             f"{layout.layout.value}")
        del probe
        #: (width, height) fed to the network: the model's own for fixed-size models, else the config's
        self.input_size = layout.fixed_size or (cfg.input_width, cfg.input_height)
        self.layout = layout.layout
        #: the maps are this many times smaller than the network input (1 = the reference U-Net)
        self.output_stride = int(meta.get("output_stride", "1"))
        if layout.fixed_size is None:
            multiple = 8 * self.output_stride
            if cfg.input_width % multiple or cfg.input_height % multiple:
                raise ModelError(
                    f"input size must be a multiple of {multiple} for this model, "
                    f"got {cfg.input_width}x{cfg.input_height}"
                )
        opts = ort.SessionOptions()
        if cfg.threads > 0:
            opts.intra_op_num_threads = cfg.threads
            opts.inter_op_num_threads = 1
        # No busy-waiting between frames: the node shares its cores with the other nodes.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Fixing the symbolic dimensions to what this detector feeds lets ONNX Runtime plan memory
        # and kernels for one shape (about 20 % faster on CPU).
        sizes = {"batch": 1, "width": self.input_size[0], "height": self.input_size[1]}
        for name, role in layout.dim_names.items():
            opts.add_free_dimension_override_by_name(name, sizes[role])
        available = set(ort.get_available_providers())
        providers = [p for p in Provider(cfg.provider).ort_chain if p in available]
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load line model {self.model_path}: {exc}") from exc
        self._input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        #: whether this model's heat supports the endpoint refinement (see :meth:`grouping_config`)
        self.endpoint_refinement = meta.get("endpoint_refinement", "heat_half") != "none"

    def grouping_config(self) -> LineConfig:
        """The settings the grouping gets: the config's, scaled to this model's maps
        (:func:`scaled_grouping`), with ``refine_endpoints`` off for a model whose metadata says
        ``endpoint_refinement=none``.

        Why the model decides: the refinement puts each end where the heat falls to half, less
        the distance by which our training target overshoots the true end (0.5 px), a fact of our
        training target. The Wireframe LSDNet's ridge is wider and runs further past the ends, so
        refined ends land outside the lines (validation photographs sAP10 30.4 with it, 39.8
        without; models/MODEL_CARD.md); its import marks it so.
        """
        cfg = scaled_grouping(self.config, self.output_stride)
        if not self.endpoint_refinement and cfg.refine_endpoints:
            cfg = replace(cfg, refine_endpoints=False)
        return cfg

    def heat_and_angle(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network maps: heat (h,w) in [0,1] and direction θ (h,w) in radians [0,π), at the network
        input size divided by the model's output stride."""
        return self._maps(_checked_rgb(rgb))

    def _maps(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.input_size
        x = network_input(arr, w, h, self.layout)
        out = self.session.run(None, {self._input_name: x})[0][0]
        if self.layout is TensorLayout.NHWC:
            return out[..., 0], out[..., 1] * np.float32(np.pi)
        return out[0], out[1] * np.float32(np.pi)

    def detect(self, rgb: np.ndarray) -> LineSegments:
        """Segments of an (H,W,3) uint8 RGB image, in its own pixel coordinates."""
        arr = _checked_rgb(rgb)
        heat, theta = self._maps(arr)
        found = group_lines(heat, theta, self.grouping_config())
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
