"""``lkd bench detect --photos DIR``: every shipped detector side by side on real photographs.

What a user deciding between the shipped models needs from one run on their own CPU:
- network latency (``session.run``) and whole-call latency (pre-processing, network, decoding)
  per frame, with the models *interleaved* (one frame of each in turn), so that a shared, noisy
  machine slows every model alike and the ratios stay meaningful;
- the ratio to a timing baseline (an untrained YOLOv8n export, ``scripts/yolov8n_timing_baseline.sh``);
- beside the wall-clock median, the 10th percentile and the process CPU time per run (all threads):
  on a machine whose cores other work shares, wall medians swing with the scheduler (measured:
  the same file 9.3 ms in one run and 14.1 ms in the next), while CPU time and the fast tail
  still compare the work each network needs;
- what each model reports on the photographs (detections, people), and its agreement with the
  official outputs where those exist: the official LeYOLO raw outputs on the reference inputs
  (``test/fixtures/leyolo_official``), and for DEIMv2 exports the file's own raw outputs decoded
  without our pipeline.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lkd_perception.common.timing import Stopwatch
from lkd_perception.detection.bench import named_paths, session_call

#: official LeYOLO-nano COCO outputs on three real photographs (see the fixture's README)
REFERENCE = Path("test/fixtures/leyolo_official/leyolo_nano_reference.npz")


@dataclass(frozen=True)
class RealTarget:
    """A model to measure. ``baseline``: time it only (random weights, no detector contract)."""

    name: str
    path: str
    baseline: bool = False


#: the shipped detectors trained on real photographs (COCO), and the simulator-trained one
SHIPPED_REAL_TARGETS = (
    RealTarget("leyolo_n_coco (320)", "models/leyolo_n_coco.onnx"),
    RealTarget("leyolo_n_coco_480", "models/leyolo_n_coco_480.onnx"),
    RealTarget("deimv2_atto_coco (320)", "models/deimv2_atto_coco.onnx"),
    RealTarget("deimv2_femto_coco (416)", "models/deimv2_femto_coco.onnx"),
    RealTarget("leyolo_n_sim (simulator classes)", "models/leyolo_n_sim.onnx"),
)
#: timed as the baseline when no other is given and the file exists (scripts/yolov8n_timing_baseline.sh)
DEFAULT_BASELINE = RealTarget("yolov8n (untrained, 320)", "runs/baselines/yolov8n_320.onnx", baseline=True)


def real_targets(extra: Sequence[str] = (), baselines: Sequence[str] = ()) -> list[RealTarget]:
    """Baselines (``NAME=PATH``; default :data:`DEFAULT_BASELINE` when present), the shipped
    models, then the ``NAME=PATH`` extras."""
    base = [RealTarget(n, p, baseline=True) for n, p in named_paths(baselines, "--baseline")]
    if not base and Path(DEFAULT_BASELINE.path).is_file():
        base.append(DEFAULT_BASELINE)
    return base + list(SHIPPED_REAL_TARGETS) + [RealTarget(n, p) for n, p in named_paths(extra, "--onnx")]


@dataclass(frozen=True)
class RealRow:
    name: str
    path: str
    family: str = ""
    contract: str = ""
    input_size: int = 0
    session_ms: float | None = None
    session_p90_ms: float | None = None
    session_p10_ms: float | None = None
    session_cpu_ms: float | None = None
    detector_ms: float | None = None
    vs_baseline: float | None = None
    cpu_vs_baseline: float | None = None
    detections: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class RealReport:
    rows: list[RealRow]
    threads: int
    runs: int
    photos: list[str]
    baseline: str

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "runs": self.runs, "photos": self.photos, "baseline": self.baseline,
                "models": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        head = (f"{'model':40s} {'size':>5s} {'net ms':>7s} {'x base':>7s} {'cpu ms':>7s} {'x base':>7s} "
                f"{'call ms':>8s} {'dets':>5s} "
                f"{'people':>6s}  agreement with official outputs")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            def fmt(v: float | None, spec: str) -> str:
                return format(v, spec) if v is not None else "-"
            agree = ", ".join(f"{k} {v:.3g}" for k, v in r.agreement.items()) or "-"
            lines.append(f"{r.name:40s} {r.input_size:>5d} {fmt(r.session_ms, '7.1f')} {fmt(r.vs_baseline, '7.2f')} "
                         f"{fmt(r.session_cpu_ms, '7.1f')} {fmt(r.cpu_vs_baseline, '7.2f')} "
                         f"{fmt(r.detector_ms, '8.1f')} {sum(r.detections.values()):>5d} {sum(r.people.values()):>6d}  "
                         f"{agree}" + (f"  ({r.note})" if r.note else ""))
        return "\n".join(lines)


def _interleaved(calls: Sequence, runs: int, warmup: int = 3) -> tuple[list[list[float]], list[list[float]]]:
    """Wall and process-CPU milliseconds of ``runs`` calls of each callable, one of each in turn."""
    times: list[list[float]] = [[] for _ in calls]
    cpu: list[list[float]] = [[] for _ in calls]
    for i in range(warmup + runs):
        for j, call in enumerate(calls):
            c0 = time.process_time()
            with Stopwatch() as sw:
                call()
            if i >= warmup:
                times[j].append(sw.elapsed * 1e3)
                cpu[j].append((time.process_time() - c0) * 1e3)
    return times, cpu


def _leyolo_agreement(session, info, reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |difference| to the official raw outputs (320 only: the reference's size)."""
    if info.input_size != reference["inputs"].shape[-1] or list(info.class_names) != list(reference["names"]):
        return {}
    out = np.concatenate([session.run(None, {"images": reference["inputs"][i:i + 1]})[0]
                          for i in range(len(reference["inputs"]))])
    ref = reference["outputs"]
    diff = np.abs(out - ref)
    reportable = np.broadcast_to((ref[:, 4:].max(1) >= 0.001)[:, None, :], diff[:, :4].shape)
    return {"box_px_max": float(diff[:, :4][reportable].max()), "box_px_max_all_anchors": float(diff[:, :4].max()),
            "score_max": float(diff[:, 4:].max())}


def _deimv2_agreement(session, detector, images: list[np.ndarray]) -> dict[str, float]:
    """Our detections against the file's own outputs decoded by hand (score > threshold, same order)."""
    from lkd_perception.detection.preprocess import deimv2_resize, to_tensor

    worst_box, mismatched = 0.0, 0
    for rgb in images:
        square, _ = deimv2_resize(rgb, detector.info.input_size)
        size = np.array([[rgb.shape[1], rgb.shape[0]]], np.int64)
        labels, boxes, scores = session.run(["labels", "boxes", "scores"],
                                            {"images": to_tensor(square), "orig_target_sizes": size})
        keep = scores[0] > detector.config.conf_threshold
        ours = detector(rgb)
        theirs = np.clip(boxes[0][keep], 0, [rgb.shape[1], rgb.shape[0]] * 2)
        if len(ours) != int(keep.sum()):
            mismatched += abs(len(ours) - int(keep.sum()))
            continue
        order = np.argsort(-scores[0][keep], kind="stable")
        mismatched += int((labels[0][keep][order] != ours.class_ids).sum())
        if len(ours):
            worst_box = max(worst_box, float(np.abs(theirs[order] - ours.boxes_xyxy).max()))
    return {"box_px_max": worst_box, "label_or_count_mismatches": float(mismatched)}


def run_real_benchmark(targets: Sequence[RealTarget], photos: Sequence[str | Path], runs: int,
                       threads: int, conf: float = 0.25) -> RealReport:
    """Measure every target that loads; a target that does not is a row with the reason."""
    from lkd_perception.common.errors import LkdError
    from lkd_perception.detection.config import detector_config
    from lkd_perception.detection.runtime import (
        ContractName,
        Detector,
        make_session,
        read_model_info,
        resolve_model_path,
    )
    from lkd_perception.io.formats import read_rgb

    images = [read_rgb(p) for p in photos]
    names = [Path(p).name for p in photos]
    reference = _load_reference()

    loaded: list[tuple[RealTarget, Path, Any, Any, Any]] = []  # target, path, session, info, detector
    rows: dict[str, RealRow] = {}
    for t in targets:
        try:
            path = resolve_model_path(t.path)
            session = make_session(path, "cpu", False, threads)
            if t.baseline:
                size = int(session.get_inputs()[0].shape[2])
                loaded.append((t, path, session, None, None))
                rows[t.name] = RealRow(t.name, str(t.path), "baseline", "-", size, note="random weights: timing only")
                continue
            info = read_model_info(session, str(path))
            detector = Detector(detector_config(info.family, str(path), conf_threshold=conf, threads=threads))
        except LkdError as exc:
            rows[t.name] = RealRow(t.name, str(t.path), note=f"skipped: {exc}")
            continue
        loaded.append((t, path, session, info, detector))
        rows[t.name] = RealRow(t.name, str(t.path), info.family.value, info.contract.value, info.input_size)

    net, net_cpu = _interleaved([session_call(s, rows[t.name].input_size) for t, _, s, _, _ in loaded], runs)
    with_detector = [(t, d) for t, _, _, _, d in loaded if d is not None]
    per_frame, _ = _interleaved([lambda d=d: [d(im) for im in images] for _, d in with_detector], max(3, runs // 3))
    call_ms = {t.name: float(np.median(ms)) / len(images) for (t, _), ms in zip(with_detector, per_frame)}
    baseline_ms = next((float(np.median(ms)) for (t, *_), ms in zip(loaded, net) if t.baseline), None)
    baseline_cpu = next((float(np.median(ms)) for (t, *_), ms in zip(loaded, net_cpu) if t.baseline), None)
    baseline_name = next((t.name for t, *_ in loaded if t.baseline), "")

    for (t, path, session, info, detector), ms, cpu in zip(loaded, net, net_cpu):
        row = rows[t.name]
        med, cpu_med = float(np.median(ms)), float(np.median(cpu))
        update: dict[str, Any] = {"session_ms": med, "session_p90_ms": float(np.percentile(ms, 90)),
                                  "session_p10_ms": float(np.percentile(ms, 10)), "session_cpu_ms": cpu_med,
                                  "vs_baseline": med / baseline_ms if baseline_ms else None,
                                  "cpu_vs_baseline": cpu_med / baseline_cpu if baseline_cpu else None}
        if detector is not None:
            dets = [detector(im) for im in images]
            update["detector_ms"] = call_ms[t.name]
            update["detections"] = {n: len(d) for n, d in zip(names, dets)}
            update["people"] = {n: sum(lbl == "person" for lbl in d.labels) for n, d in zip(names, dets)}
            if info.contract is ContractName.YOLO and reference is not None:
                update["agreement"] = _leyolo_agreement(session, info, reference)
            elif info.contract is ContractName.DEIMV2:
                update["agreement"] = _deimv2_agreement(session, detector, images)
        rows[t.name] = RealRow(**{**asdict(row), **update})
    return RealReport([rows[t.name] for t in targets], threads, runs, names, baseline_name)


def _load_reference() -> dict[str, np.ndarray] | None:
    """The official LeYOLO outputs, when this checkout or install has them (else no agreement row)."""
    from lkd_perception.common.errors import ModelError
    from lkd_perception.common.paths import resolve_model_path

    try:
        path = resolve_model_path(REFERENCE)
    except ModelError:
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
