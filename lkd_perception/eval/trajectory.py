"""Trajectory accuracy metrics: association, alignment, APE, RPE and KITTI-style drift.

Definitions follow Sturm et al. (IROS 2012) for APE/RPE and the KITTI odometry devkit for drift
(REFERENCE 3.9). APE and the KITTI metric measure different things (global consistency vs local
drift over fixed path lengths), so :func:`evaluate_trajectory` reports both.

Poses are 4x4 ``T_world_body`` arrays of shape (N, 4, 4); stamps are integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import InputError

KITTI_LENGTHS_M: tuple[float, ...] = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
"""Segment lengths of the KITTI devkit."""


@dataclass(frozen=True)
class Trajectory:
    """Timestamped poses: ``stamps_ns`` (N,) int64 and ``poses`` (N, 4, 4) float64."""

    stamps_ns: np.ndarray
    poses: np.ndarray

    def __post_init__(self) -> None:
        if self.poses.ndim != 3 or self.poses.shape[1:] != (4, 4):
            raise InputError(f"poses must be (N, 4, 4), got {self.poses.shape}")
        if self.stamps_ns.shape != (self.poses.shape[0],):
            raise InputError(f"stamps_ns must be ({self.poses.shape[0]},), got {self.stamps_ns.shape}")

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    @property
    def positions(self) -> np.ndarray:
        return self.poses[:, :3, 3]


@dataclass(frozen=True)
class ErrorStats:
    """Summary statistics of a set of non-negative errors (evo's set)."""

    rmse: float
    mean: float
    median: float
    std: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class DriftResult:
    """KITTI-style drift: mean translational error in % and rotational error in deg/100 m."""

    translation_pct: float
    rotation_deg_per_100m: float
    lengths_m: tuple[float, ...]
    segments: int


@dataclass(frozen=True)
class TrajectoryMetrics:
    """All metrics of one estimated trajectory against ground truth (after association)."""

    matched_poses: int
    gt_length_m: float
    ape_translation_m: ErrorStats
    ape_rotation_deg: ErrorStats
    rpe_frame_translation_m: ErrorStats
    rpe_frame_rotation_deg: ErrorStats
    rpe_100m_translation_m: ErrorStats | None
    rpe_100m_rotation_deg: ErrorStats | None
    drift: DriftResult | None
    alignment: np.ndarray  # 4x4 SE(3) applied to the estimate


def error_stats(errors: np.ndarray) -> ErrorStats:
    """RMSE, mean, median, std, min, max of a 1-D error array."""
    e = np.asarray(errors, dtype=float).reshape(-1)
    if e.size == 0:
        raise InputError("no errors to summarise (empty trajectory overlap)")
    return ErrorStats(
        rmse=float(np.sqrt(np.mean(e**2))),
        mean=float(e.mean()),
        median=float(np.median(e)),
        std=float(e.std()),
        min=float(e.min()),
        max=float(e.max()),
        count=int(e.size),
    )


def associate(
    stamps_a_ns: np.ndarray, stamps_b_ns: np.ndarray, max_diff_s: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) matching each stamp of ``a`` to the nearest stamp of ``b``.

    Each ``b`` index is used at most once (the closest ``a`` wins) so a slow estimator cannot
    score one ground-truth pose several times.
    """
    a = np.asarray(stamps_a_ns, dtype=np.int64)
    b = np.asarray(stamps_b_ns, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    order = np.argsort(b)
    bs = b[order]
    pos = np.clip(np.searchsorted(bs, a), 1, len(bs) - 1) if len(bs) > 1 else np.zeros(len(a), dtype=int)
    left = bs[np.maximum(pos - 1, 0)]
    right = bs[pos]
    pick = np.where(np.abs(a - left) <= np.abs(a - right), np.maximum(pos - 1, 0), pos)
    diff = np.abs(a - bs[pick])
    ok = diff <= int(max_diff_s * 1e9)
    ia = np.nonzero(ok)[0]
    ib = order[pick[ok]]
    # keep the closest a for each b
    best: dict[int, tuple[int, int]] = {}
    for i, j, d in zip(ia, ib, diff[ok]):
        if j not in best or d < best[j][1]:
            best[j] = (i, d)
    ia_out = np.array(sorted(v[0] for v in best.values()), dtype=int)
    lookup = {v[0]: k for k, v in best.items()}
    ib_out = np.array([lookup[i] for i in ia_out], dtype=int)
    return ia_out, ib_out


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity (R, t, s) with ``dst ~ s R src + t`` (Umeyama 1991)."""
    src = np.asarray(src, dtype=float)
    dst = np.asarray(dst, dtype=float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        raise InputError(f"alignment needs two matching (N>=3, 3) arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / src.shape[0]
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    var_s = float((xs**2).sum() / src.shape[0])
    s = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return R, t, s


def align_se3(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The SE(3) transform that best maps the estimated positions onto the reference ones."""
    R, t, _ = umeyama(est[:, :3, 3], ref[:, :3, 3], with_scale=False)
    A = np.eye(4)
    A[:3, :3] = R
    A[:3, 3] = t
    return A


def _rotation_angles_deg(R: np.ndarray) -> np.ndarray:
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def ape(est: np.ndarray, ref: np.ndarray) -> tuple[ErrorStats, ErrorStats]:
    """Absolute pose error of already aligned, associated poses: translation (m), rotation (deg)."""
    E = np.einsum("nij,njk->nik", _inv_batch(est), ref)
    return error_stats(np.linalg.norm(E[:, :3, 3], axis=1)), error_stats(_rotation_angles_deg(E[:, :3, :3]))


def _inv_batch(T: np.ndarray) -> np.ndarray:
    out = np.zeros_like(T)
    Rt = np.transpose(T[:, :3, :3], (0, 2, 1))
    out[:, :3, :3] = Rt
    out[:, :3, 3] = -np.einsum("nij,nj->ni", Rt, T[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def _relative_errors(est: np.ndarray, ref: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = pairs[:, 0], pairs[:, 1]
    d_est = np.einsum("nij,njk->nik", _inv_batch(est[i]), est[j])
    d_ref = np.einsum("nij,njk->nik", _inv_batch(ref[i]), ref[j])
    E = np.einsum("nij,njk->nik", _inv_batch(d_ref), d_est)
    return np.linalg.norm(E[:, :3, 3], axis=1), _rotation_angles_deg(E[:, :3, :3])


def path_distances(poses: np.ndarray) -> np.ndarray:
    """Cumulative distance travelled along the positions of ``poses``, starting at 0."""
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def rpe_frames(est: np.ndarray, ref: np.ndarray, delta: int = 1) -> tuple[ErrorStats, ErrorStats]:
    """Relative pose error over pairs ``delta`` frames apart: translation (m), rotation (deg)."""
    n = est.shape[0]
    if n <= delta:
        raise InputError(f"RPE needs more than {delta} poses, got {n}")
    i = np.arange(n - delta)
    t, r = _relative_errors(est, ref, np.stack([i, i + delta], axis=1))
    return error_stats(t), error_stats(r)


def _pairs_by_distance(dist: np.ndarray, delta_m: float, tolerance: float, step: int = 1) -> np.ndarray:
    """Pairs (i, j) with the path length from i to j equal to ``delta_m`` within ``tolerance``."""
    starts = np.arange(0, len(dist), step)
    j = np.searchsorted(dist, dist[starts] + delta_m)
    ok = j < len(dist)
    starts, j = starts[ok], j[ok]
    ok = np.abs(dist[j] - dist[starts] - delta_m) <= tolerance * delta_m
    return np.stack([starts[ok], j[ok]], axis=1)


def rpe_distance(
    est: np.ndarray, ref: np.ndarray, delta_m: float = 100.0, tolerance: float = 0.1
) -> tuple[ErrorStats, ErrorStats] | None:
    """RPE over all pairs ``delta_m`` metres apart along the reference path; None if none fit."""
    pairs = _pairs_by_distance(path_distances(ref), delta_m, tolerance)
    if len(pairs) == 0:
        return None
    t, r = _relative_errors(est, ref, pairs)
    return error_stats(t), error_stats(r)


def kitti_drift(
    est: np.ndarray, ref: np.ndarray, lengths_m: tuple[float, ...] = KITTI_LENGTHS_M, step: int = 10
) -> DriftResult | None:
    """KITTI devkit drift over segments of the given lengths starting every ``step`` frames.

    The devkit's first index whose path distance reaches ``start + length`` ends a segment;
    errors are averaged over all segments of all lengths. On sequences shorter than the
    standard lengths the lengths that fit are used, and if none fits, tenths of them
    (10..80 m); :attr:`DriftResult.lengths_m` says which were used. Returns None when the path
    is shorter than 10 m.
    """
    dist = path_distances(ref)
    total = float(dist[-1]) if len(dist) else 0.0
    used = tuple(L for L in lengths_m if L < total)
    if not used:
        used = tuple(L / 10.0 for L in lengths_m if L / 10.0 < total)
    if not used:
        return None
    t_errs, r_errs = [], []
    for L in used:
        starts = np.arange(0, len(dist), step)
        ends = np.searchsorted(dist, dist[starts] + L)
        ok = ends < len(dist)
        if not np.any(ok):
            continue
        pairs = np.stack([starts[ok], ends[ok]], axis=1)
        t, r = _relative_errors(est, ref, pairs)
        t_errs.append(t / L)
        r_errs.append(np.radians(r) / L)
    if not t_errs:
        return None
    t_all, r_all = np.concatenate(t_errs), np.concatenate(r_errs)
    return DriftResult(
        translation_pct=float(100.0 * t_all.mean()),
        rotation_deg_per_100m=float(np.degrees(r_all.mean()) * 100.0),
        lengths_m=used,
        segments=int(t_all.size),
    )


def evaluate_trajectory(
    est: Trajectory, ref: Trajectory, max_diff_s: float = 0.01, align: bool = True
) -> TrajectoryMetrics:
    """Associate by time, align the estimate to the reference (SE(3) Umeyama) and compute all metrics.

    RPE and drift are invariant to the alignment; APE uses the aligned estimate.
    """
    ia, ib = associate(est.stamps_ns, ref.stamps_ns, max_diff_s)
    if len(ia) < 3:
        raise InputError(f"only {len(ia)} estimated poses match a ground-truth stamp within {max_diff_s} s; need >= 3")
    P, Q = est.poses[ia], ref.poses[ib]
    A = align_se3(P, Q) if align else np.eye(4)
    P_aligned = np.einsum("ij,njk->nik", A, P)
    ape_t, ape_r = ape(P_aligned, Q)
    rpe_t, rpe_r = rpe_frames(P, Q, 1)
    rpe100 = rpe_distance(P, Q, 100.0)
    return TrajectoryMetrics(
        matched_poses=int(len(ia)),
        gt_length_m=float(path_distances(Q)[-1]),
        ape_translation_m=ape_t,
        ape_rotation_deg=ape_r,
        rpe_frame_translation_m=rpe_t,
        rpe_frame_rotation_deg=rpe_r,
        rpe_100m_translation_m=None if rpe100 is None else rpe100[0],
        rpe_100m_rotation_deg=None if rpe100 is None else rpe100[1],
        drift=kitti_drift(P, Q),
        alignment=A,
    )
