"""``lkd bench fleet``: how fast ``lkd run`` is against real time, and how the fleet scales with workers.

On simulated drives of different scenarios and seeds (made once, kept in ``WORK/drives``):

* the offline run of each drive, sequentially: the real-time factor per capability (bag
  duration / compute time of that capability) and of the whole run (bag duration / wall time);
* the same bags as a fleet on local Ray with 1 worker, then with ``workers`` workers, each
  from scratch: bags per hour, the ratio, and whether the result tables are identical.

Each task's model runtimes use one thread (``threads: 1`` in a copy of the parameter file), so a
Ray task uses the one CPU it reserves and worker counts compare like for like. The machine's
load average is recorded beside the figures: other processes on the cores show in them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

SCENARIOS = ("loop", "urban", "corridor")


def make_drives(work: Path, bags: int, seconds: float, width: int, height: int, azimuths: int,
                log: Callable[[str], None] = lambda s: None) -> list[Path]:
    """``bags`` simulated drives (scenarios in turn, seed = index), reused when already there."""
    from lkd_perception.sim.drive import make_config
    from lkd_perception.sim.recording import write_drive

    out = []
    for i in range(bags):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        d = work / "drives" / f"{scenario}_s{i}_{int(seconds)}s_{width}x{height}_{azimuths}"
        if not (d / "drive.mcap").is_file():
            shutil.rmtree(d, ignore_errors=True)
            log(f"simulating {d.name}")
            write_drive(d, make_config(scenario, seconds, i, camera=True, camera_width=width, camera_height=height,
                                       lidar_azimuths=azimuths))
        out.append(d)
    return out


def single_thread_config(config: Path, dest: Path) -> Path:
    """A copy of the parameter file with every ``threads:`` setting at 1."""
    text = re.sub(r"(?m)^(\s*threads:\s*)\d+", r"\g<1>1", config.read_text())
    dest.write_text(text)
    return dest


def bench_fleet(work: str | Path, bags: int = 4, seconds: float = 60.0, workers: int = 2, width: int = 640,
                height: int = 480, azimuths: int = 1024, config: str | Path | None = None,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import ray

    from lkd_perception.eval.fleet import is_ok, result_table
    from lkd_perception.nodes.graph import default_config_path
    from lkd_perception.offline.fleet import run_fleet
    from lkd_perception.offline.runner import run_bag

    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    drives = make_drives(work, bags, seconds, width, height, azimuths, log)
    cfg = single_thread_config(Path(config) if config else default_config_path("simulation.yaml"),
                               work / "bench_config.yaml")
    result: dict[str, Any] = {"bags": [d.name for d in drives], "seconds": seconds, "image": [width, height],
                              "lidar_azimuths": azimuths, "config": str(cfg), "cpus": os.cpu_count(), "runs": {}}

    load0 = os.getloadavg()
    per_bag = []
    for d in drives:
        log(f"lkd run {d.name}")
        out = work / "run" / d.name
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        r = run_bag(d / "drive.mcap", out, config=cfg)
        wall = time.perf_counter() - t0
        per_bag.append({"bag": d.name, "duration_s": r.bag_duration_s, "wall_s": round(wall, 2),
                        "realtime_factor": round(r.bag_duration_s / wall, 3),
                        "capabilities": {n: {k: t[k] for k in ("realtime_factor", "cpu_realtime_factor",
                                                                 "ms_per_message", "inputs")}
                                         for n, t in r.tasks.items()}})
    result["lkd_run"] = {"per_bag": per_bag, "loadavg_before": load0, "loadavg_after": os.getloadavg()}

    tables = {}
    for n in (1, workers):
        out = work / f"fleet_{n}"
        shutil.rmtree(out, ignore_errors=True)
        log(f"fleet with {n} worker(s)")
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        try:
            load = os.getloadavg()
            t0 = time.perf_counter()
            f = run_fleet([work / "drives" / d.name for d in drives], out, config=cfg, workers=n)
            wall = time.perf_counter() - t0
        finally:
            ray.shutdown()
        failed = [r["bag"] for r in f.rows if not is_ok(r)]
        tables[n] = result_table(f.rows)
        result["runs"][str(n)] = {
            "workers": n,
            "wall_s": round(wall, 2),
            "bags_per_hour": round(3600 * len(drives) / wall, 2),
            "failed": failed,
            "loadavg_before": load,
            "loadavg_after": os.getloadavg(),
        }
    result["speedup"] = round(result["runs"][str(workers)]["bags_per_hour"] / result["runs"]["1"]["bags_per_hour"], 3)
    result["identical_results"] = tables[1] == tables[workers]
    result["result_table"] = tables[1]
    return result
