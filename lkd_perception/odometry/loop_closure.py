"""Loop-closure detection: global BEV descriptors, KD-tree retrieval, BEV RANSAC, ICP gate.

Global descriptor: a ring x sector polar pooling of the BEV occupancy counts (Scan Context's
layout on BEV-LIO's image). Its ring key (mean over sectors) does not change when the vehicle
turns in place, so a KD-tree over ring keys retrieves revisits from any heading; the full
polar matrix, compared under column shifts, then ranks the candidates and gives a yaw.
Candidates must be old enough and close enough in the map (REFERENCE 3.5). The survivor is
verified by RANSAC on BEV feature matches (a planar pose) and refined by point-to-plane ICP
against a submap around the candidate; only a loop that passes the ICP fitness gate is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.odometry.bev import BevImage
from lkd_perception.odometry.config import OdometryConfig
from lkd_perception.odometry.features import match_mutual, ransac_rigid_2d
from lkd_perception.odometry.keyframes import Keyframe, KeyframeStore
from lkd_perception.odometry.registration import LocalMap, register

RINGS = 20
SECTORS = 60


@dataclass(frozen=True)
class LoopClosure:
    """A verified loop: ``T_from_to`` maps the current keyframe ``to_id`` into the old ``from_id``."""

    from_id: int
    to_id: int
    T_from_to: np.ndarray
    rmse: float
    overlap: float
    bev_inliers: int


def polar_descriptor(bev: BevImage, max_range: float) -> np.ndarray:
    """(RINGS, SECTORS) max occupancy count per polar cell, scaled to [0, 1]."""
    v, u = np.nonzero(bev.counts)
    if len(u) == 0:
        return np.zeros((RINGS, SECTORS))
    xy = bev.grid.to_metric(np.stack([u, v], axis=1).astype(float))
    r = np.hypot(xy[:, 0], xy[:, 1])
    ok = r < max_range
    ring = np.minimum((r[ok] / max_range * RINGS).astype(int), RINGS - 1)
    ang = np.arctan2(xy[ok, 1], xy[ok, 0]) + np.pi
    sector = np.minimum((ang / (2 * np.pi) * SECTORS).astype(int), SECTORS - 1)
    desc = np.zeros(RINGS * SECTORS)
    np.maximum.at(desc, ring * SECTORS + sector, bev.counts[v[ok], u[ok]].astype(float))
    return desc.reshape(RINGS, SECTORS) / max(float(bev.counts.max()), 1.0)


def polar_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Scan Context distance (1 - mean column cosine) minimised over column shifts of ``b``.

    Returns the distance and the best shift in sectors (b rolled by it matches a). Columns empty
    in either descriptor are left out of the mean; all shifts are scored at once.
    """
    shifts = (np.arange(SECTORS)[None, :] - np.arange(SECTORS)[:, None]) % SECTORS  # [shift, col]
    bs = b[:, shifts]  # (RINGS, shift, col) = np.roll(b, shift, axis=1)
    na = np.linalg.norm(a, axis=0)[None, :]
    nb = np.linalg.norm(bs, axis=0)
    valid = (na > 0) & (nb > 0)
    cos = np.einsum("rc,rsc->sc", a, bs) / np.where(valid, na * nb, 1.0)
    count = valid.sum(axis=1)
    mean_cos = np.where(count > 0, (cos * valid).sum(axis=1) / np.maximum(count, 1), -1.0)
    best = int(np.argmax(mean_cos))
    return (1.0 - float(mean_cos[best])) if count[best] > 0 else 2.0, best


class LoopDetector:
    """Finds and verifies a loop for the newest keyframe against older ones."""

    def __init__(self, config: OdometryConfig, seed: int = 0) -> None:
        self.config = config
        self.keyframes = KeyframeStore(config.keyframe.in_memory)
        self._rng = np.random.default_rng(seed)
        self._tree: cKDTree | None = None
        self._tree_size = 0

    def add(self, kf: Keyframe) -> None:
        """Keyframe ids are their index in :attr:`keyframes` (0, 1, 2, ...)."""
        self.keyframes.append(kf)

    def detect(self, current: Keyframe, map_poses: Mapping[int, np.ndarray]) -> LoopClosure | None:
        """A verified loop from ``current`` to an old keyframe, or None.

        ``map_poses`` are the latest pose-graph estimates, used for the radius gate and to
        assemble the candidate's submap.
        """
        p = self.config.loop
        # stamps increase with ids, so the keyframes old enough are a prefix of them
        n = int(np.searchsorted(self.keyframes.stamps, current.stamp_ns - p.min_age_s * 1e9, side="right"))
        n = min(n, current.id)
        if n <= 0:
            return None
        if self._tree is None or self._tree_size != n:
            self._tree = cKDTree(self.keyframes.ring_keys(n))
            self._tree_size = n
        k = min(p.candidates, n)
        _, idx = self._tree.query(current.ring_key, k=k)
        here = map_poses[current.id][:3, 3]
        scored = []
        for cid in (int(i) for i in np.atleast_1d(idx)):
            if np.linalg.norm(map_poses[cid][:3, 3] - here) > p.search_radius:
                continue
            d, _ = polar_distance(current.polar, self.keyframes.polar(cid))
            if d <= p.descriptor_distance:
                scored.append((d, cid))
        for _, cid in sorted(scored):
            loop = self._verify(current, self.keyframes[cid], map_poses)
            if loop is not None:
                return loop
        return None

    def _verify(self, cur: Keyframe, cand: Keyframe, map_poses: Mapping[int, np.ndarray]) -> LoopClosure | None:
        c, p = self.config, self.config.loop
        pairs = match_mutual(cur.features, cand.features)
        if len(pairs) < c.bev_min_matches:
            return None
        fit = ransac_rigid_2d(cur.features.xy[pairs[:, 0]], cand.features.xy[pairs[:, 1]], c.ransac_threshold,
                              c.ransac_iterations, self._rng)
        if fit is None or int(fit.inliers.sum()) < c.bev_min_matches:
            return None
        # planar guess of T_cand_cur; the height and tilt come from the pose graph
        guess_graph = pose_inverse(map_poses[cand.id]) @ map_poses[cur.id]
        guess = make_pose(yaw_pitch_roll_matrix(fit.yaw), [fit.translation[0], fit.translation[1], guess_graph[2, 3]])
        T_cand_inv = pose_inverse(map_poses[cand.id])
        parts = []
        for kid in range(
            max(cand.id - p.submap_keyframes, 0), min(cand.id + p.submap_keyframes + 1, len(self.keyframes))
        ):
            if kid in map_poses and abs(kid - cur.id) > p.submap_keyframes:
                kf = cand if kid == cand.id else self.keyframes[kid]
                parts.append(transform_points(T_cand_inv @ map_poses[kid], kf.map_points))
        submap = LocalMap(c.map_voxel_size, np.inf, c.normal_neighbors)
        submap.update(np.concatenate(parts), np.zeros(3))
        reg = register(cur.map_points, submap, guess, c.max_correspondence_distance, 30, 1e-5)
        if reg.rmse > p.max_rmse or reg.overlap < p.min_overlap:
            return None
        return LoopClosure(cand.id, cur.id, reg.pose, reg.rmse, reg.overlap, int(fit.inliers.sum()))
