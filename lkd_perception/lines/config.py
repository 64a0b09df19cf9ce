"""Settings of the LSDNet line-segment detector (CNN + LSD-style grouping).

One flat dataclass: field name = YAML key = ROS parameter of ``line_node``. Defaults follow the
reference grouping of LSDNet (heat > 0.4, adaptive threshold C 2) except where our model or
grouping differs. The shipped model's maps are half its input size (output stride 2), so the
pixel-sized settings are smaller than the reference's, which counts full-size pixels: adaptive
block 5 (reference 11), regions of >= 5 px (reference > 10), segments >= 2 px. Those and the angle
tolerance (10 deg; our grouping compares with the seed, not the running mean) were chosen on
validation simulator drives; the joining of collinear pieces and the length-aware confidence on
validation photographs (see models/MODEL_CARD.md). The heat tolerance is documented on its field.
"""

from __future__ import annotations

from dataclasses import dataclass

from lkd_perception.common.config import param


#: where ``lkd quantize lines`` writes the INT8 model by default, and where the bench looks for it
INT8_MODEL_PATH = "models/lsdnet_int8.onnx"


@dataclass(frozen=True)
class LineConfig:
    """Everything :class:`lkd_perception.lines.runtime.LineDetector` needs."""

    model_path: str = param(
        "models/lsdnet.onnx",
        "ONNX model file (models/lsdnet.onnx: FP32; models/lsdnet_int8.onnx: INT8, about 2x faster network on "
        "CPUs with VNNI, lower sAP); a relative path is looked up in the current folder, the package share dir, "
        "then the repository",
        read_only=True,
    )
    input_width: int = param(
        480, "network input width in pixels (multiple of 8 x the model's output stride); cost grows with the area",
        lo=32, hi=2048, read_only=True,
    )
    input_height: int = param(
        352, "network input height in pixels (multiple of 8 x the model's output stride)", lo=32, hi=2048, read_only=True
    )
    heat_threshold: float = param(0.4, "support mask: minimum line heat", lo=0.0, hi=1.0)
    adaptive_block: int = param(
        5, "support mask: block size of the Gaussian adaptive threshold on heat*255 (odd; 0 disables it)",
        lo=0, hi=99,
    )
    adaptive_c: float = param(2.0, "support mask: constant subtracted in the adaptive threshold", lo=-50.0, hi=50.0)
    angle_tolerance_deg: float = param(
        10.0, "region growing: largest line-direction difference from the seed, degrees", lo=0.5, hi=45.0
    )
    heat_tolerance: float = param(
        0.8, "region growing: largest heat difference from the seed (the reference's 0.3 is relative to the "
        "running mean; against the seed, the hottest pixel, it would cut the flanks of diagonal lines into "
        "parallel regions and break lines where they fall between two pixels of the maps)",
        lo=0.0, hi=1.0,
    )
    min_region_size: int = param(5, "regions with fewer support pixels are dropped", lo=1, hi=10000)
    min_length: float = param(
        2.0, "segments shorter than this (pixels of the network's output maps) are dropped", lo=0.0, hi=1000.0
    )
    refine_endpoints: bool = param(
        True, "move each end to where the heat along the segment falls to half (recovers corners)"
    )
    score_threshold: float = param(0.5, "segments whose mean heat is lower are dropped", lo=0.0, hi=1.0)
    merge_gap: float = param(
        4.0, "collinear pieces whose ends are at most this far apart along the line are joined (output-map "
        "pixels; 0 = off): lines cut where another line crosses them become whole again", lo=0.0, hi=100.0,
    )
    merge_offset: float = param(
        1.5, "joining: largest distance of a piece's ends from the other piece's line (output-map pixels)",
        lo=0.1, hi=20.0,
    )
    confidence_length: float = param(
        20.0, "confidence = 1 - exp(-mean heat x length / this), length in output-map pixels: the total heat "
        "along the segment, which ranks long lines above short texture fragments as LSD's NFA does "
        "(0 = mean heat alone)", lo=0.0, hi=10000.0,
    )
    provider: str = param(
        "cpu", "ONNX Runtime execution provider", choices=("cpu", "cuda", "tensorrt"), read_only=True
    )
    threads: int = param(2, "ONNX Runtime intra-op threads (0 = library default)", lo=0, hi=64, read_only=True)
    publish_debug_image: bool = param(False, "line_node: also publish the image with the segments drawn")
