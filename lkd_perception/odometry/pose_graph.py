"""Pose-graph optimiser facade over GTSAM iSAM2 with 4x4 numpy poses.

The facade (add_variable / fix_variable / add_factor / optimize / estimates, after kiss-slam)
keeps GTSAM types out of the pipeline. Only factors and values added since the last
:meth:`PoseGraph.optimize` are passed to ``ISAM2.update``; passing the whole graph again raises
"key already exists" (REFERENCE 3.6). Loop factors can carry a robust kernel (Cauchy or Huber)
so one wrong loop is down-weighted instead of bending the whole map.
"""

from __future__ import annotations

import gtsam
import numpy as np

from lkd_perception.common.errors import ConfigError, InputError


def _noise(sigmas_rot: float, sigmas_trans: float, robust: str) -> gtsam.noiseModel.Base:
    # Pose3 tangent order is rotation then translation
    base = gtsam.noiseModel.Diagonal.Sigmas(np.array([sigmas_rot] * 3 + [sigmas_trans] * 3))
    if robust == "none":
        return base
    if robust == "cauchy":
        return gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Cauchy.Create(1.0), base)
    if robust == "huber":
        return gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Huber.Create(1.345), base)
    raise ConfigError(f"robust kernel must be cauchy, huber or none, got {robust!r}")


class PoseGraph:
    """Incremental SE(3) pose graph; variables are integer ids, poses 4x4 ``T_map_body``."""

    def __init__(self, relinearize_threshold: float = 0.01) -> None:
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(relinearize_threshold)
        params.relinearizeSkip = 1
        self._params = params
        self._isam = gtsam.ISAM2(params)
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._known: set[int] = set()
        self._estimate: gtsam.Values | None = None

    def __contains__(self, key: int) -> bool:
        return key in self._known

    def add_variable(self, key: int, initial: np.ndarray) -> None:
        """Declare a pose variable with its initial guess."""
        if key in self._known:
            raise InputError(f"pose graph variable {key} already exists")
        self._known.add(key)
        self._new_values.insert(gtsam.symbol_shorthand.X(key), gtsam.Pose3(np.asarray(initial, dtype=float)))

    def fix_variable(self, key: int, pose: np.ndarray, sigma: float = 1e-6) -> None:
        """Anchor a variable with a tight prior (the first keyframe anchors the map frame)."""
        self._require(key)
        noise = gtsam.noiseModel.Isotropic.Sigma(6, sigma)
        self._new_factors.add(gtsam.PriorFactorPose3(gtsam.symbol_shorthand.X(key), gtsam.Pose3(np.asarray(pose, dtype=float)), noise))

    def add_factor(
        self, key_from: int, key_to: int, T_from_to: np.ndarray, sigma_rot: float, sigma_trans: float, robust: str = "none"
    ) -> None:
        """A relative-pose constraint ``T_from^-1 T_to = T_from_to``."""
        self._require(key_from)
        self._require(key_to)
        self._new_factors.add(
            gtsam.BetweenFactorPose3(
                gtsam.symbol_shorthand.X(key_from),
                gtsam.symbol_shorthand.X(key_to),
                gtsam.Pose3(np.asarray(T_from_to, dtype=float)),
                _noise(sigma_rot, sigma_trans, robust),
            )
        )

    def optimize(self, relinearize_all: bool = False) -> None:
        """Add the new factors/values to iSAM2 and update the estimate.

        ``relinearize_all`` (after a loop closure) then runs Levenberg-Marquardt on the whole
        graph and restarts iSAM2 from its result: iSAM2 relinearises only variables that moved
        past the threshold, so with a robust loop kernel (weights re-evaluated only on
        relinearisation) a large correction would otherwise converge over many scans.
        """
        self._isam.update(self._new_factors, self._new_values)
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        estimate = self._isam.calculateEstimate()
        if relinearize_all:
            graph = self._isam.getFactorsUnsafe()
            params = gtsam.LevenbergMarquardtParams()
            params.setMaxIterations(100)
            estimate = gtsam.LevenbergMarquardtOptimizer(graph, estimate, params).optimize()
            self._isam = gtsam.ISAM2(self._params)
            self._isam.update(graph, estimate)
        self._estimate = estimate

    def estimate(self, key: int) -> np.ndarray:
        """Current optimised pose of one variable."""
        self._require(key)
        if self._estimate is None or not self._estimate.exists(gtsam.symbol_shorthand.X(key)):
            raise InputError(f"variable {key} has not been optimised yet; call optimize()")
        return self._estimate.atPose3(gtsam.symbol_shorthand.X(key)).matrix()

    def estimates(self) -> dict[int, np.ndarray]:
        """All optimised poses by id."""
        if self._estimate is None:
            return {}
        return {k: self._estimate.atPose3(gtsam.symbol_shorthand.X(k)).matrix() for k in sorted(self._known) if self._estimate.exists(gtsam.symbol_shorthand.X(k))}

    def _require(self, key: int) -> None:
        if key not in self._known:
            raise InputError(f"pose graph variable {key} does not exist")
