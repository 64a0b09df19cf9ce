"""``lkd bench soak``: a long simulated drive replayed through every node, measuring whether the
nodes keep up, whether their memory stays flat, and whether killing one node mid-replay leaves
the others running and a restarted node resumes.

Malformed-input robustness (fuzzed images and clouds, wrong encodings, time jumps) is checked
by the test suite (test/nodes/test_node_fuzz.py) on the same nodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lkd_perception.commands import Command, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=600.0, help="length of the simulated drive (default 600)")
    p.add_argument("--scenario", default="urban", help="simulated scenario (default urban)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=1.0, help="replay speed (default 1.0: real time)")
    p.add_argument("--kill", default="line_node", help="node killed at 40%% of the replay and restarted at 55%%"
                                                        " ('' to keep all running)")
    p.add_argument("--sensor-qos", default=None, choices=("reliable", "best_effort"),
                   help="override the nodes' sensor subscription reliability (default: as in the parameter "
                        "file, best_effort as shipped)")
    p.add_argument("--workdir", default="out/soak", help="folder for the drive and the recording")
    p.add_argument("--reuse-drive", action="store_true", help="reuse WORKDIR/drive.mcap if it exists")
    p.add_argument("--config", default=None,
                   help="parameter file of the nodes (default config/simulation.yaml: the models made for the "
                        "simulated drive the soak replays; config/vehicle.yaml measures the real-camera models)")
    p.add_argument("--out", default=None, help="write the JSON result here (default stdout)")


def _growth_pct(samples: list[tuple[float, float]], warmup_frac: float = 0.2) -> float | None:
    """RSS growth after warm-up: mean of the last quarter vs the first quarter, in percent."""
    vals = [v for _, v in samples]
    vals = vals[int(len(vals) * warmup_frac):]
    if len(vals) < 8:
        return None
    q = max(1, len(vals) // 4)
    first, last = sum(vals[:q]) / q, sum(vals[-q:]) / q
    return 100.0 * (last - first) / first


def _series(samples: list[tuple[float, dict[str, float]]], part: str) -> list[tuple[float, float]]:
    """(fraction, MiB) of one part of the memory samples; ``own`` = anonymous + file-backed, the
    process's own memory without the shared-memory pages it maps."""
    if part == "own":
        return [(f, m.get("anon", 0.0) + m.get("file", 0.0)) for f, m in samples]
    return [(f, m.get(part, 0.0)) for f, m in samples]


def _start_end(samples: list[tuple[float, float]]) -> list[float] | None:
    return [round(samples[0][1], 1), round(samples[-1][1], 1)] if samples else None


def _cpu_cores_by_fifth(samples: list[tuple[float, float, float]]) -> list[float | None]:
    """Mean CPU use (cores) of a process in each fifth of the replay, from (fraction, wall, cpu)
    samples; a restart (CPU time going down) or a fifth without samples contributes nothing."""
    used, wall = [0.0] * 5, [0.0] * 5
    for (f0, w0, c0), (_, w1, c1) in zip(samples, samples[1:]):
        if c1 >= c0 and w1 > w0:
            k = min(4, int(f0 * 5))
            used[k] += c1 - c0
            wall[k] += w1 - w0
    return [round(u / w, 3) if w > 0 else None for u, w in zip(used, wall)]


def _run(args: argparse.Namespace) -> int:
    import shutil

    from lkd_perception.eval.outputs import read_recorded_run
    from lkd_perception.eval.report import evaluate_run
    from lkd_perception.io.bag import bag_info
    from lkd_perception.io.topics import NODE_TOPICS
    from lkd_perception.nodes.graph import default_config_path
    from lkd_perception.nodes.processes import NodeProcesses
    from lkd_perception.nodes.replay import lateness_warning, run_replay
    from lkd_perception.sim.drive import make_config
    from lkd_perception.sim.recording import write_drive

    work = Path(args.workdir).resolve()
    bag = work / "drive.mcap"
    if not (args.reuse_drive and bag.exists()):
        if work.exists():
            shutil.rmtree(work)
        print(f"simulating {args.seconds:.0f} s of '{args.scenario}' -> {work}", file=sys.stderr)
        write_drive(work, make_config(args.scenario, args.seconds, args.seed, camera=True))
    rec = work / "soak_outputs"
    if rec.exists():
        shutil.rmtree(rec)

    nodes = NodeProcesses(
        "all",
        args.config or default_config_path("simulation.yaml"),
        {"sensor_qos_reliability": args.sensor_qos} if args.sensor_qos else {},
    )
    if args.kill and args.kill not in nodes.specs:
        print(f"lkd: --kill must be one of {sorted(nodes.specs)}", file=sys.stderr)
        return 2
    memory: dict[str, list[tuple[float, dict[str, float]]]] = {n: [] for n in nodes.specs}  # frac, MiB by part
    cpu: dict[str, list[tuple[float, float, float]]] = {n: [] for n in [*nodes.specs, "replay"]}  # frac, wall, cpu
    events: dict[str, float] = {}
    state = {"last_sample": 0.0}

    def monitor(p) -> None:
        frac = p.published / max(1, p.total)
        now = time.monotonic()
        if now - state["last_sample"] >= 2.0:
            state["last_sample"] = now
            for name in nodes.specs:
                mem = nodes.memory_mb(name)
                if mem is not None:
                    memory[name].append((frac, mem))
                c = nodes.cpu_s(name)
                if c is not None:
                    cpu[name].append((frac, now, c))
            t = os.times()
            cpu["replay"].append((frac, now, t.user + t.system))  # player and recorder (this process)
        if args.kill and frac >= 0.40 and "kill_frac" not in events:
            nodes.kill(args.kill)
            events["kill_frac"] = frac
        if args.kill and frac >= 0.55 and "restart_frac" not in events:
            nodes.start(args.kill)
            events["restart_frac"] = frac
        print(f"\rsoak {100 * frac:5.1f} %", end="", file=sys.stderr)

    result = run_replay(bag, rate=args.rate, record=rec, launch_nodes=True, nodes=nodes, on_progress=monitor)
    print(file=sys.stderr)
    run = read_recorded_run(rec)
    info = bag_info(bag)
    metrics = evaluate_run(run, work / "gt", {t.name: t.count for t in info.topics})

    per_node = {}
    t0, span = info.start_ns, max(1, info.end_ns - info.start_ns)
    for name in nodes.specs:
        entry = dict(metrics["nodes"].get(name, {"outputs": 0}))
        entry.pop("diagnostics", None)
        # growth is judged up to the kill for the killed node (its restart starts from scratch)
        until = events.get("kill_frac", 1.0) if name == args.kill else float("inf")
        rss, own = _series(memory[name], "rss"), _series(memory[name], "own")
        entry["rss_mb_start_end"] = _start_end(rss)
        entry["rss_growth_after_warmup_pct"] = _growth_pct([s for s in rss if s[0] < until])
        # Flatness is judged on the process's own memory: the shared-memory pages it maps are the
        # DDS transport's buffers (the senders' segments, a fixed size each) filling as they are
        # used, not the node's growth; they are reported beside it.
        growth = _growth_pct([s for s in own if s[0] < until])
        entry["private_mb_start_end"] = _start_end(own)
        entry["private_growth_after_warmup_pct"] = growth
        entry["shmem_mb_start_end"] = _start_end(_series(memory[name], "shmem"))
        entry["memory_flat_within_10pct"] = None if growth is None else abs(growth) <= 10.0
        frac = entry.get("processed_fraction")
        if args.kill and "kill_frac" in events:
            stamps = run.result_stamps(NODE_TOPICS[name].result.path)
            k0 = t0 + events["kill_frac"] * span
            k1 = t0 + events.get("restart_frac", 1.0) * span
            in_window = sum(1 for s in stamps if k0 <= s < k1)
            if name == args.kill:
                after = [s for s in stamps if s >= k1]
                entry["outputs_after_restart"] = len(after)
                entry["resumed_after_restart"] = bool(after)
                # keeping up is judged while the process was up and serving: before the kill and
                # from its first output after the restart (inputs spread evenly over the bag)
                alive_ns = (k0 - t0) + ((t0 + span - after[0]) if after else 0)
                expected = entry.get("inputs", 0) * alive_ns / span
                served = sum(1 for s in stamps if s < k0) + len(after)
                frac = round(served / expected, 4) if expected else None
                entry["processed_fraction_while_up"] = frac
            else:
                entry["outputs_while_other_node_dead"] = in_window
                entry["kept_running_while_other_node_dead"] = in_window > 0
        entry["keeps_up"] = None if frac is None else frac >= 0.9
        entry["cpu_cores_by_fifth"] = _cpu_cores_by_fifth(cpu[name])
        per_node[name] = entry
    if warning := lateness_warning(result):
        print(f"warning: {warning}", file=sys.stderr)
    emit_json(
        {
            "drive": {"scenario": args.scenario, "seconds": args.seconds, "seed": args.seed},
            "rate": args.rate,
            "killed": args.kill or None,
            "sensor_qos_override": args.sensor_qos,
            "events": events,
            "replay_wall_s": result.wall_s,
            "publish_failed": result.publish_failed,
            "player_publish_late_ms": result.publish_late_ms,
            "replay_process_cpu_cores_by_fifth": _cpu_cores_by_fifth(cpu["replay"]),
            "nodes": per_node,
            "accuracy": {k: metrics[k] for k in ("detection", "lines", "odometry")},
        },
        args.out,
    )
    return 0


COMMANDS = [
    Command(
        ("bench", "soak"),
        "long replay through all nodes: keeping up, memory, kill/restart",
        _add,
        _run,
        example="lkd bench soak --seconds 180 --out runs/bench/soak.json",
    )
]
