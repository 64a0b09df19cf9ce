"""Memory and speed of the odometry over a long simulated drive (``lkd bench odometry-memory``).

An all-day drive must run in bounded memory at an unchanged rate. This streams a simulated drive
(LiDAR and IMU only, no camera, nothing written to disk) through :class:`LioPipeline` with loop
closure on, a few seconds of sensor data at a time, so the simulator's own memory stays bounded
(the IMU comes from :class:`~lkd_perception.sim.sensors.ImuStream`; scans are made when fed).
At the end of every segment (a simulated minute by default) it samples the process's resident
memory, the keyframes and the pose graph's size, and the scans per CPU-second of the pipeline
alone (the simulator's CPU time is not counted). Each ``graph_window`` runs in its own forked
process at the same time on the same (deterministic) drive, so the memory figures are each its
own and are measured side by side. Accuracy against the ground truth comes at the end.

Each sample is taken twice: as the process holds it (``rss_mb``), and after giving glibc's free
heap back to the OS (``rss_trimmed_mb``, what the node holds: it trims every
``heap_trim_period_s``, see :mod:`lkd_perception.common.heap`). Freed memory kept in the
allocator's arenas is not the pipeline's; growth of the trimmed figure is.

The child keeps nothing per scan of its own (the ground truth is evaluated in the parent), so
the memory it reports is the pipeline's.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from lkd_perception.common.errors import InputError


@dataclass(frozen=True)
class LongDriveSettings:
    """What one long-drive measurement runs: the drive, the windows compared, the sampling."""

    scenario: str = "loop"
    minutes: float = 10.0
    seed: int = 0
    graph_windows: tuple[int, ...] = (0, 100)  # keyframe.graph_window values compared (0: unbounded)
    segment_s: float = 60.0  # simulated seconds between samples
    warmup_s: float = 300.0  # growth is measured from the sample at the end of the warm-up
    chunk_s: float = 5.0  # simulated seconds of IMU and scans made at a time

    def check(self) -> None:
        if self.minutes <= 0 or self.segment_s <= 0 or self.chunk_s <= 0 or self.warmup_s < 0:
            raise InputError(f"minutes, segment and chunk seconds must be positive: {self}")
        if self.segment_s > self.minutes * 60:
            raise InputError(f"a segment ({self.segment_s} s) is longer than the drive ({self.minutes} min)")
        if not self.graph_windows or any(w < 0 for w in self.graph_windows):
            raise InputError(f"graph windows must be >= 0 (0: unbounded), got {self.graph_windows}")


def run_long_drive(
    settings: LongDriveSettings, on_segment: Callable[[int, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Per window: the segments (sim time, RSS, keyframes, graph size, scans per CPU-second), the
    summary (RSS growth after warm-up, first vs last segment rate, APE and drift against ground
    truth). ``on_segment(window, segment)`` is called as each segment completes (partial results)."""
    settings.check()
    ctx = mp.get_context("fork")
    conns: dict[Connection, int] = {}
    procs = []
    for window in settings.graph_windows:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_run_window, args=(settings, window, child), daemon=True)
        proc.start()
        child.close()
        conns[parent] = window
        procs.append(proc)
    segments: dict[int, list[dict[str, Any]]] = {w: [] for w in settings.graph_windows}
    finals: dict[int, dict[str, Any]] = {}
    while conns:
        for conn in wait(list(conns)):
            window = conns[conn]
            try:
                kind, payload = conn.recv()
            except EOFError:
                del conns[conn]
                finals.setdefault(window, {"error": "the run ended without a result"})
                continue
            if kind == "segment":
                segments[window].append(payload)
                if on_segment is not None:
                    on_segment(window, payload)
            else:
                finals[window] = payload
                del conns[conn]
    for proc in procs:
        proc.join()
    runs = []
    for window in settings.graph_windows:
        final = finals[window]
        if "stamps" in final:
            stamps, poses = final.pop("stamps"), final.pop("poses")
            final = {**final, **_accuracy(settings, stamps, poses)}
        runs.append({"graph_window": window, "summary": {**_summary(settings, segments[window]), **final},
                     "segments": segments[window]})
    return {"settings": asdict(settings), "runs": runs}


def _summary(settings: LongDriveSettings, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth from the end of the warm-up to the last segment (and the most it rose above
    it), and the pipeline's scans per CPU-second in the first and last segments."""
    if not segments:
        return {}
    warm = [s for s in segments if s["sim_s"] >= settings.warmup_s - 1e-6]
    out: dict[str, Any] = {"segments": len(segments)}
    for key, name in (("rss_mb", "rss"), ("rss_trimmed_mb", "rss_trimmed")):
        base = warm[0][key] if warm else None
        after = [s[key] for s in warm]
        out.update({
            f"{name}_at_warmup_mb": base,
            f"{name}_last_mb": segments[-1][key],
            f"{name}_growth_after_warmup_pct": None if base is None else 100.0 * (after[-1] - base) / base,
            f"{name}_max_above_warmup_pct": None if base is None else 100.0 * (max(after) - base) / base,
        })
    out["scans_per_cpu_s_first"] = segments[0]["scans_per_cpu_s"]
    out["scans_per_cpu_s_last"] = segments[-1]["scans_per_cpu_s"]
    return out


def _accuracy(settings: LongDriveSettings, stamps, poses) -> dict[str, Any]:
    """APE, drift and path length of the loop-corrected trajectory against the simulator's."""
    from lkd_perception.eval.trajectory import Trajectory, evaluate_trajectory
    from lkd_perception.sim.drive import START_NS, DriveSimulator, make_config

    sim = DriveSimulator(make_config(settings.scenario, settings.minutes * 60.0, settings.seed))
    gt = sim.trajectory.poses((stamps - START_NS) * 1e-9)
    m = evaluate_trajectory(Trajectory(stamps, poses), Trajectory(stamps, gt))
    return {
        "gt_length_m": m.gt_length_m,
        "ape_rmse_m": m.ape_translation_m.rmse,
        "ape_max_m": m.ape_translation_m.max,
        "drift_pct": None if m.drift is None else m.drift.translation_pct,
        "drift_deg_per_100m": None if m.drift is None else m.drift.rotation_deg_per_100m,
    }


def _run_window(settings: LongDriveSettings, window: int, conn: Connection) -> None:
    """Child process body: stream the drive through a pipeline with ``graph_window = window``,
    sending a sample at the end of each segment and the trajectory at the end."""
    from dataclasses import replace

    import numpy as np

    from lkd_perception.common.heap import release_free_heap
    from lkd_perception.common.timing import current_rss_mb, peak_rss_mb
    from lkd_perception.odometry.config import OdometryConfig, extrinsic_list
    from lkd_perception.odometry.pipeline import LioPipeline, run_pipeline
    from lkd_perception.sim.drive import START_NS, DriveSimulator, make_config
    from lkd_perception.sim.sensors import ImuStream

    try:
        seconds = settings.minutes * 60.0
        sim = DriveSimulator(make_config(settings.scenario, seconds, settings.seed))
        ext = sim.extrinsics()
        base = OdometryConfig(base_T_lidar=extrinsic_list(ext.T_base_lidar), base_T_imu=extrinsic_list(ext.T_base_imu))
        cfg = replace(base, keyframe=replace(base.keyframe, graph_window=window))
        pipe = LioPipeline(cfg)
        imu = ImuStream(sim.trajectory, sim.rig, sim.cfg, np.random.default_rng([settings.seed, 2]), START_NS)
        scan_times = sim.scan_times()
        sweep = 1.0 / sim.cfg.lidar_rate_hz
        skipped, k = 0, 0
        seg_end = settings.segment_s
        seg_cpu, seg_wall, seg_scans, seg_sim_cpu = 0.0, 0.0, 0, 0.0
        t_chunk = 0.0
        pending = (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)))  # IMU not fed yet
        while k < len(scan_times):
            t_chunk = min(t_chunk + settings.chunk_s, seg_end)
            # scans starting before the chunk's end, with the IMU up to the last one's end
            hi = int(np.searchsorted(scan_times, t_chunk - 1e-9))
            if hi == k:
                hi = k + 1
            c0 = time.process_time()
            scans = [sim.scan(float(t)) for t in scan_times[k:hi]]
            more = imu.until(float(scan_times[hi - 1]) + sweep + 0.05).series
            stamps = np.concatenate([pending[0], more.stamps_ns])
            gyro, accel = np.concatenate([pending[1], more.gyro]), np.concatenate([pending[2], more.accel])
            # run_pipeline feeds the samples up to each scan's end + 10 ms; later ones wait for the next chunk
            last = scans[-1]
            fed = int(np.searchsorted(stamps, last.stamp_ns + int(last.cloud.time.max() * 1e9) + 10_000_000, "right"))
            pending = (stamps[fed:], gyro[fed:], accel[fed:])
            seg_sim_cpu += time.process_time() - c0
            c0, w0 = time.process_time(), time.perf_counter()
            skipped += run_pipeline(pipe, [(s.stamp_ns, s.cloud) for s in scans], stamps[:fed], gyro[:fed],
                                    accel[:fed])
            seg_cpu += time.process_time() - c0
            seg_wall += time.perf_counter() - w0
            seg_scans += hi - k
            k = hi
            del scans
            if t_chunk >= seg_end - 1e-9 or k == len(scan_times):
                graph = pipe.backend.graph
                rss = current_rss_mb()
                release_free_heap()
                conn.send(("segment", {
                    "sim_s": round(float(min(seg_end, seconds)), 3),
                    "scans": seg_scans,
                    "rss_mb": rss,
                    "rss_trimmed_mb": current_rss_mb(),
                    "py_blocks": sys.getallocatedblocks(),
                    "keyframes": len(pipe.backend.keyframes),
                    "graph_variables": graph.live_variables,
                    "graph_factors": graph.graph_factors,
                    "loop_closures": len(pipe.loop_closures),
                    "spilled_keyframe_mb": pipe.backend.keyframes.spilled_bytes / 2**20,
                    "scans_per_cpu_s": seg_scans / max(seg_cpu, 1e-9),
                    "scans_per_s": seg_scans / max(seg_wall, 1e-9),
                    "simulator_cpu_s": seg_sim_cpu,
                }))
                seg_end += settings.segment_s
                seg_cpu, seg_wall, seg_scans, seg_sim_cpu = 0.0, 0.0, 0, 0.0
        peak = peak_rss_mb()
        stamps, poses = pipe.map_trajectory()
        conn.send(("done", {"stamps": stamps, "poses": poses, "scans": len(scan_times), "skipped_scans": skipped,
                            "loop_closures": len(pipe.loop_closures),
                            "rejected_loops": len(pipe.backend.graph.rejected_loops), "peak_rss_mb": peak}))
    except Exception as exc:  # the parent reports it beside the other windows' results
        conn.send(("done", {"error": f"{type(exc).__name__}: {exc}"}))
    finally:
        conn.close()
