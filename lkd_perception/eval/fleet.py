"""The fleet report: one row per bag, the fleet summary, the worst bags first, and A/B comparison.

A row holds what one bag's offline run and evaluation gave: with ground truth the standard
metrics (detection mAP, line sAP/F^H, APE and drift), and always what needs none (detections
and segments per frame, loop closures, odometry health and degraded spans, processed fraction,
latency, real-time factor). Columns are declared once in :data:`COLUMNS` with the direction in
which they are better and the change that counts as a real move, which the summary, the
"worst first" order and the A/B comparison all use.

Result columns are deterministic for a given software and config; timing columns (real-time
factor, latency) depend on the machine and its load, so "same result table" means the result
columns (:data:`RESULT_COLUMNS`).
"""

from __future__ import annotations

import enum
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lkd_perception.eval.outputs import RecordedRun


class BagStatus(enum.Enum):
    """Whether a bag's run and evaluation gave a row of figures; the value is the row's ``status``
    (rows travel as JSON)."""

    OK = "ok"
    FAILED = "failed"


def is_ok(row: Mapping[str, Any]) -> bool:
    """Whether a row (fresh or read back from JSON) holds figures."""
    return row.get("status") == BagStatus.OK.value


@dataclass(frozen=True)
class Column:
    """One metric of the per-bag table."""

    key: str
    label: str
    better: str  # "higher", "lower" or "" (descriptive: no direction)
    abs_tol: float  # a change smaller than this is noise
    rel_tol: float  # ... or smaller than this fraction of the baseline value
    timing: bool = False  # depends on the machine: excluded from "identical results"
    fmt: str = "{:.3g}"


COLUMNS: tuple[Column, ...] = (
    Column("duration_s", "duration (s)", "", 0.0, 0.0, fmt="{:.1f}"),
    Column("distance_m", "distance (m)", "", 0.5, 0.02, fmt="{:.1f}"),
    Column("frames", "frames", "", 0.0, 0.0, fmt="{:d}"),
    Column("scans", "scans", "", 0.0, 0.0, fmt="{:d}"),
    Column("processed", "processed", "higher", 0.0, 0.0, fmt="{:.0%}"),
    Column("mAP50_95", "det mAP50-95", "higher", 0.01, 0.03),
    Column("mAP50", "det mAP50", "higher", 0.01, 0.03),
    Column("sAP10", "lines sAP10", "higher", 0.5, 0.03),
    Column("FH", "lines F^H", "higher", 0.5, 0.02),
    Column("ape_odom_m", "APE odom (m)", "lower", 0.02, 0.10),
    Column("drift_pct", "drift (%)", "lower", 0.1, 0.10),
    Column("ape_map_m", "APE map (m)", "lower", 0.02, 0.10),
    Column("detections_per_frame", "det/frame", "", 0.1, 0.05),
    Column("segments_per_frame", "segments/frame", "", 0.5, 0.05),
    Column("loop_closures", "loops", "", 0.0, 0.0, fmt="{:d}"),
    Column("degraded_scans", "degraded scans", "lower", 0.0, 0.0, fmt="{:d}"),
    Column("problems", "warnings+errors", "lower", 0.0, 0.0, fmt="{:d}"),
    Column("latency_p95_ms", "latency p95 (ms)", "lower", 5.0, 0.25, timing=True, fmt="{:.0f}"),
    Column("realtime_factor", "x real time", "higher", 0.0, 0.25, timing=True, fmt="{:.2f}"),
)
BY_KEY = {c.key: c for c in COLUMNS}
RESULT_COLUMNS: tuple[str, ...] = tuple(c.key for c in COLUMNS if not c.timing)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x)) else None


def degraded_spans(stamps_s: Sequence[float], gap_s: float = 1.0) -> list[tuple[float, float]]:
    """Degraded scans joined into spans (start, end in s) where they are less than ``gap_s`` apart."""
    spans: list[list[float]] = []
    for t in sorted(stamps_s):
        if spans and t - spans[-1][1] <= gap_s:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return [(a, b) for a, b in spans]


def bag_row(name: str, run_summary: Mapping[str, Any], run: RecordedRun, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One table row from a bag's ``run.json``, its recording and its ``lkd evaluate all`` metrics."""
    tasks = run_summary.get("tasks", {})
    poses = run.odometry_poses
    distance = float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum()) if len(poses) > 1 else None
    fractions = [t["outputs"] / t["inputs"] for t in tasks.values() if t.get("inputs")]
    rtf = [t["realtime_factor"] for t in tasks.values() if t.get("realtime_factor")]
    lat = [t["latency_p95_ms"] for t in tasks.values() if t.get("latency_p95_ms") is not None]
    start = min([t for t in (run.odometry_stamps_ns[:1].tolist() + [f.stamp_ns for f in run.detections[:1]]
                             + [f.stamp_ns for f in run.lines[:1]])], default=0) * 1e-9
    spans = degraded_spans([s for s, _ in run_summary.get("degraded_scans", ())])
    row: dict[str, Any] = {
        "bag": name, "status": BagStatus.OK.value, "duration_s": run_summary.get("bag_duration_s"),
        "distance_m": distance,
        "frames": max(tasks.get("detector_node", {}).get("inputs", 0), tasks.get("line_node", {}).get("inputs", 0)),
        "scans": tasks.get("lidar_odometry_node", {}).get("inputs", 0),
        "processed": min(fractions) if fractions else None,
        "detections_per_frame": (float(np.mean([len(f.scores) for f in run.detections])) if run.detections else None),
        "segments_per_frame": float(np.mean([len(f.scores) for f in run.lines])) if run.lines else None,
        "loop_closures": int(len(run.loop_closures)) if len(run.odometry_poses) else None,
        "degraded_scans": len(run_summary.get("degraded_scans", ())) if "lidar_odometry_node" in tasks else None,
        "degraded_spans": [(round(a - start, 2), round(b - start, 2)) for a, b in spans],
        "problems": sum(t.get("warnings", 0) + t.get("errors", 0) for t in tasks.values()),
        "latency_p95_ms": max(lat) if lat else None,
        "realtime_factor": min(rtf) if rtf else None,
        "realtime_factors": {n: t.get("realtime_factor") for n, t in tasks.items()},
        "skipped_capabilities": dict(run_summary.get("skipped", {})),
    }
    d, ln, odo = metrics.get("detection", {}), metrics.get("lines", {}), metrics.get("odometry", {})
    row["has_gt"] = bool(metrics.get("has_gt"))
    row["mAP50_95"], row["mAP50"] = _num(d.get("mAP50-95")), _num(d.get("mAP50"))
    row["sAP10"], row["FH"] = _num(ln.get("sAP10")), _num(ln.get("FH"))
    o = odo.get("odom") or {}
    row["ape_odom_m"] = _num((o.get("ape_translation_m") or {}).get("rmse"))
    row["drift_pct"] = _num((o.get("drift") or {}).get("translation_pct"))
    row["ape_map_m"] = _num(((odo.get("map") or {}).get("ape_translation_m") or {}).get("rmse"))
    return row


def failed_row(name: str, error: str) -> dict[str, Any]:
    return {"bag": name, "status": BagStatus.FAILED.value, "error": error}


def _badness(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per row, the mean over directed columns of how far it is on the bad side of the fleet
    (in fleet standard deviations); failed bags first of all."""
    score = np.zeros(len(rows))
    count = np.zeros(len(rows))
    for c in COLUMNS:
        if not c.better or c.timing:
            continue
        vals = np.array([_num(r.get(c.key)) if is_ok(r) and _num(r.get(c.key)) is not None
                         else np.nan for r in rows], float)
        ok = np.isfinite(vals)
        if ok.sum() < 1:
            continue
        sd = np.nanstd(vals)
        z = (vals - np.nanmean(vals)) / (sd if sd > 1e-12 else 1.0)
        z = -z if c.better == "higher" else z
        score[ok] += z[ok]
        count[ok] += 1
    out = np.where(count > 0, score / np.maximum(count, 1), 0.0)
    return [float(s) if is_ok(r) else math.inf for r, s in zip(rows, out)]


def worst_first(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows ordered worst first (failed bags, then the most below the fleet on directed metrics)."""
    bad = _badness(rows)
    return [r for _, _, r in sorted(zip(bad, range(len(rows)), rows), key=lambda t: (-t[0], t[1]))]


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fleet totals (bags, hours, km) and per column the mean, median, min and max over scored bags."""
    ok = [r for r in rows if is_ok(r)]
    out: dict[str, Any] = {
        "bags": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
        "failed_bags": {r["bag"]: r.get("error", "") for r in rows if not is_ok(r)},
        "hours": sum(_num(r.get("duration_s")) or 0.0 for r in ok) / 3600.0,
        "km": sum(_num(r.get("distance_m")) or 0.0 for r in ok) / 1000.0,
        "with_ground_truth": sum(1 for r in ok if r.get("has_gt")),
        "metrics": {},
    }
    for c in COLUMNS:
        vals = [v for r in ok if (v := _num(r.get(c.key))) is not None]
        if vals:
            out["metrics"][c.key] = {"mean": float(np.mean(vals)), "median": float(np.median(vals)),
                                     "min": float(np.min(vals)), "max": float(np.max(vals)), "bags": len(vals)}
    return out


def result_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The machine-independent part of the rows, sorted by bag: equal for equal software, config and bags."""
    return sorted(({"bag": r["bag"], "status": r.get("status"), **{k: r.get(k) for k in RESULT_COLUMNS}}
                   for r in rows), key=lambda r: r["bag"])


def compare(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Software A (baseline) against B on the bags both evaluated: per bag and directed metric,
    whether it regressed or improved beyond its noise (``abs_tol`` and ``rel_tol``), and per metric
    on how many bags. Bags that failed in only one run are listed too."""
    a_by, b_by = {r["bag"]: r for r in rows_a}, {r["bag"]: r for r in rows_b}
    changes: list[dict[str, Any]] = []
    status_changes = []
    for bag in sorted(set(a_by) & set(b_by)):
        ra, rb = a_by[bag], b_by[bag]
        if ra.get("status") != rb.get("status"):
            status_changes.append({"bag": bag, "a": ra.get("status"), "b": rb.get("status"),
                                   "error": rb.get("error") or ra.get("error", "")})
            continue
        if not is_ok(ra):
            continue
        for c in COLUMNS:
            if not c.better:
                continue
            va, vb = _num(ra.get(c.key)), _num(rb.get(c.key))
            if va is None or vb is None:
                continue
            delta = vb - va
            if abs(delta) <= max(c.abs_tol, c.rel_tol * abs(va)):
                continue
            worse = delta < 0 if c.better == "higher" else delta > 0
            changes.append({"bag": bag, "metric": c.key, "a": va, "b": vb, "delta": delta,
                            "verdict": "regressed" if worse else "improved", "timing": c.timing})
    per_metric: dict[str, dict[str, list[str]]] = {}
    for ch in changes:
        per_metric.setdefault(ch["metric"], {"regressed": [], "improved": []})[ch["verdict"]].append(ch["bag"])
    return {
        "bags_compared": len(set(a_by) & set(b_by)), "only_in_a": sorted(set(a_by) - set(b_by)),
        "only_in_b": sorted(set(b_by) - set(a_by)), "status_changes": status_changes,
        "changes": changes, "per_metric": per_metric,
        "regressions": [ch for ch in changes if ch["verdict"] == "regressed" and not ch["timing"]],
    }


# -- rendering --------------------------------------------------------------------------------
def _cell(c: Column, v: Any) -> str:
    if v is None:
        return "-"
    try:
        return c.fmt.format(int(v) if c.fmt == "{:d}" else v)
    except (TypeError, ValueError):
        return str(v)


def text_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("duration_s", "distance_m", "frames",
               "processed", "mAP50_95", "sAP10", "ape_odom_m", "drift_pct", "detections_per_frame",
               "segments_per_frame", "loop_closures", "degraded_scans", "latency_p95_ms", "realtime_factor")) -> str:
    """Fixed-width table for the terminal, rows as given."""
    head = ["bag", "status"] + [BY_KEY[k].label for k in keys]
    body = [[str(r["bag"]), str(r.get("status"))] + ([_cell(BY_KEY[k], r.get(k)) for k in keys]
            if is_ok(r) else [str(r.get("error", ""))[:60]]) for r in rows]
    widths = [max(len(x[i]) for x in [head] + [b for b in body if len(b) > i]) for i in range(len(head))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head] + body)


_STYLE = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;"
          "border-bottom:1px solid #ddd;font-family:monospace;text-align:right}td:first-child{text-align:left}"
          ".failed{color:#b00}.regressed{color:#b00}.improved{color:#070}</style>")


def write_fleet_html(path: str | Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                     meta: Mapping[str, Any], comparison: Mapping[str, Any] | None = None) -> Path:
    """``fleet.html``: summary, the bags worst first (each linked to its own report), failures,
    and the comparison with a baseline fleet run when given."""
    esc = html.escape
    p = Path(path)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lkd fleet report</title>{_STYLE}</head><body>",
             "<h1>lkd_perception fleet report</h1>",
             f"<p>software {esc(str(meta.get('software', '')))}, config {esc(str(meta.get('config', '')))}, "
             f"capabilities {esc(str(meta.get('capabilities', '')))}</p>",
             f"<h2>Fleet</h2><p>{summary['bags']} bags: {summary['ok']} scored, {summary['failed']} failed; "
             f"{summary['hours']:.2f} h, {summary['km']:.2f} km; {summary['with_ground_truth']} with ground truth</p>"]
    parts.append("<table><tr><th>metric</th><th>mean</th><th>median</th><th>min</th><th>max</th><th>bags</th></tr>")
    for key, m in summary["metrics"].items():
        c = BY_KEY[key]
        parts.append(f"<tr><td>{esc(c.label)}</td>" + "".join(f"<td>{m[s]:.4g}</td>" for s in
                                                                ("mean", "median", "min",
                                                                 "max")) + f"<td>{m['bags']}</td></tr>")
    parts.append(
        "</table><h2>Bags, worst first</h2><table><tr><th>bag</th><th>status</th>"
        + "".join(f"<th>{esc(c.label)}</th>" for c in COLUMNS)
        + "<th>degraded spans (s)</th></tr>"
    )
    for r in worst_first(rows):
        link = r.get("report")
        name = f"<a href='{esc(str(link))}'>{esc(r['bag'])}</a>" if link else esc(r["bag"])
        if not is_ok(r):
            parts.append(
                f"<tr class='failed'><td>{name}</td><td>failed</td><td colspan='{len(COLUMNS) + 1}' "
                f"style='text-align:left'>{esc(str(r.get('error', '')))}</td></tr>"
            )
            continue
        spans = ", ".join(f"{a:g}-{b:g}" for a, b in r.get("degraded_spans") or [])
        parts.append(
            f"<tr><td>{name}</td><td>ok</td>"
            + "".join(f"<td>{esc(_cell(c, r.get(c.key)))}</td>" for c in COLUMNS)
            + f"<td>{esc(spans)}</td></tr>"
        )
    parts.append("</table>")
    if comparison is not None:
        parts.append(comparison_html(comparison))
    parts.append("</body></html>")
    p.write_text("\n".join(parts))
    return p


def comparison_html(cmp: Mapping[str, Any]) -> str:
    esc = html.escape
    parts = [f"<h2>Comparison with the baseline (A) on {cmp['bags_compared']} bags</h2>"]
    if cmp["per_metric"]:
        parts.append("<table><tr><th>metric</th><th>regressed on</th><th>improved on</th></tr>")
        for key, v in cmp["per_metric"].items():
            parts.append(
                f"<tr><td>{esc(BY_KEY[key].label)}</td><td class='regressed'>{esc(', '.join(v['regressed']))}"
                f"</td><td class='improved'>{esc(', '.join(v['improved']))}</td></tr>"
            )
        parts.append("</table><table><tr><th>bag</th><th>metric</th><th>A</th><th>B</th><th>change</th></tr>")
        for ch in cmp["changes"]:
            parts.append(
                f"<tr class='{ch['verdict']}'><td>{esc(ch['bag'])}</td><td>{esc(BY_KEY[ch['metric']].label)}"
                f"</td><td>{ch['a']:.4g}</td><td>{ch['b']:.4g}</td><td>{ch['delta']:+.4g}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No metric moved beyond its noise on any bag.</p>")
    for s in cmp["status_changes"]:
        parts.append(
            f"<p class='failed'>{esc(s['bag'])}: {esc(str(s['a']))} -> {esc(str(s['b']))} {esc(str(s['error']))}</p>"
        )
    return "\n".join(parts)


def comparison_text(cmp: Mapping[str, Any]) -> str:
    lines = [f"compared {cmp['bags_compared']} bags"]
    for key, v in cmp["per_metric"].items():
        if v["regressed"]:
            lines.append(f"  {BY_KEY[key].label}: regressed on {', '.join(v['regressed'])}")
        if v["improved"]:
            lines.append(f"  {BY_KEY[key].label}: improved on {', '.join(v['improved'])}")
    for s in cmp["status_changes"]:
        lines.append(f"  {s['bag']}: {s['a']} -> {s['b']}")
    return "\n".join(lines)


def load_fleet(path: str | Path) -> dict[str, Any]:
    """A fleet run's ``fleet.json`` (given the file or the fleet output folder)."""
    from lkd_perception.common.errors import InputError

    p = Path(path)
    p = p / "fleet.json" if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"no fleet result at {p} (run `lkd evaluate fleet ... --out DIR` first)")
    return json.loads(p.read_text())
