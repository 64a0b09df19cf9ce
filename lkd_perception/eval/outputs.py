"""Read what the nodes published during a recorded replay, into plain arrays for evaluation.

The recording (``lkd replay --record``) stamps each message with the recorder's clock at
arrival, in bag time, so ``arrival - header.stamp`` is each result's end-to-end latency.
Reads with rosbags only (no ROS), so evaluation runs anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, matrix_from_quat
from lkd_perception.io import topics
from lkd_perception.io.line_encoding import boxes_to_segments


@dataclass(frozen=True)
class FrameBoxes:
    """Detections of one image: boxes (N, 4) x1 y1 x2 y2 pixels, scores (N,), class names."""

    stamp_ns: int
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class FrameLines:
    """Line segments of one image: (N, 4) x1 y1 x2 y2 pixels and scores (N,)."""

    stamp_ns: int
    segments: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class RecordedRun:
    """Everything evaluation needs from one recording."""

    detections: tuple[FrameBoxes, ...]
    lines: tuple[FrameLines, ...]
    odometry_stamps_ns: np.ndarray
    odometry_poses: np.ndarray  # (N, 4, 4) odom -> base_link
    path_stamps_ns: np.ndarray  # the last Path: loop-closure corrected, map frame
    path_poses: np.ndarray
    loop_closures: np.ndarray  # (M, 2, 3) segment endpoints in map, from the markers
    latencies_ms: dict[str, np.ndarray]  # per output topic: arrival - header stamp
    diagnostics: dict[str, dict[str, str]] = field(default_factory=dict)  # last status values per name
    counts: dict[str, int] = field(default_factory=dict)

    def result_stamps(self, topic: str) -> list[int]:
        """Header stamps of the results recorded on ``topic`` (a node's processed frames), in order."""
        if topic == topics.DETECTIONS.path:
            return [f.stamp_ns for f in self.detections]
        if topic == topics.LINES.path:
            return [f.stamp_ns for f in self.lines]
        if topic == topics.ODOMETRY.path:
            return [int(s) for s in self.odometry_stamps_ns]
        raise InputError(f"a recording holds no per-frame results on {topic}")


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _pose(p) -> np.ndarray:
    q = np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
    return make_pose(matrix_from_quat(q), [p.position.x, p.position.y, p.position.z])


def _boxes(msg) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    n = len(msg.detections)
    centers, sizes, thetas, scores, names = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n), np.zeros(n), []
    for i, d in enumerate(msg.detections):
        centers[i] = (d.bbox.center.position.x, d.bbox.center.position.y)
        sizes[i] = (d.bbox.size_x, d.bbox.size_y)
        thetas[i] = d.bbox.center.theta
        if d.results:
            scores[i] = d.results[0].hypothesis.score
            names.append(d.results[0].hypothesis.class_id)
        else:
            names.append("")
    return centers, sizes, thetas, scores, names


def read_recorded_run(path: str | Path) -> RecordedRun:
    """Parse a recording of the product's outputs (topics may be absent when a node was off)."""
    from lkd_perception.io.bag import open_bag

    p = Path(path)
    if not p.exists():
        raise InputError(f"recording not found: {p}")
    dets: list[FrameBoxes] = []
    lines: list[FrameLines] = []
    odo_t: list[int] = []
    odo_T: list[np.ndarray] = []
    path_t: np.ndarray = np.zeros(0, np.int64)
    path_T: np.ndarray = np.zeros((0, 4, 4))
    loops = np.zeros((0, 2, 3))
    lat: dict[str, list[float]] = defaultdict(list)
    diags: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = defaultdict(int)
    with closing(open_bag(p)) as reader:
        for conn, log_ns, raw in reader.messages():
            topic = conn.topic
            counts[topic] += 1
            msg = reader.deserialize(raw, conn.msgtype)
            header = getattr(msg, "header", None)
            if header is not None and topic != topics.DIAGNOSTICS.path and topic != topics.PATH.path:
                lat[topic].append((log_ns - _stamp_ns(header.stamp)) * 1e-6)
            if topic == topics.DETECTIONS.path:
                c, s, _, sc, names = _boxes(msg)
                xyxy = np.concatenate([c - s / 2, c + s / 2], axis=1) if len(c) else np.zeros((0, 4))
                dets.append(FrameBoxes(_stamp_ns(msg.header.stamp), xyxy, sc, tuple(names)))
            elif topic == topics.LINES.path:
                c, s, th, sc, _ = _boxes(msg)
                seg = boxes_to_segments(c, th, s[:, 0]) if len(c) else np.zeros((0, 4))
                lines.append(FrameLines(_stamp_ns(msg.header.stamp), seg, sc))
            elif topic == topics.ODOMETRY.path:
                odo_t.append(_stamp_ns(msg.header.stamp))
                odo_T.append(_pose(msg.pose.pose))
            elif topic == topics.PATH.path:
                path_t = np.array([_stamp_ns(ps.header.stamp) for ps in msg.poses], dtype=np.int64)
                path_T = np.array([_pose(ps.pose) for ps in msg.poses]).reshape(-1, 4, 4)
            elif topic == topics.LOOP_CLOSURES.path:
                segs = []
                for m in msg.markers:
                    pts = [(q.x, q.y, q.z) for q in m.points]
                    segs += [(pts[i], pts[i + 1]) for i in range(0, len(pts) - 1, 2)]
                if segs or not len(loops):
                    loops = np.array(segs, dtype=float).reshape(-1, 2, 3)
            elif topic == topics.DIAGNOSTICS.path:
                for st in msg.status:
                    diags[st.name] = {kv.key: kv.value for kv in st.values} | {"level": str(st.level),
                                                                              "message": st.message}
    order = np.argsort(np.array(odo_t, dtype=np.int64), kind="stable")
    return RecordedRun(
        detections=tuple(sorted(dets, key=lambda f: f.stamp_ns)),
        lines=tuple(sorted(lines, key=lambda f: f.stamp_ns)),
        odometry_stamps_ns=np.array(odo_t, dtype=np.int64)[order],
        odometry_poses=np.array(odo_T).reshape(-1, 4, 4)[order],
        path_stamps_ns=path_t,
        path_poses=path_T,
        loop_closures=loops,
        latencies_ms={k: np.array(v) for k, v in lat.items()},
        diagnostics=diags,
        counts=dict(counts),
    )
