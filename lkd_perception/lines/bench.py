"""Accuracy and speed of every shipped line model against OpenCV's LSD and FLD on the same
held-out images.

Each LSDNet method names its model file explicitly (not the config's ``model_path``), so one run
compares the light FP32 model, its INT8 version and the Wireframe LSDNet whatever the default
is; the config supplies everything else (grouping, threads). The INT8 model's weights are 7-bit
so that its maps are the same on x86 CPUs with and without VNNI (:mod:`~lkd_perception.lines.quantize`).

The held-out images are made once (simulator frames of drives, or synthetic shapes, with seeds
that training never uses) and handed to one fresh process per method (``multiprocessing``
spawn), so each method's peak resident memory is its own and not the maximum of everything
measured before it.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from lkd_perception.common.config import from_dict, to_dict
from lkd_perception.common.errors import ConfigError
from lkd_perception.common.timing import Stopwatch, peak_rss_mb
from lkd_perception.eval.lines import LineMetrics, evaluate_lines
from lkd_perception.lines.config import INT8_MODEL_PATH, LIGHT_MODEL_PATH, WIREFRAME_MODEL_PATH, LineConfig
from lkd_perception.lines.sim_source import labelled_images
from lkd_perception.lines.synthetic import SyntheticImage, augment, render_scene

#: the LSDNet methods: LineConfig fields each one sets
_LSDNET_VARIANTS: dict[str, dict[str, str]] = {
    "lsdnet_cpu": {"provider": "cpu", "model_path": LIGHT_MODEL_PATH},
    "lsdnet_int8": {"provider": "cpu", "model_path": INT8_MODEL_PATH},
    "lsdnet_wireframe": {"provider": "cpu", "model_path": WIREFRAME_MODEL_PATH},
    "lsdnet_cuda": {"provider": "cuda", "model_path": LIGHT_MODEL_PATH},
    "lsdnet_wireframe_cuda": {"provider": "cuda", "model_path": WIREFRAME_MODEL_PATH},
}
METHODS = (*_LSDNET_VARIANTS, "opencv_lsd", "opencv_fld")
SPEED_SIZES = ((320, 240), (640, 480))


@dataclass(frozen=True)
class HeldOut:
    """How the held-out images are made.

    ``source="sim"``: frames of the simulator drives ``sim_runs`` ("scenario:seed,..."), one
    every ``1/sim_rate_hz`` s of a ``sim_seconds`` drive. ``source="synthetic"``: ``count``
    synthetic-shape scenes from ``seed``, photometrically degraded with ``augment_strength``.
    ``source="labelled"``: the images of a line ground-truth file ``gt`` (e.g. the hand-labelled
    photographs in ``test/fixtures/lines_real/gt.json``), read from the file's folder.
    """

    source: str = "sim"
    width: int = 640
    height: int = 480
    sim_runs: str = "urban:1001,loop:1002"
    sim_seconds: float = 60.0
    sim_rate_hz: float = 0.25
    seed: int = 1000
    count: int = 30
    augment_strength: float = 1.0
    gt: str = ""


@dataclass(frozen=True)
class MethodResult:
    """One row of the benchmark table (metrics in percent; fps and ms end to end, keyed by frame size
    or "heldout"; memory in MiB)."""

    method: str
    available: bool
    metrics: LineMetrics | None
    fps: dict[str, float]
    ms: dict[str, float]
    peak_rss_mb: float
    note: str = ""


def heldout_images(spec: HeldOut) -> list[SyntheticImage]:
    """The held-out images with their exact segments (deterministic for a spec)."""
    if spec.source == "sim":
        from lkd_perception.lines.sim_source import parse_sim_runs, render_sim_frames

        return render_sim_frames(parse_sim_runs(spec.sim_runs), spec.width, spec.height, spec.sim_seconds,
                                 spec.sim_rate_hz)
    if spec.source == "labelled":
        if not spec.gt:
            raise ConfigError("source 'labelled' needs the ground-truth file (--gt)")
        return labelled_images(spec.gt)
    if spec.source != "synthetic":
        raise ConfigError(f"held-out source must be 'sim', 'synthetic' or 'labelled', got {spec.source!r}")
    rng = np.random.default_rng(spec.seed)
    out = []
    for _ in range(spec.count):
        scene = render_scene(rng, spec.height, spec.width)
        out.append(replace(scene, rgb=augment(scene.rgb, rng, spec.augment_strength)))
    return out


def save_heldout(images: Sequence[SyntheticImage], folder: str | Path) -> None:
    """Write the held-out images as ``heldout_NNNN.png`` and their ``gt.json`` (line ground truth
    with sizes), so that ``lkd evaluate lines`` can score any method on exactly these images."""
    from lkd_perception.io.formats import LineGroundTruth, write_ground_truth, write_rgb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gt = {}
    for i, scene in enumerate(images):
        name = f"heldout_{i:04d}.png"
        write_rgb(folder / name, scene.rgb)
        gt[name] = LineGroundTruth(scene.segments, int(scene.rgb.shape[1]), int(scene.rgb.shape[0]))
    write_ground_truth(folder / "gt.json", gt)


def make_detector(method: str, cfg: LineConfig) -> Any:
    """A detector with ``.detect(rgb) -> LineSegments`` for a method name of :data:`METHODS`.

    ``lsdnet_*@WxH`` runs LSDNet at another network input size (the speed/accuracy trade-off;
    not for the fixed-size Wireframe model); ``lsdnet_int8`` is the INT8 model on the CPU,
    ``lsdnet_wireframe`` the published Wireframe LSDNet (``lkd import lsdnet``).
    ``model:PATH`` is any LSDNet ONNX file of ours on the CPU (e.g. a model of ``lkd distill
    lines`` before it is shipped), so a candidate is measured in the same run as the shipped ones.
    """
    if method.startswith("model:"):
        from lkd_perception.lines.runtime import LineDetector

        if not Path(method[6:]).is_file():
            raise ConfigError(f"line model not found: {method[6:]}")
        return LineDetector(replace(cfg, provider="cpu", model_path=method[6:]))
    method, _, size = method.partition("@")
    if size:
        w, _, h = size.partition("x")
        if not method.startswith("lsdnet") or not w.isdigit() or not h.isdigit():
            raise ConfigError(f"'@WxH' applies to lsdnet methods only, got {method}@{size}")
        cfg = replace(cfg, input_width=int(w), input_height=int(h))
    if method in _LSDNET_VARIANTS:
        from lkd_perception.lines.runtime import LineDetector

        det = LineDetector(replace(cfg, **_LSDNET_VARIANTS[method]))
        if method.endswith("_cuda") and "CUDAExecutionProvider" not in det.providers:
            raise ConfigError("CUDA execution provider not available")
        if size and det.input_size != (cfg.input_width, cfg.input_height):
            raise ConfigError(f"{method} has a fixed input size {det.input_size[0]}x{det.input_size[1]}; '@{size}' "
                              "does not apply")
        return det
    from lkd_perception.lines.baselines import OpenCvFld, OpenCvLsd

    if method == "opencv_lsd":
        return OpenCvLsd("nfa")
    if method == "opencv_fld":
        return OpenCvFld()
    raise ConfigError(f"unknown line method {method!r}; known: {list(METHODS)}")


def _time_per_frame(det: Any, frames: Sequence[np.ndarray], repeats: int) -> float:
    """Seconds per frame of ``det.detect`` over ``frames`` (two warm-up frames first)."""
    for f in frames[:2]:
        det.detect(f)  # warm-up (allocations, lazy initialisation)
    with Stopwatch() as sw:
        for _ in range(repeats):
            for f in frames:
                det.detect(f)
    return sw.elapsed / (repeats * len(frames))


def evaluate_detector(det: Any, images: Sequence[SyntheticImage]) -> LineMetrics:
    """sAP and F^H of a detector (``.detect(rgb) -> LineSegments``) on labelled images, each
    scored at its own size."""
    preds = []
    for scene in images:
        found = det.detect(scene.rgb)
        preds.append(np.concatenate([found.segments, found.scores[:, None]], axis=1))
    sizes = [(s.rgb.shape[1], s.rgb.shape[0]) for s in images]
    return evaluate_lines(preds, [s.segments for s in images], sizes)


def measure(method: str, cfg: LineConfig, images: Sequence[SyntheticImage], repeats: int = 1) -> MethodResult:
    """Run one method in this process: metrics at the images' size; end-to-end time per frame on
    the held-out images as they are (key ``"heldout"``: the photographs' own sizes for a labelled
    set) and resized to each of :data:`SPEED_SIZES`."""
    try:
        det = make_detector(method, cfg)
    except ConfigError as exc:
        return MethodResult(method, False, None, {}, {}, peak_rss_mb(), note=str(exc))
    metrics = evaluate_detector(det, images)
    fps, ms = {}, {}
    runs = [("heldout", [s.rgb for s in images])]
    runs += [(f"{w}x{h}", [cv2.resize(s.rgb, (w, h), interpolation=cv2.INTER_AREA) for s in images])
             for w, h in SPEED_SIZES]
    for key, frames in runs:
        per_frame = _time_per_frame(det, frames, repeats)
        fps[key] = 1.0 / per_frame
        ms[key] = 1e3 * per_frame
    return MethodResult(method, True, metrics, fps, ms, peak_rss_mb())


def _child(method: str, cfg_dict: dict, images: list[SyntheticImage], repeats: int, queue: Any) -> None:
    try:
        queue.put(("ok", measure(method, from_dict(LineConfig, cfg_dict), images, repeats)))
    except Exception as exc:  # reported to the parent, which keeps going with the other methods
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_benchmark(
    cfg: LineConfig, images: Sequence[SyntheticImage], methods: Sequence[str] = METHODS, repeats: int = 1
) -> list[MethodResult]:
    """Every method in its own spawned process (see module docstring)."""
    ctx = multiprocessing.get_context("spawn")
    results = []
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(method, to_dict(cfg), list(images), repeats, queue))
        proc.start()
        status, value = queue.get()
        proc.join()
        if status == "ok":
            results.append(value)
        else:
            results.append(MethodResult(method, False, None, {}, {}, 0.0, note=value))
    return results


def results_to_dict(results: Sequence[MethodResult], cfg: LineConfig, spec: HeldOut, images: int) -> dict[str, Any]:
    """The JSON record, with the machine's core count and load: fps on a shared machine depend on both."""
    return {
        "machine": {"cpu_count": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg())},
        "heldout": asdict(spec) | {"images": images},
        "config": to_dict(cfg),
        "methods": [asdict(r) for r in results],
    }


def format_table(results: Sequence[MethodResult]) -> str:
    """A plain-text table for the terminal: metrics in percent, milliseconds per frame end to end."""
    head = (f"{'method':<22}{'sAP5':>7}{'sAP10':>7}{'sAP15':>7}{'F^H':>7}{'AP^H':>7}"
            f"{'ms heldout':>12}{'ms 320x240':>12}{'ms 640x480':>12}{'peak MiB':>10}")
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.available or r.metrics is None:
            lines.append(f"{r.method:<22}  n/a: {r.note}")
            continue
        m = r.metrics
        lines.append(
            f"{r.method:<22}{m.sap5:7.1f}{m.sap10:7.1f}{m.sap15:7.1f}{m.f_h:7.1f}{m.ap_h:7.1f}"
            f"{r.ms['heldout']:12.1f}{r.ms['320x240']:12.1f}{r.ms['640x480']:12.1f}{r.peak_rss_mb:10.0f}"
        )
    return "\n".join(lines)
