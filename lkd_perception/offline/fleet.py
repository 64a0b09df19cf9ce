"""``lkd evaluate fleet``: every bag through ``lkd run`` + ``lkd evaluate all``, one Ray task per bag.

Ray does the scheduling: a local instance by default (``workers`` CPUs), or an existing cluster
by address. Each task asks for ``cpus_per_task`` CPUs (and ``gpus_per_task`` GPUs when given),
reads its bag and writes ``OUT/bags/<name>/`` (outputs.mcap, run.json, report/, row.json); on a
cluster, bags and OUT must be on a filesystem every node sees. A bag that fails (unreadable,
or a worker that dies) becomes a failed row with its error and the other bags go on.

A rerun skips a bag whose ``row.json`` carries the same signature: the software (package
version + a hash of its source and of the model files the config names), the parameter file's
text, the capabilities, the bag (path, size, modification time) and its ground truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lkd_perception import __version__
from lkd_perception.common.errors import InputError

BAG_SUFFIXES = (".mcap", ".db3")
GT_FILES = ("trajectory.tum", "detections.json", "lines.json")


@dataclass(frozen=True)
class BagJob:
    """One bag to evaluate: where it is, its name in the report, its ground truth and output folder."""

    name: str
    bag: str
    gt: str | None
    out: str
    signature: str


def find_bags(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(name, path) of every bag under ``paths``: ``.mcap`` / ``.db3`` files and rosbag2 folders
    (with ``metadata.yaml``), searched recursively in folders; our own output folders (``lkd run``'s,
    a fleet's) are not bags. The name is the path from the given folder's parent with ``__`` for
    ``/`` (``drives/a/drive.mcap`` given as ``drives`` -> ``drives__a__drive``; a file given alone:
    its folder and name), made unique across the fleet."""
    from lkd_perception.offline.runner import OUTPUTS_FILE, SUMMARY_FILE

    def name_of(path: Path, base: Path) -> str:
        rel = path.relative_to(base)
        return "__".join((rel.with_suffix("") if path.is_file() else rel).parts)

    found: list[tuple[str, Path]] = []
    for arg in paths:
        root = Path(arg).resolve()
        if not root.exists():
            raise InputError(f"bag or folder not found: {arg}")
        if root.is_file() or (root / "metadata.yaml").is_file():
            found.append((name_of(root, root.parent.parent if root.parent != root.parent.parent else root.parent),
                          root))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            dirnames.sort()
            if "fleet.json" in filenames or (SUMMARY_FILE in filenames and OUTPUTS_FILE in filenames):
                dirnames[:] = []  # a fleet's or a run's output, not input
                continue
            if (d / "metadata.yaml").is_file() and d != root:
                found.append((name_of(d, root.parent), d))
                dirnames[:] = []
                continue
            found += [(name_of(d / f, root.parent), d / f) for f in sorted(filenames) if f.endswith(BAG_SUFFIXES)]
    seen: dict[str, int] = {}
    out = []
    for name, path in found:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}_{seen[name]}", path))
    if not out:
        raise InputError(f"no bags (*.mcap, *.db3, rosbag2 folders) under {[str(p) for p in paths]}")
    return out


def find_gt(bag: Path, name: str, gt_root: str | Path | None) -> Path | None:
    """The ground-truth folder of a bag: ``GT_ROOT/<name>[/gt]`` or ``GT_ROOT/<bag folder name>[/gt]``
    with ``--gt-root``, else ``gt/`` beside the bag (the layout of ``lkd simulate``); None if absent."""
    def has_gt(d: Path) -> bool:
        return d.is_dir() and any((d / f).is_file() for f in GT_FILES)

    if gt_root is not None:
        r = Path(gt_root)
        candidates = [r / name, r / name / "gt", r / bag.parent.name, r / bag.parent.name / "gt"]
    else:
        candidates = [bag.parent / "gt"]
    return next((c for c in candidates if has_gt(c)), None)


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def software_version(config_text: str) -> str:
    """The package version plus a hash of its Python source and of the model files the parameter
    file names: two runs with the same string ran the same code on the same weights."""
    from lkd_perception.common.paths import resolve_model_path

    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1]
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    for token in sorted(set(config_text.split())):
        if token.endswith(".onnx"):
            try:
                model = resolve_model_path(token)
            except Exception:  # noqa: BLE001 - a model that is not there fails in the task, with its error
                continue
            h.update(token.encode())
            h.update(_file_sha(Path(model)).encode())
    return f"{__version__}+{h.hexdigest()[:12]}"


def signature(software: str, config_text: str, capabilities: str, bag: Path, gt: Path | None) -> str:
    st = bag.stat()
    gt_files = sorted((str(p.relative_to(gt)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in gt.rglob("*") if p.is_file()) if gt else []
    blob = json.dumps([software, config_text, capabilities, str(bag.resolve()), st.st_size, st.st_mtime_ns,
                       str(gt.resolve()) if gt else None, gt_files])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_bag(job: BagJob, capabilities: str, config: str) -> dict[str, Any]:
    """One Ray task: ``lkd run`` then ``lkd evaluate all`` on one bag; returns its row (failed
    rows carry the error). Writes everything under ``job.out``."""
    from lkd_perception.cli import one_line

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        row = _evaluate(job, capabilities, config, out)
    except Exception as exc:  # noqa: BLE001 - one bad bag is a row of the report, not the end of the fleet
        (out / "error.txt").write_text(traceback.format_exc())
        from lkd_perception.eval.fleet import failed_row

        row = failed_row(job.name, f"{type(exc).__name__}: {one_line(str(exc))}")
    row["signature"] = job.signature
    (out / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _evaluate(job: BagJob, capabilities: str, config: str, out: Path) -> dict[str, Any]:
    from lkd_perception.eval.fleet import bag_row
    from lkd_perception.eval.outputs import read_recorded_run
    from lkd_perception.eval.report import evaluate_run, node_metrics, write_report
    from lkd_perception.io.bag import bag_info
    from lkd_perception.offline.runner import run_bag

    result = run_bag(job.bag, out, capabilities=capabilities, config=config)
    run = read_recorded_run(result.outputs)
    input_counts = {t.name: t.count for t in bag_info(job.bag).topics}
    if job.gt:
        metrics = evaluate_run(run, job.gt, input_counts)
        metrics["has_gt"] = True
    else:  # what needs no ground truth: the node entries of evaluate_run
        metrics = {"has_gt": False, "nodes": node_metrics(run, input_counts)}
    report = write_report(metrics, run, job.gt or out / "no_ground_truth", job.bag, out / "report")
    row = bag_row(job.name, result.to_dict(), run, metrics)
    row["report"] = str(report.relative_to(out.parent.parent))
    return row


@dataclass(frozen=True)
class FleetResult:
    rows: list[dict[str, Any]]
    skipped: list[str]  # bags not re-evaluated (same signature as before)
    wall_s: float
    software: str


def run_fleet(
    bags: Sequence[str | Path],
    out_dir: str | Path,
    capabilities: str = "all",
    config: str | Path | None = None,
    gt_root: str | Path | None = None,
    workers: int | None = None,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> FleetResult:
    """Evaluate every bag on Ray (see the module docstring); rows in the order of ``find_bags``."""
    import ray

    from lkd_perception.nodes.graph import default_config_path

    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    config_path = Path(config).resolve() if config else default_config_path()
    config_text = config_path.read_text() if config_path.is_file() else ""
    if not config_text:
        raise InputError(f"config file not found: {config_path}")
    software = software_version(config_text)
    jobs: list[BagJob] = []
    for name, bag in find_bags(bags):
        gt = find_gt(bag, name, gt_root)
        jobs.append(BagJob(name, str(bag.resolve()), str(gt.resolve()) if gt else None, str(out / "bags" / name),
                           signature(software, config_text, capabilities, bag, gt)))
    from lkd_perception.eval.fleet import is_ok

    rows: dict[str, dict[str, Any]] = {}
    skipped = []
    for j in jobs:
        done = Path(j.out) / "row.json"
        if not force and done.is_file():
            row = json.loads(done.read_text())
            if row.get("signature") == j.signature and is_ok(row):
                rows[j.name] = row
                skipped.append(j.name)
    todo = [j for j in jobs if j.name not in rows]
    if on_progress:
        on_progress(len(rows), len(jobs))
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(round((workers or os.cpu_count() or 1) * cpus_per_task))),
                         include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(evaluate_bag)
            limit = workers or len(todo)  # with a cluster, at most --workers bags in flight
            pending: dict[Any, BagJob] = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < limit:
                    j = queue.pop(0)
                    pending[task.remote(j, capabilities, str(config_path))] = j
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    j = pending.pop(ref)
                    try:
                        rows[j.name] = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the worker died (OOM, crash): the bag failed
                        from lkd_perception.eval.fleet import failed_row

                        rows[j.name] = failed_row(j.name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                    if on_progress:
                        on_progress(len(rows), len(jobs))
        finally:
            if started_here:
                ray.shutdown()
    return FleetResult([rows[j.name] for j in jobs], skipped, time.perf_counter() - t0, software)
