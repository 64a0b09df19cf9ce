"""Pose-graph optimiser facade over GTSAM iSAM2 with 4x4 numpy poses.

The facade (add_variable / fix_variable / add_factor / optimize / estimates, after kiss-slam)
keeps GTSAM types out of the pipeline. Only factors and values added since the last
:meth:`PoseGraph.optimize` are passed to ``ISAM2.update``; passing the whole graph again raises
"key already exists" (REFERENCE 3.6).

Why loops need more than a robust kernel: after a long drift a *true* loop has a residual of
dozens of sigmas at the odometry estimate, just like a false one, so an M-estimator started
there down-weights both (measured: a Cauchy kernel left 2.8 m of drift uncorrected on an 80 m
square). After a loop, :meth:`PoseGraph.optimize` therefore runs graduated non-convexity
(GTSAM's GNC with a truncated quadratic, odometry and priors as known inliers), which starts from the
convex problem and decides which loops agree with the rest of the graph; rejected loops are left
out of the restarted iSAM2 and the accepted ones keep their robust kernel.

That global solve costs time in proportion to the whole graph (about a second at a thousand
keyframes), and a revisit yields a loop at almost every keyframe. Only a loop that *disagrees*
with the current estimate needs it: a loop whose whitened error there is within the
chi-square gate (99 %, 6 dof) is already what the graph believes, so it is added to iSAM2
incrementally with its robust kernel, and the next global solve re-judges it with the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import gtsam
import numpy as np

from lkd_perception.common.errors import ConfigError, InputError

ROBUST_KERNELS = ("cauchy", "geman_mcclure", "huber", "none")
CHI2_6DOF_99 = 16.81  # 99 % quantile of chi-square with 6 degrees of freedom
#: prior that holds a variable of an ill-posed graph near its guess after a failed update (rad, m):
#: loose enough that any real constraint on it wins
WEAK_PRIOR_SIGMA_ROT = 1.0
WEAK_PRIOR_SIGMA_TRANS = 10.0

log = logging.getLogger(__name__)


def _sigmas(sigma_rot: float, sigma_trans: float) -> gtsam.noiseModel.Diagonal:
    # Pose3 tangent order is rotation then translation
    return gtsam.noiseModel.Diagonal.Sigmas(np.array([sigma_rot] * 3 + [sigma_trans] * 3))


def _robust(base: gtsam.noiseModel.Base, robust: str) -> gtsam.noiseModel.Base:
    est = gtsam.noiseModel.mEstimator
    if robust == "none":
        return base
    if robust == "cauchy":
        return gtsam.noiseModel.Robust.Create(est.Cauchy.Create(1.0), base)
    if robust == "geman_mcclure":
        return gtsam.noiseModel.Robust.Create(est.GemanMcClure.Create(1.0), base)
    if robust == "huber":
        return gtsam.noiseModel.Robust.Create(est.Huber.Create(1.345), base)
    raise ConfigError(f"robust kernel must be one of {list(ROBUST_KERNELS)}, got {robust!r}")


@dataclass(frozen=True)
class _Between:
    key_from: int
    key_to: int
    T: np.ndarray
    sigma_rot: float
    sigma_trans: float
    robust: str

    def factor(self, with_kernel: bool) -> gtsam.BetweenFactorPose3:
        noise = _sigmas(self.sigma_rot, self.sigma_trans)
        return gtsam.BetweenFactorPose3(
            gtsam.symbol_shorthand.X(self.key_from),
            gtsam.symbol_shorthand.X(self.key_to),
            gtsam.Pose3(self.T),
            _robust(noise, self.robust) if with_kernel else noise,
        )


class PoseGraph:
    """Incremental SE(3) pose graph; variables are integer ids, poses 4x4 ``T_map_body``.

    Factors added with a robust kernel other than ``"none"`` are loop-type factors: candidates
    for rejection by :meth:`optimize` with ``relinearize_all``.
    """

    def __init__(self, relinearize_threshold: float = 0.01) -> None:
        self._params = gtsam.ISAM2Params()
        self._params.setRelinearizeThreshold(relinearize_threshold)
        self._params.relinearizeSkip = 1
        self._isam = gtsam.ISAM2(self._params)
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._priors: list[gtsam.PriorFactorPose3] = []
        self._betweens: list[_Between] = []
        self._rejected: set[int] = set()  # indices into _betweens
        self._estimate: gtsam.Values | None = None
        self._keys: set[int] = set()
        self._pending_loops: list[_Between] = []  # loop factors added since the last optimize()
        self.global_solves = 0  # GNC runs (for diagnostics and tests)
        self.restarts = 0  # rebuilds after a failed iSAM2 update (see _restart)

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def add_variable(self, key: int, initial: np.ndarray) -> None:
        """Declare a pose variable with its initial guess."""
        if key in self:
            raise InputError(f"pose graph variable {key} already exists")
        self._keys.add(key)
        self._new_values.insert(gtsam.symbol_shorthand.X(key), gtsam.Pose3(np.asarray(initial, dtype=float)))

    def fix_variable(self, key: int, pose: np.ndarray, sigma: float = 1e-6) -> None:
        """Anchor a variable with a tight prior (the first keyframe anchors the map frame)."""
        self._require(key)
        f = gtsam.PriorFactorPose3(
            gtsam.symbol_shorthand.X(key),
            gtsam.Pose3(np.asarray(pose, dtype=float)),
            gtsam.noiseModel.Isotropic.Sigma(6, sigma),
        )
        self._priors.append(f)
        self._new_factors.add(f)

    def add_factor(
        self,
        key_from: int,
        key_to: int,
        T_from_to: np.ndarray,
        sigma_rot: float,
        sigma_trans: float,
        robust: str = "none",
    ) -> None:
        """A relative-pose constraint ``T_from^-1 T_to = T_from_to``."""
        self._require(key_from)
        self._require(key_to)
        _robust(_sigmas(sigma_rot, sigma_trans), robust)  # validates the kernel name
        b = _Between(key_from, key_to, np.asarray(T_from_to, dtype=float).copy(), sigma_rot, sigma_trans, robust)
        self._betweens.append(b)
        self._new_factors.add(b.factor(with_kernel=True))
        if robust != "none":
            self._pending_loops.append(b)

    def optimize(self, relinearize_all: bool = False) -> None:
        """Add the new factors/values to iSAM2 and update the estimate.

        ``relinearize_all`` (after a loop closure) re-solves the whole graph with GNC (see the
        module doc) and restarts iSAM2 from the result without the rejected loops, unless every
        loop added since the last call agrees with the current estimate (then the incremental
        update is exact enough and costs milliseconds instead of a global solve).
        """
        consistent = all(self._agrees(b) for b in self._pending_loops)
        self._pending_loops = []
        factors, values = self._new_factors, self._new_values
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        try:
            self._isam.update(factors, values)
            estimate = self._isam.calculateEstimate()
        except RuntimeError as exc:  # gtsam raises RuntimeError, e.g. for an indeterminate linear system
            estimate = self._restart(values, exc)
        if relinearize_all and not consistent and any(b.robust != "none" for b in self._betweens):
            self.global_solves += 1
            estimate = self._solve_gnc(estimate)
            graph = gtsam.NonlinearFactorGraph()
            for f in self._priors:
                graph.add(f)
            for i, b in enumerate(self._betweens):
                if i not in self._rejected:
                    graph.add(b.factor(with_kernel=True))
            self._isam = gtsam.ISAM2(self._params)
            self._isam.update(graph, estimate)
            estimate = self._isam.calculateEstimate()
        self._estimate = estimate

    def _restart(self, new_values: gtsam.Values, exc: RuntimeError) -> gtsam.Values:
        """Rebuild iSAM2 after an update that failed.

        iSAM2 keeps the values of a failed update, so without this every later update fails with
        "key already exists" and the map is lost for the rest of the drive. The whole graph is
        solved again in one batch from the last estimate plus the new guesses; if it is still
        ill-posed (a variable held only by near-zero information), every variable the last
        estimate does not hold gets a weak prior at its guess, which keeps the graph solvable and
        lets later keyframes attach to it.
        """
        self.restarts += 1
        log.warning("pose graph: iSAM2 update failed (%s); rebuilding the graph", " ".join(str(exc).split())[:160])
        values = gtsam.Values()
        for key in new_values.keys():
            values.insert(key, new_values.atPose3(key))
        if self._estimate is not None:
            for key in self._estimate.keys():
                if not values.exists(key):
                    values.insert(key, self._estimate.atPose3(key))
        graph = gtsam.NonlinearFactorGraph()
        for f in self._priors:
            graph.add(f)
        for i, b in enumerate(self._betweens):
            if i not in self._rejected:
                graph.add(b.factor(with_kernel=True))
        try:
            self._isam = gtsam.ISAM2(self._params)
            self._isam.update(graph, values)
            return self._isam.calculateEstimate()
        except RuntimeError:
            held = self._estimate
            for key in new_values.keys():
                if held is None or not held.exists(key):
                    f = gtsam.PriorFactorPose3(
                        key, new_values.atPose3(key), _sigmas(WEAK_PRIOR_SIGMA_ROT, WEAK_PRIOR_SIGMA_TRANS)
                    )
                    self._priors.append(f)
                    graph.add(f)
            self._isam = gtsam.ISAM2(self._params)
            self._isam.update(graph, values)
            return self._isam.calculateEstimate()

    def _agrees(self, b: _Between) -> bool:
        """Whether a factor's whitened error at the current estimate is within the chi-square gate."""
        est = self._estimate
        kf, kt = gtsam.symbol_shorthand.X(b.key_from), gtsam.symbol_shorthand.X(b.key_to)
        if est is None or not (est.exists(kf) and est.exists(kt)):
            return False
        rel = est.atPose3(kf).between(est.atPose3(kt))
        err = gtsam.Pose3.Logmap(gtsam.Pose3(b.T).between(rel))  # rotation then translation
        w = err / np.array([b.sigma_rot] * 3 + [b.sigma_trans] * 3)
        return bool(w @ w <= CHI2_6DOF_99)

    def _solve_gnc(self, initial: gtsam.Values) -> gtsam.Values:
        graph = gtsam.NonlinearFactorGraph()
        inliers = []
        for f in self._priors:
            inliers.append(graph.size())
            graph.add(f)
        loop_slots: dict[int, int] = {}
        for i, b in enumerate(self._betweens):
            if b.robust == "none":
                inliers.append(graph.size())
            else:
                loop_slots[graph.size()] = i
            graph.add(b.factor(with_kernel=False))
        params = gtsam.GncLMParams()
        params.setLossType(gtsam.GncLossType.TLS)
        params.setKnownInliers(inliers)
        gnc = gtsam.GncLMOptimizer(graph, initial, params)
        gnc.setInlierCostThresholdsAtProbability(0.99)
        result = gnc.optimize()
        weights = np.asarray(gnc.getWeights())
        self._rejected = {i for slot, i in loop_slots.items() if weights[slot] < 0.5}
        return result

    @property
    def rejected_loops(self) -> list[tuple[int, int]]:
        """(from, to) of loop factors the last global solve rejected as outliers."""
        return [(self._betweens[i].key_from, self._betweens[i].key_to) for i in sorted(self._rejected)]

    def estimate(self, key: int) -> np.ndarray:
        """Current optimised pose of one variable."""
        if self._estimate is None or not self._estimate.exists(gtsam.symbol_shorthand.X(key)):
            raise InputError(f"variable {key} has not been optimised yet; call optimize()")
        return self._estimate.atPose3(gtsam.symbol_shorthand.X(key)).matrix()

    def marginal_covariance(self, key: int) -> np.ndarray:
        """6x6 marginal covariance of one pose in ROS order (x, y, z, roll, pitch, yaw) about the
        map axes: GTSAM's is over its tangent (rotation, translation) in the body frame, and
        (dp, dtheta_map) = [[0, R], [R, 0]] (omega_body, v_body) to first order. Cheap for the
        newest keyframe (near the root of the Bayes tree), so it can be asked at every keyframe."""
        if self._estimate is None or not self._estimate.exists(gtsam.symbol_shorthand.X(key)):
            raise InputError(f"variable {key} has not been optimised yet; call optimize()")
        cov = np.asarray(self._isam.marginalCovariance(gtsam.symbol_shorthand.X(key)))
        R = self._estimate.atPose3(gtsam.symbol_shorthand.X(key)).rotation().matrix()
        J = np.zeros((6, 6))
        J[:3, 3:], J[3:, :3] = R, R
        out = J @ cov @ J.T
        return 0.5 * (out + out.T)

    def estimates_view(self) -> Mapping[int, np.ndarray]:
        """The current estimates as a lazy mapping: a lookup converts one pose, so a caller that
        needs a few poses of a long graph does not pay for all of them (see :meth:`estimates`)."""
        return _EstimateView(self)

    def estimates(self) -> dict[int, np.ndarray]:
        """All optimised poses by id."""
        if self._estimate is None:
            return {}
        return {int(gtsam.Symbol(k).index()): self._estimate.atPose3(k).matrix() for k in self._estimate.keys()}

    def _require(self, key: int) -> None:
        if key not in self:
            raise InputError(f"pose graph variable {key} does not exist")


class _EstimateView(Mapping[int, np.ndarray]):
    """Read-only id -> T_map_body view of a :class:`PoseGraph`'s current estimate."""

    def __init__(self, graph: PoseGraph) -> None:
        self._graph = graph

    def __getitem__(self, key: int) -> np.ndarray:
        est = self._graph._estimate
        if est is None or not est.exists(gtsam.symbol_shorthand.X(key)):
            raise KeyError(key)
        return est.atPose3(gtsam.symbol_shorthand.X(key)).matrix()

    def __contains__(self, key: object) -> bool:
        est = self._graph._estimate
        return isinstance(key, (int, np.integer)) and est is not None and est.exists(gtsam.symbol_shorthand.X(int(key)))

    def __iter__(self) -> Iterator[int]:
        est = self._graph._estimate
        return iter(() if est is None else [int(gtsam.Symbol(k).index()) for k in est.keys()])

    def __len__(self) -> int:
        est = self._graph._estimate
        return 0 if est is None else int(est.size())
