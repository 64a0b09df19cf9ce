"""BEV-LIO(LC)-style LiDAR-inertial odometry: the per-scan steps of the front end.

``LioPipeline.add_scan`` reads as its steps, like KISS-ICP's ``register_frame``: (1) preprocess
(validate, to the body frame) -> (2) predict (IMU preintegration or constant velocity) ->
(3) deskew with the prediction, BEV image and features -> (4) register a voxel sample (BEV
matches to the previous scan + point-to-plane, checked for poor fits and degeneracy) ->
(5) update the motion, deskew with it and update the map -> (6) keyframe and back end
(:class:`~lkd_perception.odometry.backend.BackEnd`: loop closure, pose graph, map -> odom).
Odometry (odom -> base_link) is continuous; loop closures only change map -> odom (REP-105).
:func:`run_pipeline` feeds a recording's IMU samples and scans in order.
"""
from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.io.codecs import Cloud
from lkd_perception.odometry.backend import BackEnd
from lkd_perception.odometry.bev import BevGrid, BevImage, bev_image
from lkd_perception.odometry.config import OdometryConfig, extrinsic_matrix
from lkd_perception.odometry.features import BevFeatures, FeatureExtractor, match_mutual, ransac_rigid_2d
from lkd_perception.odometry.loop_closure import LoopClosure, polar_descriptor
from lkd_perception.odometry.motion import ImuBuffer, ImuDeskew, InertialState, Preintegrated, Twist, deskew
from lkd_perception.odometry.registration import (
    BevRows,
    LocalMap,
    RegistrationResult,
    ScanMotion,
    register,
    voxel_downsample,
    voxel_indices,
)
from lkd_perception.odometry.uncertainty import ScanUncertainty, scan_uncertainty

log = logging.getLogger(__name__)


class OdometryHealth(enum.Enum):
    """How a scan's registration went (its value is the first word of the scan's summary)."""

    INITIALISED = "initialised"  # the first scan: it defines the odom frame
    OK = "ok"
    DEGRADED = "degraded"  # too little structure, a poor fit or little overlap: see the detail


@dataclass(frozen=True)
class OdometryResult:
    """The outcome of one scan.

    ``pose``: T_odom_base (4x4); ``map_T_odom``: the loop-closure correction; ``keyframe``:
    whether this scan became a keyframe; ``loop_closures``: loops accepted at this scan;
    ``health`` and ``trusted`` (the scan entered the map and may become a keyframe: a degraded
    scan can still be trusted when only its overlap is low); ``detail``: the human-readable
    rest, for logs and diagnostics (:attr:`summary`).
    """

    stamp_ns: int
    pose: np.ndarray
    map_T_odom: np.ndarray
    keyframe: bool
    loop_closures: tuple[LoopClosure, ...]
    health: OdometryHealth
    trusted: bool
    detail: str = ""
    bev_inliers: int = 0
    overlap: float = 0.0
    twist: Twist = field(default_factory=Twist.zero)
    uncertainty: ScanUncertainty = field(default_factory=ScanUncertainty.origin)

    @property
    def summary(self) -> str:
        """One line for logs and diagnostics: ``"<health>: <detail>"``."""
        return f"{self.health.value}: {self.detail}" if self.detail else self.health.value

    @property
    def warning(self) -> bool:
        """Degraded or degenerate: a WARN on the node's /diagnostics and a degraded scan in a run's summary."""
        return self.health is OdometryHealth.DEGRADED or self.uncertainty.degenerate


@dataclass(frozen=True)
class _Fit:
    """The registration step's outcome: the scan's pose and how it was obtained."""

    pose: np.ndarray
    overlap: float
    health: OdometryHealth
    detail: str
    trusted: bool
    bev_inliers: int = 0
    uncertainty: ScanUncertainty = field(default_factory=ScanUncertainty.origin)

    @staticmethod
    def first_scan() -> "_Fit":
        """The first scan defines the odom frame."""
        return _Fit(np.eye(4), 1.0, OdometryHealth.INITIALISED, "", True)


# a registration is "poor" (redone coarse-to-fine, then "degraded") when its overlap is this much
# below, or its point-to-plane RMSE this many times above, the median of the last good scans:
# a wrong minimum measured at 0.66 / 0.45 m against 0.98 / 0.08 m (urban, 32 beams)
POOR_OVERLAP_DROP = 0.25
POOR_RMSE_RATIO = 3.0
COARSE_WIDEN = 3.0  # correspondence distance factor of the coarse pass
FIRST_INTERVAL_STARTS_M = (2.5, 5.0, 7.5, 10.0)  # extra starts of the second scan's registration
POOR_RESET = 3  # this many poor fits in a row: the scene has changed, accept and re-baseline
MIN_STRUCTURE_VOXELS = 100  # fewer registration voxels than this: keep the prediction


def _deskew(points: np.ndarray, times: np.ndarray | None, twist: Twist) -> np.ndarray:
    """The scan at its stamp under a constant ``twist`` (unchanged without per-point times)."""
    return points if times is None else deskew(points, times, twist)


class LioPipeline:
    """Stateful odometry; feed IMU samples and scans in time order."""

    def __init__(self, config: OdometryConfig) -> None:
        self.config = c = config
        self.T_base_lidar = extrinsic_matrix(c.base_T_lidar)
        T_base_imu = extrinsic_matrix(c.base_T_imu)
        self.imu = ImuBuffer(T_base_imu[:3, :3], lever_arm=T_base_imu[:3, 3] if c.accel_bias else None)
        self.grid = BevGrid.for_range(c.bev_resolution, c.bev_range)
        self.extractor = FeatureExtractor(c.descriptor, c.fast_threshold, c.max_keypoints, c.descriptor_model)
        self.map = LocalMap(c.map_voxel_size, c.map_radius, c.normal_neighbors)
        # the map update (k-d tree rebuild, normals: a third of a scan's time) runs on a worker
        # thread while the next scan is preprocessed; anything that reads the map waits for it
        self._map_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lkd-map")
        self._map_job: Future | None = None
        self.backend = BackEnd(c)
        self._rng = np.random.default_rng(0)
        self._last_stamp: int | None = None
        self._first_scan: tuple[np.ndarray, np.ndarray] | None = None  # points, times: re-deskewed at the second
        self._pose = np.eye(4)
        self._twist = Twist.zero()
        self.inertial = InertialState(accel_bias=c.accel_bias, gravity_norm=c.gravity,
                                      registration_sigma=c.velocity_fusion_sigma)
        self._prev_features: BevFeatures | None = None
        self._fit_history: deque[tuple[float, float]] = deque(maxlen=50)  # (overlap, rmse) of good fits
        self._poor_streak = 0
        self._last_fit: RegistrationResult | None = None  # the fit chosen for the latest scan
        self.last_scan_points = np.zeros((0, 3))

    # ------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether a scan has been accepted (the mounting and the map are fixed from then on)."""
        return self._last_stamp is not None

    @property
    def loop_closures(self) -> list[LoopClosure]:
        """Every loop accepted so far."""
        return self.backend.loop_closures

    def set_lidar_extrinsic(self, T_base_lidar: np.ndarray) -> None:
        """Replace base_link<-lidar (e.g. from /tf_static); only before the first scan, because
        the map and poses already built would silently disagree with a new mounting."""
        self.T_base_lidar = self._new_extrinsic("LiDAR", T_base_lidar)

    def set_imu_extrinsic(self, T_base_imu: np.ndarray) -> None:
        """Replace base_link<-imu (e.g. from /tf_static); only before the first scan. Samples
        already buffered are turned into the new body frame."""
        T = self._new_extrinsic("IMU", T_base_imu)
        self.imu.set_extrinsic(T[:3, :3], T[:3, 3] if self.config.accel_bias else None)

    def _new_extrinsic(self, sensor: str, T_base_sensor: np.ndarray) -> np.ndarray:
        """A validated copy of a mounting that may still change (no scan accepted yet)."""
        if self._last_stamp is not None:
            raise InputError(f"the {sensor} extrinsic can only change before the first scan")
        T = np.asarray(T_base_sensor, dtype=float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"extrinsic must be a finite 4x4 matrix, got shape {T.shape}")
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6):
            raise InputError(f"the {sensor} extrinsic's rotation is not orthonormal")
        return T.copy()

    def add_imu(self, stamp_ns: int, gyro: np.ndarray, accel: np.ndarray) -> None:
        """One IMU sample in the IMU frame (rad/s, m/s^2); bad samples raise :class:`InputError`."""
        self.imu.add(int(stamp_ns), gyro, accel)

    def add_scan(self, stamp_ns: int, cloud: Cloud) -> OdometryResult:
        """Register one scan. Bad input (empty, non-finite, out of order) raises :class:`InputError`
        and leaves the state untouched, so the caller can report it and go on."""
        stamp_ns = int(stamp_ns)
        # 1. preprocess: the valid points in the body frame, with their times when deskewing
        points, times = self._preprocess(stamp_ns, cloud)
        first = self._last_stamp is None
        dt = 0.0 if first else (stamp_ns - self._last_stamp) * 1e-9  # type: ignore[operator]
        # 2. predict the motion since the last scan
        twist, pre = self._predict(stamp_ns, dt)
        predicted = self._pose @ twist.delta(dt)
        motion = self._scan_motion(stamp_ns, times, pre, dt)
        deskewed_at = (lambda pose: points) if motion is None else motion.deskewer(points)
        # 3. deskew with the predicted motion: the BEV image and its features
        bev_points = deskewed_at(predicted) if motion is not None and motion.imu is not None else _deskew(
            points, times, twist)
        bev = bev_image(bev_points, self.grid, self.config.bev_count_cap)
        features = self.extractor.extract(bev)
        # 4. register a voxel sample of the scan (the first scan defines the odom frame)
        idx = self._sample(points)
        fit = _Fit.first_scan() if first else self._register(points, times, idx, predicted, features, pre, dt, motion)
        # 5. update the motion, deskew with it and update the map
        deskewed = points if first else deskewed_at(fit.pose)
        self._update_motion(fit, dt, pre, first)
        map_points = self._update_map(deskewed, times, fit, first)
        self._pose, self._prev_features, self._last_stamp = fit.pose, features, stamp_ns
        # 6. keyframe and back end (loop closure, pose graph)
        is_keyframe, loops = self._update_back_end(stamp_ns, fit, map_points, features, bev)
        detail = fit.detail + (f"; loop closed with keyframe {loops[0].from_id}" if loops else "")
        return OdometryResult(
            stamp_ns,
            fit.pose.copy(),
            self.backend.map_T_odom,
            is_keyframe,
            loops,
            fit.health,
            fit.trusted,
            detail,
            fit.bev_inliers,
            fit.overlap,
            self._twist,
            fit.uncertainty,
        )

    def keyframe_poses(self) -> dict[int, np.ndarray]:
        """Optimised map poses of all keyframes (id -> T_map_base)."""
        return self.backend.keyframe_poses()

    def keyframe_map_pose(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Stamp, T_map_base and its 6x6 covariance of the newest keyframe (see
        :meth:`BackEnd.latest_keyframe`), for a localisation filter or AMCL's initial pose."""
        return self.backend.latest_keyframe()

    def map_trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps (N,) and T_map_base (N, 4, 4) of every accepted scan, each anchored to the
        latest keyframe at its time, so loop closures correct the whole history."""
        return self.backend.trajectory()

    def map_path(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps and T_map_base of the keyframes plus the latest scan: the loop-corrected path
        at keyframe spacing, for a live Path message whose cost must not grow with every scan."""
        if self._last_stamp is None:
            return np.zeros(0, np.int64), np.zeros((0, 4, 4))
        return self.backend.path(self._last_stamp, self._pose)

    # -- the steps of add_scan -----------------------------------------------------------------
    def _predict(self, stamp_ns: int, dt: float) -> tuple[Twist, Preintegrated | None]:
        """The motion since the last scan: IMU preintegration if samples cover the interval,
        else constant velocity (the last scan's twist)."""
        c = self.config
        last = self._last_stamp
        if last is None or not c.use_imu or not self.imu.covers(last, stamp_ns, c.imu_max_gap_s):
            return self._twist, None
        pre = self.imu.preintegrate(last, stamp_ns, self.inertial.gyro_bias, self.inertial.accel_bias)
        return Twist.from_delta(self.inertial.predict(pre, self._pose[:3, :3]), dt), pre

    def _scan_motion(
        self, stamp_ns: int, times: np.ndarray | None, pre: Preintegrated | None, dt: float
    ) -> ScanMotion | None:
        """The motion inside this sweep (None without per-point times): the IMU's (see
        :class:`SweepMotion`) when ``imu_deskew`` is on, the interval before the scan was
        integrated and samples cover the sweep; else the constant twist's."""
        c = self.config
        if times is None:
            return None
        if pre is None or not c.imu_deskew or not len(times):
            return ScanMotion(times, self._pose, dt)
        end = stamp_ns + int(np.ceil(float(times.max()) * 1e9))
        if not self.imu.covers(stamp_ns, end, c.imu_max_gap_s):
            return ScanMotion(times, self._pose, dt)
        s = self.inertial
        sweep = self.imu.sweep(stamp_ns, times, s.gyro_bias, s.accel_bias)
        g_b0 = self._pose[:3, :3].T @ s.gravity_for(pre, self._pose[:3, :3])
        return ScanMotion(times, self._pose, dt, ImuDeskew(sweep, pre, g_b0))

    def _sample(self, points: np.ndarray) -> np.ndarray:
        """Indices of the registration points: one per voxel, at most ``max_source_points``
        (drawn on every scan, the first included, so the random stream a scan sees depends only
        on the scans before it)."""
        c = self.config
        idx = voxel_indices(points, c.voxel_size)
        if len(idx) > c.max_source_points:
            idx = np.sort(self._rng.choice(idx, c.max_source_points, replace=False))
        return idx

    def _register(
        self,
        points: np.ndarray,
        times: np.ndarray | None,
        idx: np.ndarray,
        predicted: np.ndarray,
        features: BevFeatures,
        pre: Preintegrated | None,
        dt: float,
        scan_motion: ScanMotion | None,
    ) -> _Fit:
        """The scan's pose: its sample ``points[idx]`` registered to the map with the BEV matches
        to the previous scan and the in-scan motion, checked; the second scan refined against a
        re-deskewed first; a degenerate axis kept at the prediction."""
        source = points[idx]
        motion = None if scan_motion is None else scan_motion.select(idx)
        bev_rows, bev_guess = self._bev_rows(features, predicted)
        pose, overlap, health, detail, trusted = self._register_scan(
            source, predicted, bev_rows, bev_guess, motion, pre is not None
        )
        if self._first_scan is not None and motion is not None and trusted:
            pose = self._refine_second_scan(source, pose, motion, bev_rows)
        fit = self._last_fit
        uncertainty = scan_uncertainty(
            np.zeros((6, 6)) if fit is None else fit.information,
            np.zeros((0, 3)) if fit is None else fit.normals,
            float("inf") if fit is None else fit.rmse,
            pose[:3, :3],
            dt,
            self.config.degeneracy_min_points,
        )
        if uncertainty.degenerate:
            # the registration's position along the free axis is noise (normal errors, the
            # map's edge): keep the prediction's there (LOAM's solution remapping)
            a = uncertainty.weakest_axis
            pose = pose.copy()
            pose[:3, 3] += a * float(a @ (predicted[:3, 3] - pose[:3, 3]))
            axis = ", ".join(f"{v:+.2f}" for v in a)
            detail += (
                f"; degenerate: only {uncertainty.support} points constrain ({axis}); "
                f"kept at the {'IMU' if pre is not None else 'constant-velocity'} prediction along it"
            )
        n_bev = 0 if bev_rows is None else len(bev_rows.anchors)
        return _Fit(pose, overlap, health, detail, trusted, n_bev, uncertainty)

    def _update_motion(self, fit: _Fit, dt: float, pre: Preintegrated | None, first: bool) -> None:
        """The twist the scan's pose implies (the next constant-velocity prediction and the
        deskew of this scan) and the inertial state (velocity, gravity, biases) corrected by it;
        along a degenerate axis the pose is the IMU's own prediction, which tells the inertial
        state nothing there."""
        if first:
            self._twist = Twist.zero()
            return
        delta = pose_inverse(self._pose) @ fit.pose
        self._twist = Twist.from_delta(delta, dt)
        free = fit.uncertainty.weakest_axis if fit.uncertainty.degenerate else None
        self.inertial.update(pre, self._pose[:3, :3], delta, dt, free, fit.uncertainty.pose_covariance[:3, :3])

    def _update_map(self, points: np.ndarray, times: np.ndarray | None, fit: _Fit, first: bool) -> np.ndarray:
        """Add the deskewed scan to the map if trusted (a misregistered scan in the map would be
        a ghost that later scans lock onto). The first scan's motion is known only at the second:
        its map is rebuilt then. Returns the scan's map-voxel sample (base frame at the stamp)."""
        c = self.config
        if self._first_scan is not None and times is not None:
            self.backend.set_cloud(0, self._rebuild_first_map(self._twist))
        self._first_scan = (points, times) if first and times is not None else None
        map_points = voxel_downsample(points, c.map_voxel_size)
        self.last_scan_points = map_points  # deskewed, base frame at the stamp (for display)
        if fit.trusted:
            self.local_map()  # a failed update surfaces here, before the next one is queued
            self._map_job = self._map_worker.submit(
                self.map.update, transform_points(fit.pose, map_points), fit.pose[:3, 3].copy()
            )
        return map_points

    def local_map(self) -> LocalMap:
        """The registration map with every accepted scan in it (waits for a pending update;
        re-raises its error)."""
        job, self._map_job = self._map_job, None
        if job is not None:
            job.result()
        return self.map

    def _update_back_end(
        self, stamp_ns: int, fit: _Fit, map_points: np.ndarray, features: BevFeatures, bev: BevImage
    ) -> tuple[bool, tuple[LoopClosure, ...]]:
        """A trusted scan far enough from the last keyframe becomes one (and closes loops);
        every scan is anchored to the newest keyframe for the loop-corrected trajectory.
        Returns whether the scan became a keyframe and the loops accepted."""
        is_keyframe = fit.trusted and self.backend.wants_keyframe(fit.pose)
        loops: tuple[LoopClosure, ...] = ()
        if is_keyframe:
            polar = polar_descriptor(bev, self.config.bev_range)
            kf = self.backend.add_keyframe(stamp_ns, fit.pose, map_points, features, polar)
            loops = self.backend.close_loops(kf)
        self.backend.anchor(stamp_ns, fit.pose)
        return is_keyframe, loops

    # ------------------------------------------------------------------------------------------
    def _register_scan(
        self,
        source: np.ndarray,
        predicted: np.ndarray,
        bev_rows: BevRows | None,
        bev_guess: np.ndarray | None,
        motion: ScanMotion | None,
        imu_predicted: bool,
    ) -> tuple[np.ndarray, float, OdometryHealth, str, bool]:
        """Pose, overlap, health and its detail of one scan and whether it may enter the map:
        registration from the prediction, checked.

        Point-to-plane Gauss-Newton converges from a few degrees of yaw error at most (at 30 m,
        5 deg moves a wall 2.6 m, beyond the correspondence distance). After skipped scans
        without IMU a constant-velocity prediction through a turn is farther off than that,
        and registration then settles in a wrong minimum that still looks "ok". So: (1) when the
        BEV matches put the scan far from the prediction, registration also starts from the BEV
        pose; (2) a fit clearly worse than the recent ones (:data:`POOR_OVERLAP_DROP`,
        :data:`POOR_RMSE_RATIO`) is redone coarse-to-fine (a wider correspondence distance first);
        the best fit wins. (3) If even that is poor and the IMU gave the prediction, the
        prediction is kept (it is good to centimetres over a second); either way the scan is
        reported "degraded" and stays out of the map and the keyframes. After
        :data:`POOR_RESET` poor scans in a row the scene itself has changed (open ground after
        streets): the fit is accepted and becomes the new reference.
        """
        self._last_fit = None

        def run(initial: np.ndarray, widen: float = 1.0) -> RegistrationResult:
            return self._fit_to_map(source, initial, motion, bev_rows, widen)

        def better(a: RegistrationResult, b: RegistrationResult, overlap_gain: float, rmse_ratio: float) -> bool:
            return a.overlap > b.overlap + overlap_gain or (
                a.overlap >= b.overlap - 0.01 and a.rmse < rmse_ratio * b.rmse
            )

        if len(source) < MIN_STRUCTURE_VOXELS:
            # e.g. the sensor blocked by an object beside it: a handful of voxels cannot hold six
            # degrees of freedom (measured: 18 voxels within 1.3 m, registration turned by 93 deg)
            return (
                predicted,
                0.0,
                OdometryHealth.DEGRADED,
                f"only {len(source)} voxels of structure; pose from the motion prediction",
                False,
            )
        starts = [("", predicted)] + ([(", from the BEV guess", bev_guess)] if bev_guess is not None else [])
        if self._first_scan is not None:
            # the second scan: the start velocity was unknown (zero assumed), so at a low input rate
            # the prediction can be metres short; also start from farther along the heading
            starts += [(f", from {d:.0f} m ahead", predicted @ make_pose(np.eye(3), [d, 0.0, 0.0]))
                       for d in FIRST_INTERVAL_STARTS_M]
        best, how = run(predicted), ""
        for label, initial in starts[1:]:
            # In a self-similar scene (a corridor) a fit from the BEV guess can be an aliased copy of
            # the right one, as good to within noise; only a clear win replaces the prediction's fit
            # (measured: corridor APE 15.5 m when any small win counted, 0.5 m with this).
            alt = run(initial)
            if better(alt, best, overlap_gain=0.05, rmse_ratio=0.8):
                best, how = alt, label
        if self._poor_fit(best):
            for label, initial in starts:
                coarse = run(initial, widen=COARSE_WIDEN)
                alt = run(coarse.pose)
                if better(alt, best, overlap_gain=0.01, rmse_ratio=1.0):
                    best, how = alt, label + ", coarse-to-fine"
        self._last_fit = best
        if self._poor_fit(best):
            self._poor_streak += 1
            if self._poor_streak < POOR_RESET:
                summary = f"overlap {best.overlap:.2f}, rmse {best.rmse:.3f} m"
                if imu_predicted:
                    return (
                        predicted,
                        best.overlap,
                        OdometryHealth.DEGRADED,
                        f"registration failed ({summary}); pose from the IMU prediction",
                        False,
                    )
                return best.pose, best.overlap, OdometryHealth.DEGRADED, f"poor registration ({summary}{how})", False
            self._fit_history.clear()
            how += f", accepted after {POOR_RESET} poor fits"
        self._poor_streak = 0
        self._fit_history.append((best.overlap, best.rmse))
        if best.overlap < 0.2:
            detail = f"only {best.overlap:.0%} of points matched the map"
            return best.pose, best.overlap, OdometryHealth.DEGRADED, detail, True
        detail = f"{best.iterations} it, overlap {best.overlap:.2f}, rmse {best.rmse:.3f} m{how}"
        return best.pose, best.overlap, OdometryHealth.OK, detail, True

    def _fit_to_map(self, source: np.ndarray, initial: np.ndarray, motion: ScanMotion | None,
                  bev_rows: BevRows | None, widen: float = 1.0) -> RegistrationResult:
        """One registration of ``source`` against the local map from ``initial``, with the
        configured solver settings (``widen`` scales the correspondence distance: coarse-to-fine)."""
        c = self.config
        return register(source, self.local_map(), initial, c.max_correspondence_distance * widen, c.max_iterations,
                        c.convergence, bev=bev_rows, bev_weight=c.bev_weight, prior_weight=c.prior_weight,
                        motion=motion, trim_scales=c.residual_trim)

    def _rebuild_first_map(self, twist: Twist) -> np.ndarray:
        """The map from the first scan deskewed with ``twist`` (its motion is known only from the second)."""
        c = self.config
        first_pts, first_times = self._first_scan  # type: ignore[misc]
        first_map = voxel_downsample(deskew(first_pts, first_times, twist), c.map_voxel_size)
        self.local_map()
        self.map = LocalMap(c.map_voxel_size, c.map_radius, c.normal_neighbors)
        self.map.update(first_map, np.zeros(3))
        return first_map

    def _refine_second_scan(
        self, source: np.ndarray, pose: np.ndarray, motion: ScanMotion, bev_rows: BevRows | None
    ) -> np.ndarray:
        """Register the second scan again against the first scan deskewed with the motion just
        estimated. The first registration ran against a first scan smeared by the whole sweep's
        motion (unknown then): on a real Ouster clip at 2.5 m/s it found 0.165 m for a 0.25 m step."""
        for _ in range(2):
            self._rebuild_first_map(motion.twist(pose))
            fit = self._fit_to_map(source, pose, motion, bev_rows)
            pose, self._last_fit = fit.pose, fit
        return pose

    def _poor_fit(self, reg: RegistrationResult) -> bool:
        """Clearly worse than the median of the recent accepted fits (none yet: not poor)."""
        if len(self._fit_history) < 5:
            return False
        ov, rmse = np.median(np.asarray(self._fit_history), axis=0)
        return bool(reg.overlap < ov - POOR_OVERLAP_DROP or reg.rmse > POOR_RMSE_RATIO * rmse)

    def _preprocess(self, stamp_ns: int, cloud: Cloud) -> tuple[np.ndarray, np.ndarray | None]:
        """Valid points (finite, within range) in the body frame, with their times (None when
        the cloud has none or deskewing is off)."""
        c = self.config
        if self._last_stamp is not None and stamp_ns <= self._last_stamp:
            raise InputError(f"scan stamp {stamp_ns} is not after the previous scan {self._last_stamp}; skipped")
        xyz = np.asarray(cloud.xyz, dtype=np.float64)
        finite = np.all(np.isfinite(xyz), axis=1)
        times = None if cloud.time is None else np.asarray(cloud.time, dtype=np.float64)
        if times is not None:
            finite &= np.isfinite(times)
        r = np.linalg.norm(xyz, axis=1)
        keep = finite & (r >= c.min_range) & (r <= c.max_range)
        if int(keep.sum()) < c.min_points:
            raise InputError(
                f"scan has {int(keep.sum())} valid points (of {len(xyz)}; {int((~finite).sum())} non-finite) "
                f"within {c.min_range}-{c.max_range} m, need {c.min_points}; skipped"
            )
        pts = transform_points(self.T_base_lidar, xyz[keep])
        return pts, None if times is None or not c.deskew else times[keep]

    def _bev_rows(self, features: BevFeatures, predicted: np.ndarray) -> tuple[BevRows | None, np.ndarray | None]:
        """BEV rows for the registration, and a second initial pose when the BEV matches put
        the scan farther from the prediction than registration reliably converges from."""
        c = self.config
        prev = self._prev_features
        if prev is None:
            return None, None
        pairs = match_mutual(prev, features)
        if len(pairs) < c.bev_min_matches:
            return None, None
        # RANSAC in the current body frame: previous keypoints moved by the predicted motion
        rel = pose_inverse(predicted) @ self._pose
        src = prev.xy[pairs[:, 0]] @ rel[:2, :2].T + rel[:2, 3]
        fit = ransac_rigid_2d(src, features.xy[pairs[:, 1]], c.ransac_threshold, c.ransac_iterations, self._rng)
        if fit is None or int(fit.inliers.sum()) < c.bev_min_matches:
            return None, None
        good = pairs[fit.inliers]
        anchors_body = np.concatenate([prev.xy[good[:, 0]], np.zeros((len(good), 1))], axis=1)
        rows = BevRows(transform_points(self._pose, anchors_body), features.xy[good[:, 1]], c.bev_resolution)
        # the fit maps predicted-frame points to the current frame: current = predicted @ F^-1
        guess = None
        if np.linalg.norm(fit.translation) > c.bev_guess_distance or abs(fit.yaw) > c.bev_guess_angle:
            F = make_pose(yaw_pitch_roll_matrix(fit.yaw), [fit.translation[0], fit.translation[1], 0.0])
            guess = predicted @ pose_inverse(F)
        return rows, guess


def run_pipeline(
    pipeline: LioPipeline,
    scans: Iterable[tuple[int, Cloud]],
    imu_stamps: np.ndarray,
    imu_gyro: np.ndarray,
    imu_accel: np.ndarray,
) -> int:
    """Feed IMU samples up to each scan's end, then the scan; bad samples and scans are logged
    and skipped, as the node does. Returns the number of skipped scans."""
    k, skipped = 0, 0
    for stamp, cloud in scans:
        end = stamp + (int(cloud.time.max() * 1e9) if cloud.time is not None and len(cloud) else 0) + 10_000_000
        while k < len(imu_stamps) and imu_stamps[k] <= end:
            try:
                pipeline.add_imu(int(imu_stamps[k]), imu_gyro[k], imu_accel[k])
            except InputError as exc:
                log.warning("IMU sample skipped: %s", exc)
            k += 1
        try:
            pipeline.add_scan(stamp, cloud)
        except InputError as exc:
            skipped += 1
            log.warning("scan at %d skipped: %s", stamp, exc)
    return skipped
