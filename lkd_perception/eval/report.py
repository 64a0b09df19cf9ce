"""Evaluate a recorded replay against ground truth and write a self-contained HTML report.

One function per concern: :func:`evaluate_run` turns a recording plus the simulator's ground
truth into metrics (COCO mAP, line sAP/F^H, APE/RPE/drift, latency, processed fraction);
:func:`write_report` renders them with plots embedded as base64 PNGs, so the report is a single
file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.eval.outputs import RecordedRun
from lkd_perception.io import topics

#: node name -> (its result topic, the input topic whose every message it should answer), from the topic table
NODE_IO: dict[str, tuple[str, str]] = {
    name: (t.result.path, t.paced_by.path) for name, t in topics.NODE_TOPICS.items()
}


def _jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return _jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _latency_stats(ms: np.ndarray) -> dict[str, float]:
    if ms.size == 0:
        return {"count": 0}
    return {
        "count": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


def _image_index(gt_coco: dict) -> dict[int, dict]:
    """GT images by stamp (ns): the link between a result's header stamp and its labels."""
    return {int(im["stamp_ns"]): im for im in gt_coco.get("images", []) if "stamp_ns" in im}


def detection_results(run: RecordedRun, gt_coco: dict) -> list[dict]:
    """The recorded detections in the COCO results format, matched to GT images by stamp."""
    by_stamp = _image_index(gt_coco)
    cat_ids = {c["name"]: c["id"] for c in gt_coco.get("categories", [])}
    out = []
    for f in run.detections:
        im = by_stamp.get(f.stamp_ns)
        if im is None:
            continue
        for (x1, y1, x2, y2), s, name in zip(f.boxes_xyxy, f.scores, f.class_names):
            if name in cat_ids:
                out.append({"image_id": im["id"], "category_id": cat_ids[name],
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)})
    return out


def line_results(run: RecordedRun, gt_coco: dict) -> dict[str, list[list[float]]]:
    """The recorded segments in the line JSON of the CLI contract, keyed by GT file name."""
    by_stamp = _image_index(gt_coco)
    out: dict[str, list[list[float]]] = {}
    for f in run.lines:
        im = by_stamp.get(f.stamp_ns)
        if im is not None:
            out[im["file_name"]] = [[*map(float, seg), float(s)] for seg, s in zip(f.segments, f.scores)]
    return out


def _gt_trajectory(tum: Path):
    from lkd_perception.eval.trajectory import Trajectory
    from lkd_perception.io.formats import read_tum

    series = read_tum(tum)
    return Trajectory(np.round(series.stamps_s * 1e9).astype(np.int64), series.poses)


def evaluate_run(run: RecordedRun, gt_dir: str | Path, input_counts: dict[str, int] | None = None) -> dict[str, Any]:
    """All metrics of one replay. Capabilities whose outputs are absent are reported as such."""
    from lkd_perception.eval.detection import evaluate_detections
    from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
    from lkd_perception.io.formats import read_coco, read_lines

    gt = Path(gt_dir)
    if not gt.is_dir():
        raise InputError(f"ground-truth folder not found: {gt}")
    metrics: dict[str, Any] = {}
    coco_path = gt / "detections.json"
    gt_coco = read_coco(coco_path) if coco_path.is_file() else {"images": [], "categories": [], "annotations": []}

    if run.detections:
        preds = detection_results(run, gt_coco)
        matched = {p["image_id"] for p in preds} | {
            gt_coco_im["id"] for f in run.detections
            if (gt_coco_im := _image_index(gt_coco).get(f.stamp_ns)) is not None
        }
        sub = dict(gt_coco)
        sub["images"] = [im for im in gt_coco["images"] if im["id"] in matched]
        sub["annotations"] = [a for a in gt_coco.get("annotations", []) if a["image_id"] in matched]
        metrics["detection"] = (
            evaluate_detections(sub, preds).to_dict() if sub["images"] else {"error": "no frame matched GT"}
        )
    else:
        metrics["detection"] = {"skipped": f"no {topics.DETECTIONS.path} in the recording"}

    lines_gt_path = gt / "lines.json"
    if run.lines and lines_gt_path.is_file():
        from lkd_perception.eval.lines import evaluate_lines

        pred = line_results(run, gt_coco)
        gt_lines = read_lines(lines_gt_path)
        sizes = {im["file_name"]: (im["width"], im["height"]) for im in gt_coco["images"]}
        names = sorted(k for k in pred if k in gt_lines and k in sizes)
        if names:
            m = evaluate_lines(
                [np.asarray(pred[k], float).reshape(-1, 5) for k in names],
                [gt_lines[k] for k in names],
                [sizes[k] for k in names],
            )
            metrics["lines"] = {
                "sAP5": m.sap5,
                "sAP10": m.sap10,
                "sAP15": m.sap15,
                "FH": m.f_h,
                "APH": m.ap_h,
                "images": m.images,
                "ground_truth": m.ground_truth,
                "predictions": m.predictions,
            }
        else:
            metrics["lines"] = {"error": "no frame matched GT"}
    else:
        metrics["lines"] = {"skipped": f"no {topics.LINES.path} in the recording or no gt/lines.json"}

    tum = gt / "trajectory.tum"
    if len(run.odometry_poses) >= 3 and tum.is_file():
        ref = _gt_trajectory(tum)
        odo = evaluate_trajectory(Trajectory(run.odometry_stamps_ns, run.odometry_poses), ref)
        metrics["odometry"] = {"odom": _jsonable(odo)}
        metrics["odometry"]["odom"].pop("alignment", None)
        if len(run.path_poses) >= 3:
            slam = evaluate_trajectory(Trajectory(run.path_stamps_ns, run.path_poses), ref)
            metrics["odometry"]["map"] = _jsonable(slam)
            metrics["odometry"]["map"].pop("alignment", None)
        metrics["odometry"]["loop_closures"] = int(len(run.loop_closures))
    else:
        metrics["odometry"] = {"skipped": f"no {topics.ODOMETRY.path} in the recording or no gt/trajectory.tum"}

    metrics["nodes"] = node_metrics(run, input_counts)
    return metrics


def node_metrics(run: RecordedRun, input_counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Per node that published: its results, their latency, the fraction of its inputs it
    answered (given the bag's ``input_counts``) and its last health report. Needs no ground truth."""
    nodes: dict[str, Any] = {}
    for node, (out_topic, in_topic) in NODE_IO.items():
        n_out = run.counts.get(out_topic, 0)
        if n_out == 0:
            continue
        entry: dict[str, Any] = {
            "outputs": n_out,
            "latency": _latency_stats(run.latencies_ms.get(out_topic, np.zeros(0))),
        }
        if input_counts and input_counts.get(in_topic):
            entry["inputs"] = int(input_counts[in_topic])
            entry["processed_fraction"] = n_out / input_counts[in_topic]
        diag = {k: v for k, v in run.diagnostics.items() if k.startswith(node + ":")}
        if diag:
            entry["diagnostics"] = diag
        nodes[node] = entry
    return nodes


# -- plots ------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_trajectories(run: RecordedRun, gt_dir: Path) -> str | None:
    """Top view of ground truth, odometry and the loop-closed path, with loop closures drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lkd_perception.eval.trajectory import align_se3, associate

    tum = gt_dir / "trajectory.tum"
    if len(run.odometry_poses) < 3 or not tum.is_file():
        return None
    ref = _gt_trajectory(tum)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.plot(ref.positions[:, 0], ref.positions[:, 1], "k-", lw=2, label="ground truth")
    A_map = np.eye(4)  # the map-frame alignment, applied to the loop-closure markers (map frame) too
    for name, t, T, style in (
        ("odometry (odom)", run.odometry_stamps_ns, run.odometry_poses, "C0-"),
        ("pose graph (map)", run.path_stamps_ns, run.path_poses, "C1--"),
    ):
        if len(T) < 3:
            continue
        ia, ib = associate(t, ref.stamps_ns, 0.01)
        A = align_se3(T[ia], ref.poses[ib]) if len(ia) >= 3 else np.eye(4)
        if T is run.path_poses:
            A_map = A
        P = np.einsum("ij,njk->nik", A, T)[:, :3, 3]
        ax.plot(P[:, 0], P[:, 1], style, label=name)
    for a, b in run.loop_closures:
        a, b = A_map[:3, :3] @ a + A_map[:3, 3], A_map[:3, :3] @ b + A_map[:3, 3]
        ax.plot([a[0], b[0]], [a[1], b[1]], "r-", lw=1.5)
    if len(run.loop_closures):
        ax.plot([], [], "r-", label=f"loop closures ({len(run.loop_closures)})")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_latencies(run: RecordedRun) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {n: run.latencies_ms.get(t, np.zeros(0)) for n, (t, _) in NODE_IO.items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for ax, (name, ms) in zip(axes[0], series.items()):
        ax.hist(ms, bins=30, color="C0")
        ax.axvline(np.percentile(ms, 95), color="C3", ls="--", label="p95")
        ax.set_title(name)
        ax.set_xlabel("latency in bag time (ms)")
        ax.legend()
    return _png(fig)


def sample_frames(run: RecordedRun, bag: Path | None, count: int = 3) -> list[str]:
    """A few camera frames with the detections and segments that the nodes published for them."""
    if bag is None or not bag.exists() or (not run.detections and not run.lines):
        return []
    import cv2

    from lkd_perception.io.bag import read_images

    det_by = {f.stamp_ns: f for f in run.detections}
    line_by = {f.stamp_ns: f for f in run.lines}
    stamps = sorted(set(det_by) | set(line_by))
    if not stamps:
        return []
    wanted = {stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(count, len(stamps)))}
    out = []
    for stamp_ns, rgb in read_images(bag, topics.IMAGE.path):
        if stamp_ns not in wanted:
            continue
        img = np.ascontiguousarray(rgb.copy())
        if stamp_ns in line_by:
            for x1, y1, x2, y2 in line_by[stamp_ns].segments:
                cv2.line(
                    img,
                    (int(round(x1)), int(round(y1))),
                    (int(round(x2)), int(round(y2))),
                    (0, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
        if stamp_ns in det_by:
            f = det_by[stamp_ns]
            for (x1, y1, x2, y2), s, name in zip(f.boxes_xyxy, f.scores, f.class_names):
                cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (255, 0, 0), 2)
                cv2.putText(
                    img,
                    f"{name} {s:.2f}",
                    (int(x1), max(10, int(y1) - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.4,
                    (255, 0, 0),
                    1,
                    cv2.LINE_AA,
                )
        ok, buf = cv2.imencode(".png", img[..., ::-1])
        if ok:
            out.append(base64.b64encode(buf.tobytes()).decode("ascii"))
        if len(out) == len(wanted):
            break
    return out


def _table(metrics: dict[str, Any]) -> str:
    rows = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, float):
            rows.append((prefix, f"{v:.4g}"))
        else:
            rows.append((prefix, str(v)))

    walk("", metrics)
    return "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)


def write_report(
    metrics: dict[str, Any], run: RecordedRun, gt_dir: str | Path, bag: str | Path | None, out_dir: str | Path
) -> Path:
    """Write ``report.html`` and ``metrics.json`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lkd_perception run report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}td{padding:2px 8px;"
        "border-bottom:1px solid #ddd;font-family:monospace}img{max-width:100%}</style></head><body>",
        "<h1>lkd_perception run report</h1>",
    ]
    traj = plot_trajectories(run, Path(gt_dir))
    if traj:
        parts.append(f"<h2>Trajectory</h2><img src='data:image/png;base64,{traj}'>")
    frames = sample_frames(run, Path(bag) if bag else None)
    if frames:
        parts.append("<h2>Sample frames</h2>" + "".join(f"<img src='data:image/png;base64,{f}'>" for f in frames))
    lat = plot_latencies(run)
    if lat:
        parts.append(f"<h2>Latency</h2><img src='data:image/png;base64,{lat}'>")
    parts.append(f"<h2>Metrics</h2><table>{_table(_jsonable(metrics))}</table></body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
