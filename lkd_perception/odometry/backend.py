"""The loop-closing back end: keyframes, loop detection and verification, the pose graph, map -> odom.

The front end (:class:`~lkd_perception.odometry.pipeline.LioPipeline`) gives continuous odometry
poses (T_odom_base); the back end turns them into map poses. Each keyframe is a pose-graph
variable tied to the previous one by an odometry factor; a verified loop adds a loop factor,
and the graph's estimate of the newest keyframe gives ``map_T_odom``, the correction that
REP-105 publishes as map -> odom (odometry itself never jumps). Every accepted scan is anchored
to the newest keyframe at its time, so a loop closure corrects the whole history.

Kept apart from the front end so that it can be driven by any odometry: the real-data loop test
runs it on a 2-D laser log's wheel odometry.
"""

from __future__ import annotations

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import pose_inverse, rotation_angle
from lkd_perception.common.spill_file import SpillFile
from lkd_perception.odometry.config import OdometryConfig
from lkd_perception.odometry.features import BevFeatures
from lkd_perception.odometry.keyframes import Keyframe, KeyframeStore, pack_cloud
from lkd_perception.odometry.loop_closure import LoopClosure, LoopDetector
from lkd_perception.odometry.pose_graph import PoseGraph


class _AnchorLog:
    """Per-scan (stamp, keyframe id, T_kf_scan), 108 bytes a scan, with at most ``block`` scans in
    memory: full blocks go to an unnamed temporary file (as old keyframes do, see
    :mod:`~lkd_perception.odometry.keyframes`) and are read back only for :meth:`arrays`, so an
    all-day drive (10 Hz: 36 000 scans an hour, 3.9 MB) does not grow the process by it."""

    _ROW = np.dtype([("stamp", "<i8"), ("kid", "<i4"), ("rel", "<f8", (3, 4))])

    def __init__(self, block: int = 4096) -> None:
        self._rows = np.zeros(block, self._ROW)
        self._n = 0  # rows in memory
        self._spilled = 0  # rows in the file
        self._file = SpillFile("scan anchor file", "lkd_anchors_")

    def __len__(self) -> int:
        return self._spilled + self._n

    def append(self, stamp_ns: int, kid: int, T_kf_scan: np.ndarray) -> None:
        if self._n == len(self._rows):
            self._file.append(self._rows.tobytes())
            self._spilled += self._n
            self._n = 0
        row = self._rows[self._n]
        row["stamp"], row["kid"], row["rel"] = stamp_ns, kid, T_kf_scan[:3]
        self._n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps (N,), keyframe ids (N,) and T_kf_scan (N, 4, 4)."""
        rows = self._rows[: self._n]
        if self._spilled:
            data = self._file.read(0, self._spilled * self._ROW.itemsize)
            rows = np.concatenate([np.frombuffer(data, self._ROW), rows])
        rel = np.zeros((len(rows), 4, 4))
        rel[:, :3], rel[:, 3, 3] = rows["rel"], 1.0
        return rows["stamp"].copy(), rows["kid"].astype(np.int32), rel


class BackEnd:
    """Keyframes, loops and the pose graph over a stream of odometry poses.

    Per scan: :meth:`wants_keyframe`; if so :meth:`add_keyframe` then :meth:`close_loops`; then
    :meth:`anchor`. Read :attr:`map_T_odom`, :meth:`trajectory`, :meth:`path`,
    :meth:`keyframe_poses` and :meth:`latest_keyframe`. ``loops`` replaces the loop detector
    (e.g. one that keeps only the planar part of a 2-D scanner's loops).
    """

    def __init__(self, config: OdometryConfig, loops: LoopDetector | None = None) -> None:
        self.config = config
        self.graph = PoseGraph()
        self.detector = loops if loops is not None else LoopDetector(config)
        self.loop_closures: list[LoopClosure] = []
        self._kf_pose: np.ndarray | None = None  # T_odom_base of the newest keyframe
        self._map_T_odom = np.eye(4)
        self._anchors = _AnchorLog()  # every scan: stamp, keyframe id, T_kf_scan

    @property
    def keyframes(self) -> KeyframeStore:
        """The keyframes by id (their stamps, clouds, features, descriptors)."""
        return self.detector.keyframes

    @property
    def map_T_odom(self) -> np.ndarray:
        """The loop-closure correction T_map_odom (a copy)."""
        return self._map_T_odom.copy()

    def wants_keyframe(self, pose: np.ndarray) -> bool:
        """Whether a scan at odometry pose ``pose`` is far enough (distance or angle) from the last keyframe."""
        if self._kf_pose is None:
            return True
        d = pose_inverse(self._kf_pose) @ pose
        k = self.config.keyframe
        return bool(np.linalg.norm(d[:3, 3]) >= k.distance or rotation_angle(d[:3, :3]) >= k.angle)

    def add_keyframe(
        self,
        stamp_ns: int,
        pose: np.ndarray,
        cloud: np.ndarray,
        features: BevFeatures,
        polar: np.ndarray,
        sigmas: tuple[float, float] | None = None,
    ) -> Keyframe:
        """A keyframe at odometry pose ``pose`` (T_odom_base) with its body-frame cloud, BEV
        features and ring-sector descriptor: a graph variable, tied to the previous keyframe by
        the odometry between them with ``sigmas`` (rotation rad, translation m; default
        ``keyframe.sigma_*``), and the graph solved."""
        k = self.config.keyframe
        kid = len(self.keyframes)
        sigma_rot, sigma_trans = sigmas or (k.sigma_rot, k.sigma_trans)
        self.graph.add_variable(kid, self._map_T_odom @ pose)
        if self._kf_pose is None:
            self.graph.fix_variable(0, pose)
        else:
            self.graph.add_factor(kid - 1, kid, pose_inverse(self._kf_pose) @ pose, sigma_rot, sigma_trans)
        self._kf_pose = pose.copy()
        kf = Keyframe.create(kid, int(stamp_ns), cloud, features, polar)
        self.detector.add(kf)
        self.graph.optimize()
        if k.graph_window and self.graph.live_variables >= k.graph_window + max(k.graph_window // 2, 1):
            self.graph.retire(kid + 1 - k.graph_window)
        self._follow_graph()
        return kf

    def close_loops(self, kf: Keyframe) -> tuple[LoopClosure, ...]:
        """Search and verify a loop for the newest keyframe ``kf`` (what :meth:`add_keyframe` just
        returned); an accepted one becomes a (robust) loop factor, the graph is solved again and
        ``map_T_odom`` follows. Rests for ``loop.cooldown_keyframes`` keyframes after an accepted loop."""
        if kf.id != len(self.keyframes) - 1:
            raise InputError(f"loops are closed for the newest keyframe ({len(self.keyframes) - 1}), not {kf.id}")
        c = self.config.loop
        cooling = self.loop_closures and kf.id - self.loop_closures[-1].to_id <= c.cooldown_keyframes
        if not c.enabled or kf.id == 0 or cooling:
            return ()
        loop = self.detector.detect(kf, self.graph.estimates_view())
        if loop is None:
            return ()
        self.graph.add_factor(loop.from_id, loop.to_id, loop.T_from_to, c.sigma_rot, c.sigma_trans, c.robust_kernel)
        self.graph.optimize(relinearize_all=True)
        self.loop_closures.append(loop)
        self._follow_graph()
        return (loop,)

    def _follow_graph(self) -> None:
        """map -> odom after a solve: the correction that puts the newest keyframe's odometry pose
        where the graph now estimates it."""
        self._map_T_odom = self.graph.estimate(len(self.keyframes) - 1) @ pose_inverse(self._kf_pose)  # type: ignore[arg-type]

    def set_cloud(self, kid: int, cloud: np.ndarray) -> None:
        """Replace keyframe ``kid``'s cloud (body frame, metres): the first scan, deskewed again
        once the second gives its motion."""
        kf = self.keyframes[kid]
        self.keyframes[kid] = Keyframe(kf.id, kf.stamp_ns, pack_cloud(cloud), kf.features, kf.polar, kf.ring_key)

    def anchor(self, stamp_ns: int, pose: np.ndarray) -> None:
        """Record an accepted scan relative to the newest keyframe, for :meth:`trajectory`."""
        if self._kf_pose is None:
            raise InputError("no keyframe yet to anchor a scan to")
        self._anchors.append(int(stamp_ns), len(self.keyframes) - 1, pose_inverse(self._kf_pose) @ pose)

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps (N,) and T_map_base (N, 4, 4) of every anchored scan, each at its keyframe's
        current (loop-corrected) estimate."""
        stamps, kids, rel = self._anchors.arrays()
        if len(stamps) == 0:
            return stamps, np.zeros((0, 4, 4))
        kfs = self.graph.estimates()
        K = np.stack([kfs[k] for k in range(len(kfs))])
        return stamps, np.einsum("nij,njk->nik", K[kids], rel)

    def path(self, stamp_ns: int, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stamps and T_map_base of the keyframes plus the latest scan (``stamp_ns``, odometry
        pose ``pose``) unless that is the newest keyframe: the loop-corrected path at keyframe
        spacing, whose cost does not grow with every scan."""
        kfs = self.graph.estimates()
        kf_stamps = self.keyframes.stamps
        poses = [kfs[k] for k in range(len(kf_stamps))]
        if stamp_ns != kf_stamps[-1]:
            kf_stamps = np.append(kf_stamps, stamp_ns)
            poses.append(self._map_T_odom @ pose)
        return kf_stamps, np.stack(poses)

    def keyframe_poses(self) -> dict[int, np.ndarray]:
        """Optimised map poses of all keyframes (id -> T_map_base)."""
        return self.graph.estimates()

    def latest_keyframe(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Stamp, T_map_base and its 6x6 covariance (ROS order, map axes; GTSAM marginal) of the
        newest keyframe: the map pose with the uncertainty the pose graph assigns it."""
        kid = len(self.keyframes) - 1
        if kid < 0:
            raise InputError("no keyframe yet")
        return int(self.keyframes.stamps[kid]), self.graph.estimate(kid), self.graph.marginal_covariance(kid)
