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
from lkd_perception.odometry.features import BevFeatures, match_mutual, ransac_rigid_2d
from lkd_perception.odometry.registration import LocalMap, register

RINGS = 20
SECTORS = 60


CLOUD_QUANTUM_M = 0.01  # keyframe clouds are stored as int16 centimetres (+-327 m)


def pack_cloud(points: np.ndarray) -> np.ndarray:
    """Body-frame points (N, 3) -> int16 centimetres: 6 bytes a point instead of 12 (float32).

    A long drive keeps every keyframe's cloud for loop verification, so this is the bulk of the
    odometry's memory; 5 mm of rounding is far below the 0.5 m map voxels the clouds are
    sampled at. Points beyond the int16 range are dropped (the scans end at ``max_range``).
    """
    q = np.round(np.asarray(points, dtype=np.float64) / CLOUD_QUANTUM_M)
    lim = np.iinfo(np.int16).max
    return q[np.all(np.abs(q) <= lim, axis=1)].astype(np.int16)


def unpack_cloud(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_cloud` (float64 metres)."""
    return packed.astype(np.float64) * CLOUD_QUANTUM_M


def compact_features(f: BevFeatures) -> BevFeatures:
    """The keyframe's copy of its BEV features: float32 positions (loops only need metres to
    RANSAC precision), descriptors as they are."""
    return BevFeatures(f.uv.astype(np.float32), f.xy.astype(np.float32), f.descriptors, f.binary)


@dataclass(frozen=True)
class Keyframe:
    """What the back end keeps of a keyframe, compactly (about 45 kB on a 32-beam urban scan):
    only what loop detection and verification read."""

    id: int
    stamp_ns: int
    cloud: np.ndarray  # int16 cm (pack_cloud), map-voxel sample of the deskewed scan, body frame
    features: BevFeatures  # compact_features
    polar: np.ndarray  # (RINGS, SECTORS) float32
    ring_key: np.ndarray  # (RINGS,)

    @staticmethod
    def create(kid: int, stamp_ns: int, map_points: np.ndarray, features: BevFeatures, polar: np.ndarray) -> "Keyframe":
        return Keyframe(kid, stamp_ns, pack_cloud(map_points), compact_features(features), polar.astype(np.float32), ring_key(polar))

    @property
    def map_points(self) -> np.ndarray:
        """The keyframe cloud (body frame, float64 metres): loop-ICP source and submap part."""
        return unpack_cloud(self.cloud)

    @property
    def nbytes(self) -> int:
        f = self.features
        return int(self.cloud.nbytes + f.uv.nbytes + f.xy.nbytes + f.descriptors.nbytes + self.polar.nbytes + self.ring_key.nbytes)


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


def ring_key(polar: np.ndarray) -> np.ndarray:
    """Rotation-invariant summary: the mean of each ring."""
    return polar.mean(axis=1)


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


@dataclass(frozen=True)
class LoopParams:
    """The loop-closure subset of :class:`OdometryConfig` (see there for meanings)."""

    min_age_s: float
    search_radius: float
    candidates: int
    descriptor_distance: float
    submap_keyframes: int
    max_rmse: float
    min_overlap: float
    ransac_threshold: float
    ransac_iterations: int
    min_inliers: int
    map_voxel: float
    normal_neighbors: int
    max_correspondence: float


class LoopDetector:
    """Finds and verifies a loop for the newest keyframe against older ones."""

    def __init__(self, params: LoopParams, seed: int = 0) -> None:
        self.p = params
        self.keyframes: list[Keyframe] = []
        self._rng = np.random.default_rng(seed)
        self._tree: cKDTree | None = None
        self._tree_size = 0

    def add(self, kf: Keyframe) -> None:
        """Keyframe ids are their index in :attr:`keyframes` (0, 1, 2, ...)."""
        if kf.id != len(self.keyframes):
            raise ValueError(f"keyframe id {kf.id} out of sequence (expected {len(self.keyframes)})")
        self.keyframes.append(kf)

    def detect(self, current: Keyframe, map_poses: Mapping[int, np.ndarray]) -> LoopClosure | None:
        """A verified loop from ``current`` to an old keyframe, or None.

        ``map_poses`` are the latest pose-graph estimates, used for the radius gate and to
        assemble the candidate's submap.
        """
        p = self.p
        eligible = [k for k in self.keyframes if k.id != current.id and (current.stamp_ns - k.stamp_ns) * 1e-9 >= p.min_age_s]
        if not eligible:
            return None
        n = len(eligible)
        if self._tree is None or self._tree_size != n:
            # eligibility only grows with time, so the eligible set is a prefix of the keyframes
            self._tree = cKDTree(np.stack([k.ring_key for k in eligible]))
            self._tree_size = n
        k = min(p.candidates, n)
        _, idx = self._tree.query(current.ring_key, k=k)
        idx = np.atleast_1d(idx)
        here = map_poses[current.id][:3, 3]
        scored = []
        for i in idx:
            cand = eligible[int(i)]
            if np.linalg.norm(map_poses[cand.id][:3, 3] - here) > p.search_radius:
                continue
            d, _ = polar_distance(current.polar, cand.polar)
            if d <= p.descriptor_distance:
                scored.append((d, cand))
        for _, cand in sorted(scored, key=lambda s: s[0]):
            loop = self._verify(current, cand, map_poses)
            if loop is not None:
                return loop
        return None

    def _verify(self, cur: Keyframe, cand: Keyframe, map_poses: Mapping[int, np.ndarray]) -> LoopClosure | None:
        p = self.p
        pairs = match_mutual(cur.features, cand.features)
        if len(pairs) < p.min_inliers:
            return None
        fit = ransac_rigid_2d(cur.features.xy[pairs[:, 0]], cand.features.xy[pairs[:, 1]], p.ransac_threshold, p.ransac_iterations, self._rng)
        if fit is None or int(fit.inliers.sum()) < p.min_inliers:
            return None
        # planar guess of T_cand_cur; the height and tilt come from the pose graph
        guess_graph = pose_inverse(map_poses[cand.id]) @ map_poses[cur.id]
        guess = make_pose(yaw_pitch_roll_matrix(fit.yaw), [fit.translation[0], fit.translation[1], guess_graph[2, 3]])
        T_cand_inv = pose_inverse(map_poses[cand.id])
        parts = []
        for kid in range(max(cand.id - p.submap_keyframes, 0), min(cand.id + p.submap_keyframes + 1, len(self.keyframes))):
            kf = self.keyframes[kid]
            if kid in map_poses and abs(kid - cur.id) > p.submap_keyframes:
                parts.append(transform_points(T_cand_inv @ map_poses[kid], kf.map_points))
        submap = LocalMap(p.map_voxel, np.inf, p.normal_neighbors)
        submap.update(np.concatenate(parts), np.zeros(3))
        reg = register(cur.map_points, submap, guess, p.max_correspondence, 30, 1e-5)
        if reg.rmse > p.max_rmse or reg.overlap < p.min_overlap:
            return None
        return LoopClosure(cand.id, cur.id, reg.pose, reg.rmse, reg.overlap, int(fit.inliers.sum()))
