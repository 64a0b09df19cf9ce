"""Settings of the LSDNet line-segment detector (CNN + LSD-style grouping).

One flat dataclass: field name = YAML key = ROS parameter of ``line_node``. Defaults follow the
reference grouping of LSDNet (heat > 0.4, adaptive threshold C 2) except where our model or
grouping differs.

Pixel-sized settings (adaptive block, region size, minimum length, joining gap and offset,
confidence length) are stated in pixels of a stride-2 map, the maps of our light model (half its
input size), and the runtime scales them to each model's maps
(:func:`lkd_perception.lines.runtime.scaled_grouping`): the stride-1 Wireframe LSDNet gets twice
each, which gives the reference grouping's adaptive block 11 and regions of 10 px. So the same
settings serve every shipped model and switching ``model_path`` needs no re-tuning. They and the
angle tolerance (10 deg; our grouping compares with the seed, not the running mean) were chosen
on validation simulator drives for the light model; the joining of collinear pieces and the
length-aware confidence on validation photographs, where the Wireframe model was checked with
them as they are (see models/MODEL_CARD.md). The heat tolerance is documented on its field.
"""

from __future__ import annotations

from dataclasses import dataclass

from lkd_perception.common.config import param
from lkd_perception.common.providers import PROVIDER_CHOICES

#: our light network (FP32), trained on synthetic scenes and simulator frames
LIGHT_MODEL_PATH = "models/lsdnet.onnx"
#: where ``lkd quantize lines`` writes the INT8 model by default, and where the bench looks for it
INT8_MODEL_PATH = "models/lsdnet_int8.onnx"
#: the published Wireframe-trained LSDNet, imported with ``lkd import lsdnet``
WIREFRAME_MODEL_PATH = "models/lsdnet_wireframe.onnx"


@dataclass(frozen=True)
class LineConfig:
    """Everything :class:`lkd_perception.lines.runtime.LineDetector` needs.

    The default model is the Wireframe LSDNet because real cameras are what the vehicle has: on
    hand-labelled photographs it beats our light network on validation (sAP10 39.8 vs 28.2) and
    test (8.2 vs 5.4; F^H 80.5 vs 72.5). On simulator frames the light network is far better
    (validation drives sAP10 25.0 vs 10.9), so the simulator's parameter file keeps it
    (models/MODEL_CARD.md).
    """

    model_path: str = param(
        WIREFRAME_MODEL_PATH,
        "ONNX model file (models/lsdnet_wireframe.onnx: the published Wireframe-trained LSDNet, fixed 288x288 "
        "input, the default for real cameras; models/lsdnet.onnx: our light FP32 network, trained on synthetic "
        "and simulator images, better and 2x faster on simulator frames (config/simulation.yaml); "
        "models/lsdnet_int8.onnx: its INT8 version (7-bit weights, right on every x86 CPU), faster on CPUs, "
        "lower sAP on real photographs); a "
        "relative path is looked up in the current folder, the package share dir, then the repository",
        read_only=True,
    )
    input_width: int = param(
        480, "network input width in pixels (multiple of 8 x the model's output stride); cost grows with the area; "
        "a model with a fixed input size (models/lsdnet_wireframe.onnx: 288x288) runs at its own size instead",
        lo=32, hi=2048, read_only=True,
    )
    input_height: int = param(
        352, "network input height in pixels (multiple of 8 x the model's output stride); ignored by fixed-size "
        "models like input_width", lo=32, hi=2048, read_only=True
    )
    heat_threshold: float = param(0.4, "support mask: minimum line heat", lo=0.0, hi=1.0)
    adaptive_block: int = param(
        5, "support mask: block size of the Gaussian adaptive threshold on heat*255 (odd; 0 disables it; "
        "pixels of a stride-2 map, scaled to the model's maps)",
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
    min_region_size: int = param(
        5, "regions with fewer support pixels are dropped (stride-2 map pixels, scaled to the model's maps)",
        lo=1, hi=10000,
    )
    min_length: float = param(
        2.0, "segments shorter than this (pixels of a stride-2 output map, scaled to the model's maps) are dropped",
        lo=0.0, hi=1000.0,
    )
    refine_endpoints: bool = param(
        True, "move each end to where the heat along the segment falls to half (recovers corners); only for models "
        "whose heat it is calibrated to (ours; the Wireframe LSDNet's metadata turns it off)"
    )
    score_threshold: float = param(0.5, "segments whose mean heat is lower are dropped", lo=0.0, hi=1.0)
    merge_gap: float = param(
        4.0, "collinear pieces whose ends are at most this far apart along the line are joined (stride-2 map "
        "pixels, scaled to the model's maps; 0 = off): lines cut where another line crosses them become whole "
        "again", lo=0.0, hi=100.0,
    )
    merge_offset: float = param(
        1.5, "joining: largest distance of a piece's ends from the other piece's line (stride-2 map pixels, scaled)",
        lo=0.1, hi=20.0,
    )
    confidence_length: float = param(
        20.0, "confidence = 1 - exp(-mean heat x length / this), length in stride-2 map pixels (scaled): the "
        "total heat along the segment, which ranks long lines above short texture fragments as LSD's NFA does "
        "(0 = mean heat alone)", lo=0.0, hi=10000.0,
    )
    provider: str = param(
        "cpu", "ONNX Runtime execution provider", choices=PROVIDER_CHOICES, read_only=True
    )
    threads: int = param(2, "ONNX Runtime intra-op threads (0 = library default)", lo=0, hi=64, read_only=True)
    publish_debug_image: bool = param(False, "line_node: also publish the image with the segments drawn")
    image_transport: str = param("raw", "camera input: raw sensor_msgs/Image on camera/image_raw, or compressed: "
                                 "sensor_msgs/CompressedImage (JPEG/PNG) on camera/image_raw/compressed "
                                 "(image_transport's topic name; read when the node is configured)",
                                 choices=("raw", "compressed"), read_only=True)
