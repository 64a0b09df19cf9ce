"""``lkd run``: a bag through the capabilities in one process, without DDS, as fast as the CPU allows.

What runs is what the nodes run: the same core objects (:class:`Detector`, :class:`LineDetector`,
:class:`LioPipeline`) built from the same parameter file with the same rules (``/**`` then the
node's own section), fed the bag's messages in bag order (IMU samples and ``/tf_static`` as the
odometry node receives them), and their results turned into messages by the same functions
(:mod:`lkd_perception.io.messages`). The outputs go to an mcap recording with the nodes' topic
names, so ``lkd evaluate all`` reads it like a recorded replay.

Timing. Each output is logged at the time a node that takes every message in order would have
published it when the bag plays at 1x: ``max(input arrival, previous output) + compute time``,
so ``arrival - header stamp`` in the recording is the latency that node would show, queueing
included. The real-time factor per capability is bag duration / compute time (wall), and
``cpu_realtime_factor`` the same with the process's CPU time, which other jobs sharing the cores
inflate far less (it counts every thread, so it is the cost, not the latency, of a capability).

Bad messages (LkdError from the core) are counted as warnings and the run goes on, as in the
nodes; an unreadable bag is an :class:`InputError`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lkd_perception import __version__
from lkd_perception.common.config import load_yaml, node_parameters
from lkd_perception.common.errors import InputError, LkdError
from lkd_perception.common.frames import TransformTree
from lkd_perception.common.node_io import node_settings
from lkd_perception.common.se3 import make_pose, matrix_from_quat
from lkd_perception.io import messages as M
from lkd_perception.io.bag import RELIABLE_QOS, BagWriter, bag_info, image_topic_in, read_messages, rgb_of, stamp_ns
from lkd_perception.io.codecs import decode_pointcloud2
from lkd_perception.io.topics import (
    DETECTIONS,
    DIAGNOSTICS,
    IMAGE,
    IMU,
    LIDAR,
    LINE_MARKERS,
    LINES,
    RECORDED,
    TF_STATIC,
)
from lkd_perception.nodes.graph import default_config_path, select

IMAGE_TOPIC = IMAGE.path
LIDAR_TOPIC = LIDAR.path
IMU_TOPIC = IMU.path
TF_STATIC_TOPIC = TF_STATIC.path

OUTPUTS_FILE = "outputs.mcap"
SUMMARY_FILE = "run.json"



def config_classes() -> dict[str, type]:
    """Node name -> the config dataclass it declares its parameters from (held to the nodes by a test)."""
    from lkd_perception.detection.config import DetectorConfig
    from lkd_perception.lines.config import LineConfig
    from lkd_perception.odometry.config import OdometryConfig

    return {"detector_node": DetectorConfig, "line_node": LineConfig, "lidar_odometry_node": OdometryConfig}


def node_configs(config_path: str | Path | None, capabilities: str | Sequence[str] = "all") -> dict[str, Any]:
    """Node name -> its config, from the parameter file exactly as the node would get it."""
    path = Path(config_path) if config_path else default_config_path()
    params_file = load_yaml(path)
    classes = config_classes()
    # the node's I/O settings (sensor QoS, diagnostics period, use_sim_time) are not used offline
    return {spec.name: node_settings(classes[spec.name], node_parameters(params_file, spec.name), spec.name, str(path))
            for spec in select(capabilities)}


@dataclass
class TaskStats:
    """What one capability did on the bag."""

    node: str
    task: str
    inputs: int = 0
    outputs: int = 0
    compute_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the process during the callbacks: less sensitive to other jobs on the cores
    warnings: int = 0
    errors: int = 0
    last_problem: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    busy_until_ns: int = 0  # when the simulated 1x node is free again (bag time)

    def summary(self, bag_duration_s: float) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms)
        return {
            "node": self.node, "inputs": self.inputs, "outputs": self.outputs,
            "compute_s": round(self.compute_s, 4),
            "ms_per_message": round(1e3 * self.compute_s / self.inputs, 3) if self.inputs else None,
            "realtime_factor": round(bag_duration_s / self.compute_s, 3) if self.compute_s > 0 else None,
            "cpu_s": round(self.cpu_s, 4),
            "cpu_realtime_factor": round(bag_duration_s / self.cpu_s, 3) if self.cpu_s > 0 else None,
            "warnings": self.warnings, "errors": self.errors, "last_problem": self.last_problem,
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
        }


@dataclass(frozen=True)
class RunResult:
    """The summary of one offline run (also written to ``DIR/run.json``)."""

    bag: str
    outputs: str
    config: str
    version: str
    capabilities: tuple[str, ...]
    skipped: dict[str, str]  # capability -> why it did not run (e.g. its input topic is absent)
    bag_duration_s: float
    load_s: float
    wall_s: float
    tasks: dict[str, dict[str, Any]]
    degraded_scans: tuple[tuple[float, str], ...]  # (stamp s, status) of odometry scans degraded or degenerate
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Recorder:
    """Writes outputs at the simulated 1x publish time of their node (see the module docstring)."""

    def __init__(self, writer: BagWriter) -> None:
        self.writer = writer
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msg: Any, log_ns: int) -> None:
        topic = topic if topic.startswith("/") else "/" + topic
        self.writer.write(topic, RECORDED.get(topic) or msg.__msgtype__, msg, log_ns, RELIABLE_QOS)
        self.counts[topic] = self.counts.get(topic, 0) + 1


def _timed(stats: TaskStats, arrival_ns: int, header_ns: int, fn: Callable[[], Any]) -> tuple[Any, int] | None:
    """Run one callback as the node's ``guarded`` does (a bad message is a warning, a bug an error,
    the run goes on); returns (result, simulated publish time ns) or None when it failed."""
    stats.inputs += 1
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        out = fn()
    except LkdError as exc:
        stats.warnings += 1
        stats.last_problem = str(exc)
        return None
    except Exception as exc:  # noqa: BLE001 - as in the nodes: one message's bug does not end the run
        stats.errors += 1
        stats.last_problem = f"{type(exc).__name__}: {exc}"
        return None
    dt = time.perf_counter() - t0
    stats.compute_s += dt
    stats.cpu_s += time.process_time() - c0
    done_ns = max(arrival_ns, stats.busy_until_ns) + int(dt * 1e9)
    stats.busy_until_ns = done_ns
    stats.latencies_ms.append((done_ns - header_ns) * 1e-6)
    return out, done_ns


def _cloud(msg: Any):
    return decode_pointcloud2(msg.fields, msg.data, msg.point_step, msg.row_step, msg.width, msg.height,
                              msg.is_bigendian, stamp_s=stamp_ns(msg) * 1e-9)


def _diagnostics(make, end_ns: int, stats: Sequence[TaskStats]) -> Any:
    """One final ``/diagnostics`` report per task, in the nodes' format (``node: task``)."""
    status = []
    for s in stats:
        level = 2 if s.errors else 1 if s.warnings else 0
        lat = np.asarray(s.latencies_ms)
        values = {"processed": s.outputs, "latency_mean_ms": round(float(lat.mean()), 3) if lat.size else 0.0,
                  "latency_p95_ms": round(float(np.percentile(lat, 95)), 3) if lat.size else 0.0,
                  "latency_max_ms": round(float(lat.max()), 3) if lat.size else 0.0,
                  "warnings": s.warnings, "errors": s.errors, "last_problem": s.last_problem}
        status.append(make("diagnostic_msgs/msg/DiagnosticStatus", level=level, name=f"{s.node}: {s.task}",
                           message=s.last_problem if level else "ok", hardware_id=f"/{s.node}",
                           values=[make("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k,
                                   v in values.items()]))
    return make(M.DIAGNOSTIC_ARRAY, header=M.header(make, M.time_msg(make, end_ns), ""), status=status)


def run_bag(
    bag: str | Path,
    out_dir: str | Path,
    capabilities: str | Sequence[str] = "all",
    config: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    image_topic: str = IMAGE_TOPIC,
    lidar_topic: str = LIDAR_TOPIC,
    imu_topic: str = IMU_TOPIC,
) -> RunResult:
    """Run the chosen capabilities on every message of ``bag``; write ``out_dir/outputs.mcap`` and ``run.json``.

    The input topics are the nodes' defaults unless given (the bag's names for what a launch
    would remap)."""
    from lkd_perception.detection.runtime import Detector
    from lkd_perception.lines.runtime import LineDetector
    from lkd_perception.odometry.pipeline import LioPipeline

    bag, out = Path(bag), Path(out_dir)
    config_path = Path(config) if config else default_config_path()
    info = bag_info(bag)
    have = {t.name for t in info.topics}
    image_topic = image_topic_in(info, image_topic)  # a recording of compressed frames: <topic>/compressed
    cfgs = node_configs(config_path, capabilities)
    needs = {"detector_node": image_topic, "line_node": image_topic, "lidar_odometry_node": lidar_topic}
    skipped = {n: f"{needs[n]} is not in the bag" for n in cfgs if needs[n] not in have}
    if len(skipped) == len(cfgs):
        raise InputError(
            f"{bag}: none of the inputs of {list(cfgs)} ({sorted(set(needs[n] for n in cfgs))}) is in "
            f"the bag; it has {sorted(have)}"
        )
    t_load = time.perf_counter()
    detector = Detector(cfgs["detector_node"]) if "detector_node" in cfgs and "detector_node" not in skipped else None
    lines = LineDetector(cfgs["line_node"]) if "line_node" in cfgs and "line_node" not in skipped else None
    odo_cfg = cfgs.get("lidar_odometry_node") if "lidar_odometry_node" not in skipped else None
    pipeline = LioPipeline(odo_cfg) if odo_cfg is not None else None
    odo_out = M.OdometryOutputs(odo_cfg) if odo_cfg is not None else None
    load_s = time.perf_counter() - t_load

    stats = {n: TaskStats(n, "scan" if n == "lidar_odometry_node" else "image") for n in cfgs if n not in skipped}
    imu_stats = TaskStats("lidar_odometry_node", "imu")
    cameras = detector is not None or lines is not None
    odometry = pipeline is not None
    topics = [
        t
        for t in (
            image_topic if cameras else None,
            lidar_topic if odometry else None,
            imu_topic if odometry else None,
            TF_STATIC_TOPIC if odometry else None,
        )
        if t and t in have
    ]
    static = TransformTree()  # every /tf_static edge
    imu_frame: str | None = None  # the IMU messages' frame_id, for its mounting from /tf_static
    degraded: list[tuple[float, str]] = []
    make = M.bag_message
    out.mkdir(parents=True, exist_ok=True)
    outputs = out / OUTPUTS_FILE
    if outputs.exists():
        outputs.unlink()  # a rerun replaces its own earlier recording
    t0 = time.perf_counter()
    total = sum(t.count for t in info.topics if t.name in topics)
    done = 0
    with BagWriter(outputs) as writer:
        rec = _Recorder(writer)
        # (no topics at all must read nothing: rosbags reads every connection when given none)
        for topic, log_ns, msg in read_messages(bag, topics) if topics else ():
            done += 1
            if on_progress and done % 50 == 0:
                on_progress(done, total)
            if topic == image_topic:
                hdr_ns, st, fid = stamp_ns(msg), msg.header.stamp, msg.header.frame_id
                try:
                    rgb = rgb_of(msg)
                except LkdError as exc:
                    for s in (stats.get("detector_node"), stats.get("line_node")):
                        if s is not None:
                            s.inputs += 1
                            s.warnings += 1
                            s.last_problem = str(exc)
                    continue
                if detector is not None:
                    r = _timed(
                        stats["detector_node"], log_ns, hdr_ns, lambda: M.detections_msg(make, st, fid, detector(rgb))
                    )
                    if r is not None:
                        rec.write(DETECTIONS.name, r[0], r[1])
                        stats["detector_node"].outputs += 1
                if lines is not None:
                    r = _timed(stats["line_node"], log_ns, hdr_ns, lambda: _line_messages(make, st, fid, lines, rgb))
                    if r is not None:
                        for t, m in r[0]:
                            rec.write(t, m, r[1])
                        stats["line_node"].outputs += 1
            elif topic == imu_topic:
                w, a = msg.angular_velocity, msg.linear_acceleration
                imu_frame = imu_frame or msg.header.frame_id
                try:
                    pipeline.add_imu(stamp_ns(msg), np.array([w.x, w.y, w.z]), np.array([a.x, a.y, a.z]))
                except LkdError as exc:
                    imu_stats.warnings += 1
                    imu_stats.last_problem = str(exc)
                imu_stats.inputs += 1
            elif topic == TF_STATIC_TOPIC:
                for t in msg.transforms:
                    q, p = t.transform.rotation, t.transform.translation
                    static.add(
                        t.header.frame_id,
                        t.child_frame_id,
                        make_pose(matrix_from_quat(np.array([q.x, q.y, q.z, q.w])), [p.x, p.y, p.z]),
                    )
            elif topic == lidar_topic:
                s = stats["lidar_odometry_node"]
                hdr_ns, st, fid = stamp_ns(msg), msg.header.stamp, msg.header.frame_id

                def scan() -> tuple[Any, list[tuple[str, Any]]]:
                    if not pipeline.started:  # as the node: the mountings from /tf_static, through any chain
                        if (T := static.lookup(odo_cfg.base_frame, fid)) is not None:
                            pipeline.set_lidar_extrinsic(T)
                        if imu_frame and (T := static.lookup(odo_cfg.base_frame, imu_frame)) is not None:
                            pipeline.set_imu_extrinsic(T)
                    result = pipeline.add_scan(hdr_ns, _cloud(msg))
                    return result, odo_out.messages(make, pipeline, result, st)

                r = _timed(s, log_ns, hdr_ns, scan)
                if r is None:
                    continue
                (result, msgs), pub_ns = r
                for t, m in msgs:
                    rec.write(t, m, pub_ns)
                s.outputs += 1
                if result.warning:  # the node's warnings
                    s.warnings += 1
                    s.last_problem = result.summary
                    degraded.append((hdr_ns * 1e-9, result.summary))
        end_ns = max([info.end_ns] + [s.busy_until_ns for s in stats.values()])
        report = list(stats.values()) + ([imu_stats] if imu_stats.inputs else [])
        if report:
            rec.write(DIAGNOSTICS.name, _diagnostics(make, end_ns, report), end_ns)
    if on_progress:
        on_progress(total, total)
    result = RunResult(
        bag=str(bag),
        outputs=str(outputs),
        config=str(config_path),
        version=__version__,
        capabilities=tuple(cfgs),
        skipped=skipped,
        bag_duration_s=info.duration_s,
        load_s=round(load_s, 3),
        wall_s=round(time.perf_counter() - t0, 3),
        tasks={n: s.summary(info.duration_s) for n, s in stats.items()},
        degraded_scans=tuple(degraded),
        counts=dict(rec.counts),
    )
    (out / SUMMARY_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _line_messages(make, stamp: Any, frame_id: str, detector: Any, rgb: np.ndarray) -> list[tuple[str, Any]]:
    found = detector.detect(rgb)
    return [
        (LINES.name, M.lines_msg(make, stamp, frame_id, found)),
        (LINE_MARKERS.name, M.line_marker(make, stamp, frame_id, found)),
    ]
