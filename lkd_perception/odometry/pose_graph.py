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

Bounded memory: iSAM2's factorisation grows with every keyframe (about 14 MB per km with loop
fill-in), which an all-day drive cannot afford. :meth:`PoseGraph.retire` takes the oldest
variables out of iSAM2 and fixes them at their current estimate. The oldest live variable gets a
prior with its marginal covariance in place of its odometry link to the retired chain, so the
live part keeps the uncertainty the drift gave it; any other factor between a retired and a live
variable (a loop) becomes a prior on the live one (conditioning on the retired pose). A loop to
an old place then still pulls the live part there, while the retired part no longer moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

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


def _inverse(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


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
    """A relative-pose factor; with ``anchor`` (the fixed pose of a retired ``key_from``) a prior
    on ``key_to`` at ``anchor @ T``."""

    key_from: int
    key_to: int
    T: np.ndarray
    sigma_rot: float
    sigma_trans: float
    robust: str
    anchor: np.ndarray | None = None

    def factor(self, with_kernel: bool) -> gtsam.NonlinearFactor:
        noise = _sigmas(self.sigma_rot, self.sigma_trans)
        model = _robust(noise, self.robust) if with_kernel else noise
        if self.anchor is not None:
            pose = gtsam.Pose3(self.anchor @ self.T)
            return gtsam.PriorFactorPose3(gtsam.symbol_shorthand.X(self.key_to), pose, model)
        return gtsam.BetweenFactorPose3(
            gtsam.symbol_shorthand.X(self.key_from), gtsam.symbol_shorthand.X(self.key_to), gtsam.Pose3(self.T), model
        )

    def anchored(self, retired: Mapping[int, np.ndarray]) -> "_Between | None":
        """This factor with its retired end fixed (a prior on the live end), None when both ends
        are retired. A retired ``key_to`` swaps the ends: the inverse relative pose, with the same
        rotation and translation sigmas (equal per axis, so nearly the same noise)."""
        if self.anchor is not None:
            return None if self.key_to in retired else self
        if self.key_from in retired and self.key_to in retired:
            return None
        if self.key_from in retired:
            return replace(self, anchor=retired[self.key_from].copy())
        if self.key_to in retired:
            return _Between(self.key_to, self.key_from, _inverse(self.T), self.sigma_rot, self.sigma_trans,
                            self.robust, retired[self.key_to].copy())
        return self


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
        self._retired: dict[int, np.ndarray] = {}  # key -> fixed T_map_body, out of iSAM2
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
        b = b.anchored(self._retired)  # type: ignore[assignment]
        if b is None:
            raise InputError(f"pose graph variables {key_from} and {key_to} are both retired")
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
            graph = self._active_graph()
            self._isam = gtsam.ISAM2(self._params)
            self._isam.update(graph, estimate)
            estimate = self._isam.calculateEstimate()
        self._estimate = estimate

    def _active_graph(self) -> gtsam.NonlinearFactorGraph:
        """Every prior and every between factor not rejected as an outlier, robust kernels on: the
        graph a rebuilt iSAM2 starts from."""
        graph = gtsam.NonlinearFactorGraph()
        for f in self._priors:
            graph.add(f)
        for i, b in enumerate(self._betweens):
            if i not in self._rejected:
                graph.add(b.factor(with_kernel=True))
        return graph

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
        graph = self._active_graph()
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
        if est is None or not est.exists(kt) or (b.anchor is None and not est.exists(kf)):
            return False
        start = gtsam.Pose3(b.anchor) if b.anchor is not None else est.atPose3(kf)
        rel = start.between(est.atPose3(kt))
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

    def retire(self, below: int) -> int:
        """Fix every variable with a key below ``below`` at its current estimate and take it out
        of iSAM2 (see the module doc): the memory and time of the graph then depend on the live
        variables only. Factors between retired variables go, a factor with one retired end
        becomes a prior on the other. Call after :meth:`optimize`; returns how many retired."""
        if self._estimate is None or self._new_factors.size() or self._new_values.size():
            raise InputError("retire() needs an optimised graph with nothing pending; call optimize() first")
        keys = sorted(k for k in self._keys if k < below and k not in self._retired)
        if not keys:
            return 0
        if not any(k >= below for k in self._keys):
            raise InputError(f"retiring below {below} would leave no live variable")
        boundary = min(k for k in self._keys if k >= below and k not in self._retired)
        X = gtsam.symbol_shorthand.X
        try:
            cov = np.asarray(self._isam.marginalCovariance(X(boundary)))
        except RuntimeError as exc:  # an ill-conditioned graph: keep it whole this time
            reason = " ".join(str(exc).split())[:160]
            log.warning("pose graph: no marginal of variable %d (%s); nothing retired", boundary, reason)
            return 0
        for k in keys:
            self._retired[k] = self.estimate(k)
        self._priors = [f for f in self._priors if int(gtsam.Symbol(f.keys()[0]).index()) not in self._retired]
        # the oldest live variable keeps the uncertainty the retired chain gave it (its marginal),
        # not the odometry factor's tight link to a retired pose: a loop can still move the live
        # part as a whole by the drift accumulated in the retired part
        prior = gtsam.PriorFactorPose3(X(boundary), self._estimate.atPose3(X(boundary)),
                                       gtsam.noiseModel.Gaussian.Covariance(0.5 * (cov + cov.T)))
        self._priors.append(prior)
        betweens: list[_Between] = []
        rejected: set[int] = set()
        for i, b in enumerate(self._betweens):
            a = b.anchored(self._retired)
            if a is None or (a.anchor is not None and a.key_to == boundary and a.robust == "none"):
                continue
            if i in self._rejected:
                rejected.add(len(betweens))
            betweens.append(a)
        self._betweens, self._rejected = betweens, rejected
        values = gtsam.Values()
        for k in self._keys:
            if k not in self._retired:
                values.insert(gtsam.symbol_shorthand.X(k), self._estimate.atPose3(gtsam.symbol_shorthand.X(k)))
        graph = self._active_graph()
        self._isam = gtsam.ISAM2(self._params)
        self._isam.update(graph, values)
        self._estimate = self._isam.calculateEstimate()
        return len(keys)

    @property
    def live_variables(self) -> int:
        """Variables in iSAM2 (not retired)."""
        return len(self._keys) - len(self._retired)

    @property
    def graph_factors(self) -> int:
        """Factors iSAM2 holds (what its memory grows with)."""
        return int(self._isam.getFactorsUnsafe().size())

    def estimate(self, key: int) -> np.ndarray:
        """Current optimised pose of one variable (a retired one: its fixed pose)."""
        if key in self._retired:
            return self._retired[key].copy()
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
        out = {k: T.copy() for k, T in self._retired.items()}
        if self._estimate is not None:
            est = self._estimate
            out.update({int(gtsam.Symbol(k).index()): est.atPose3(k).matrix() for k in est.keys()})
        return out

    def _require(self, key: int) -> None:
        if key not in self:
            raise InputError(f"pose graph variable {key} does not exist")


class _EstimateView(Mapping[int, np.ndarray]):
    """Read-only id -> T_map_body view of a :class:`PoseGraph`'s current estimate."""

    def __init__(self, graph: PoseGraph) -> None:
        self._graph = graph

    def __getitem__(self, key: int) -> np.ndarray:
        retired = self._graph._retired
        if key in retired:
            return retired[key]
        est = self._graph._estimate
        if est is None or not est.exists(gtsam.symbol_shorthand.X(key)):
            raise KeyError(key)
        return est.atPose3(gtsam.symbol_shorthand.X(key)).matrix()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (int, np.integer)):
            return False
        est = self._graph._estimate
        return int(key) in self._graph._retired or (est is not None and est.exists(gtsam.symbol_shorthand.X(int(key))))

    def __iter__(self) -> Iterator[int]:
        est = self._graph._estimate
        live = () if est is None else [int(gtsam.Symbol(k).index()) for k in est.keys()]
        return iter([*self._graph._retired, *live])

    def __len__(self) -> int:
        est = self._graph._estimate
        return len(self._graph._retired) + (0 if est is None else int(est.size()))
