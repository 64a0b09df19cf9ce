"""``lkd bench detect``: size, cost, latency and held-out accuracy of every detector in one run.

- LeYOLO sizes: parameters and GFLOPs (2 x conv MACs) from the PyTorch model, latency of an
  exported ONNX (weights do not change latency, so an untrained export of each size is timed).
- Trained ONNX detectors of either family (shipped models, DETR runs): parameters from the
  initialisers, GFLOPs from the graph (2 x Conv/MatMul/Gemm MACs after shape inference),
  latency of ``session.run`` and of the whole ``Detector`` call, and mAP on the held-out set.
Latency is measured on ONNX Runtime CPU with the given thread count, and on CUDA when present.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lkd_perception.common.errors import ConfigError
from lkd_perception.common.timing import Stopwatch
from lkd_perception.detection.config import DetectorFamily, detector_config
from lkd_perception.io.coco import CocoSet, load_coco


@dataclass(frozen=True)
class BenchTarget:
    """An ONNX detector to benchmark, by display name and path."""

    name: str
    path: str


#: benchmarked when present; absent ones are rows saying why.
SHIPPED_TARGETS = (
    BenchTarget("leyolo_n_coco (shipped, official COCO weights, 320)", "models/leyolo_n_coco.onnx"),
    BenchTarget("leyolo_n_coco_480 (shipped, official COCO weights, 480)", "models/leyolo_n_coco_480.onnx"),
    BenchTarget("leyolo_n_sim (shipped, simulator-trained)", "models/leyolo_n_sim.onnx"),
    BenchTarget("deimv2_atto_sim (shipped, fine-tuned on the simulator)", "models/deimv2_atto_sim.onnx"),
)


def named_paths(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    """``NAME=PATH`` items (as the command line gives them) as (name, path) pairs."""
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} expects NAME=PATH, got {item!r}")
        out.append((name, path))
    return out


def bench_targets(extra: Sequence[str] = ()) -> list[BenchTarget]:
    """The shipped targets, then the ``NAME=PATH`` extras."""
    return list(SHIPPED_TARGETS) + [BenchTarget(n, p) for n, p in named_paths(extra, "--onnx")]


@dataclass(frozen=True)
class Latency:
    provider: str
    input_size: int
    median_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True)
class BenchRow:
    """One model's measurements; ``note`` says why something is missing."""

    name: str
    family: str
    params: int | None = None
    gflops: dict[str, float] = field(default_factory=dict)
    latency: list[Latency] = field(default_factory=list)
    end_to_end_ms: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    note: str = ""


@dataclass(frozen=True)
class BenchReport:
    rows: list[BenchRow]
    threads: int
    eval_images: int

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "eval_images": self.eval_images, "models": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        head = (f"{'model':34s} {'params':>9s} {'GFLOPs':>16s} {'latency ms (cpu, median)':>30s} {'mAP50-95':>9s} "
                f"{'mAP50':>7s}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            gf = " ".join(f"{k}:{v:.2f}" for k, v in r.gflops.items()) or "-"
            lat = " ".join(f"{x.input_size}:{x.median_ms:.1f}" for x in r.latency if x.provider == "cpu") or "-"
            p = f"{r.params / 1e6:.2f}M" if r.params else "-"
            m1 = f"{r.map50_95:.3f}" if r.map50_95 is not None else "-"
            m2 = f"{r.map50:.3f}" if r.map50 is not None else "-"
            lines.append(
                f"{r.name:34s} {p:>9s} {gf:>16s} {lat:>30s} {m1:>9s} {m2:>7s}" + (f"  ({r.note})" if r.note else "")
            )
        return "\n".join(lines)


def _providers() -> list[str]:
    import onnxruntime as ort

    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


def session_call(session, size: int):
    """A zero-argument callable that runs the network once on a fixed random input of its contract
    (a DEIMv2 export also takes the original image size)."""
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for inp in session.get_inputs():
        if inp.name == "orig_target_sizes":
            feeds[inp.name] = np.array([[640, 480]], np.int64)
        else:
            feeds[inp.name] = rng.random((1, 3, size, size), dtype=np.float32)
    return lambda: session.run(None, feeds)


def time_session(session, size: int, runs: int, provider: str) -> Latency:
    """Median/p90 of ``session.run`` on a fixed random input after 5 warm-up runs."""
    call = session_call(session, size)
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        with Stopwatch() as sw:
            call()
        times.append(sw.elapsed * 1e3)
    return Latency(provider, size, float(np.median(times)), float(np.percentile(times, 90)), runs)


def onnx_cost(path: str | Path) -> tuple[int, float, int]:
    """(parameters, GFLOPs, uncounted nodes) of an ONNX graph: initialiser elements; 2 x MACs of Conv,
    MatMul and Gemm. Nodes whose shapes shape inference cannot fix are not counted (a lower bound)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i).shape for i in g.initializer}
    params = int(sum(int(np.prod(s)) for s in inits.values()))
    shapes: dict[str, tuple[int, ...]] = dict(inits)
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    macs = skipped = 0
    for node in g.node:
        out = shapes.get(node.output[0])
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        if out is None or node.input[0] not in shapes or (node.op_type == "Conv" and node.input[1] not in shapes):
            skipped += 1
            continue
        if node.op_type == "Conv":
            macs += int(np.prod(out)) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            k = shapes[node.input[0]][-1]
            if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
                k = shapes[node.input[0]][0]
            macs += int(np.prod(out)) * int(k)
    return params, 2.0 * macs / 1e9, skipped


def _evaluate(detector, coco: CocoSet, max_images: int) -> tuple[float, float, int]:
    from lkd_perception.detection.postprocess import detections_to_coco
    from lkd_perception.eval.detection import evaluate_detections
    from lkd_perception.io.formats import read_rgb

    subset = coco.head(max_images)
    preds = []
    for im in subset.images:
        preds.extend(detections_to_coco(detector(read_rgb(im.path)), im.image_id, subset.category_ids))
    m = evaluate_detections(subset.ground_truth(), preds)
    return m.map50_95, m.map50, len(subset.images)


def _leyolo_row(size: str, sizes: Sequence[int], runs: int, threads: int, tmp: Path) -> BenchRow:
    from lkd_perception.detection.export import export_leyolo
    from lkd_perception.detection.flops import model_cost
    from lkd_perception.detection.leyolo import LeYOLO
    from lkd_perception.detection.runtime import make_session

    nc = 4
    model = LeYOLO(size, nc)
    params80 = model_cost(LeYOLO(size, 80), 320).params
    gflops, lat = {}, []
    for s in sizes:
        gflops[str(s)] = round(model_cost(model, s).gflops, 4)
        path = export_leyolo(model, tmp / f"leyolo_{size}_{s}.onnx", s, [str(i) for i in range(nc)])
        for prov in _providers():
            lat.append(time_session(make_session(path, prov, False, threads), s, runs, prov))
    return BenchRow(
        f"leyolo_{size} (architecture, nc=4)",
        DetectorFamily.LEYOLO.value,
        model_cost(model, 320).params,
        gflops,
        lat,
        note=f"{params80 / 1e6:.3f}M params with nc=80; untrained weights, latency only",
    )


def _onnx_row(target: BenchTarget, gt: str | None, max_images: int, runs: int, threads: int) -> tuple[BenchRow, int]:
    from lkd_perception.common.errors import LkdError
    from lkd_perception.detection.runtime import Detector, make_session, read_model_info, resolve_model_path
    from lkd_perception.io.formats import read_rgb

    try:
        path = resolve_model_path(target.path)
        info = read_model_info(make_session(path, "cpu", False, threads), str(path))
    except LkdError as exc:
        return BenchRow(target.name, "?", note=f"skipped: {exc}"), 0
    params, gf, uncounted = onnx_cost(path)
    lat = [time_session(make_session(path, p, False, threads), info.input_size, runs, p) for p in _providers()]
    cfg = detector_config(info.family, str(path), conf_threshold=0.001, iou_threshold=0.6, threads=threads)
    det = Detector(cfg)
    e2e = None
    n_eval = 0
    m1 = m2 = None
    coco = load_coco(gt) if gt else None
    gt_classes = coco.class_names if coco else ()
    if coco and tuple(gt_classes) != tuple(info.class_names):
        return BenchRow(
            target.name,
            info.family.value,
            params,
            {str(info.input_size): round(gf, 4)},
            lat,
            note=f"accuracy not measured: its {len(info.class_names)} classes are not the --gt's {len(gt_classes)}",
        ), 0
    if coco:
        first = coco.images[0]
        img = read_rgb(first.path)
        times = []
        for i in range(runs + 3):
            with Stopwatch() as sw:
                det(img)
            if i >= 3:
                times.append(sw.elapsed * 1e3)
        e2e = float(np.median(times))
        m1, m2, n_eval = _evaluate(det, coco, max_images)
    notes = ([] if gt else ["no --gt: accuracy not measured"]) + (
        [f"GFLOPs is a lower bound: {uncounted} Conv/MatMul nodes without static shapes"] if uncounted else []
    )
    return BenchRow(
        target.name, info.family.value, params, {str(info.input_size): round(gf, 4)}, lat, e2e, m1, m2,
        note="; ".join(notes),
    ), n_eval


def run_benchmark(
    leyolo_sizes: Sequence[str],
    sizes: Sequence[int],
    targets: Sequence[BenchTarget],
    gt: str | None,
    max_images: int,
    runs: int,
    threads: int,
) -> BenchReport:
    """Measure every LeYOLO size and every ONNX target that exists."""
    import torch

    torch.set_num_threads(max(1, threads))
    rows: list[BenchRow] = []
    n_eval = 0
    with tempfile.TemporaryDirectory() as tmp:
        for s in leyolo_sizes:
            rows.append(_leyolo_row(s, sizes, runs, threads, Path(tmp)))
    for t in targets:
        row, n = _onnx_row(t, gt, max_images, runs, threads)
        rows.append(row)
        n_eval = max(n_eval, n)
    return BenchReport(rows, threads, n_eval)
