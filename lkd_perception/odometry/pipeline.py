"""BEV-LIO(LC)-style LiDAR-inertial odometry: the per-scan steps and the loop-closing back end.

``LioPipeline.add_scan`` runs, in order: validate -> to body frame -> predict (gyro + constant
velocity) -> deskew -> BEV image + features -> BEV matches to the previous scan -> coupled
point-to-plane + BEV Gauss-Newton -> map update -> keyframe? -> loop closure + pose graph.
Odometry (odom -> base_link) is continuous; loop closures only change map -> odom (REP-105).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, pose_inverse, rotation_angle, transform_points, yaw_pitch_roll_matrix
from lkd_perception.io.codecs import Cloud
from lkd_perception.odometry.bev import BevGrid, BevImage, bev_image
from lkd_perception.odometry.config import OdometryConfig
from lkd_perception.odometry.features import BevFeatures, FeatureExtractor, match_mutual, ransac_rigid_2d
from lkd_perception.odometry.keyframes import Keyframe, pack_cloud
from lkd_perception.odometry.loop_closure import LoopClosure, LoopDetector, LoopParams, polar_descriptor
from lkd_perception.odometry.motion import ImuBuffer, InertialState, Twist, deskew
from lkd_perception.odometry.pose_graph import PoseGraph
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


@dataclass(frozen=True)
class OdometryResult:
    """The outcome of one scan.

    ``pose``: T_odom_base (4x4); ``map_T_odom``: the loop-closure correction; ``keyframe``:
    whether this scan became a keyframe; ``loop_closures``: loops accepted at this scan;
    ``status``: a one-line human-readable summary for logs and diagnostics.
    """

    stamp_ns: int
    pose: np.ndarray
    map_T_odom: np.ndarray
    keyframe: bool
    loop_closures: tuple[LoopClosure, ...]
    status: str
    bev_inliers: int = 0
    overlap: float = 0.0
    twist: Twist = field(default_factory=Twist.zero)
    uncertainty: ScanUncertainty = field(default_factory=ScanUncertainty.origin)

    @property
    def map_pose(self) -> np.ndarray:
        """T_map_base = map_T_odom @ pose."""
        return self.map_T_odom @ self.pose


# a registration is "poor" (redone coarse-to-fine, then "degraded") when its overlap is this much
# below, or its point-to-plane RMSE this many times above, the median of the last good scans:
# a wrong minimum measured at 0.66 / 0.45 m against 0.98 / 0.08 m (urban, 32 beams)
POOR_OVERLAP_DROP = 0.25
POOR_RMSE_RATIO = 3.0
COARSE_WIDEN = 3.0  # correspondence distance factor of the coarse pass
POOR_RESET = 3  # this many poor fits in a row: the scene has changed, accept and re-baseline
MIN_STRUCTURE_VOXELS = 100  # fewer registration voxels than this: keep the prediction


def _pose_from_xyzrpy(v: list[float]) -> np.ndarray:
    x, y, z, roll, pitch, yaw = v
    return make_pose(yaw_pitch_roll_matrix(yaw, pitch, roll), [x, y, z])


class _AnchorLog:
    """Per-scan (stamp, keyframe id, T_kf_scan) in growing numpy arrays: about 110 bytes a scan
    instead of a Python tuple and a 4x4 array each (about 400)."""

    def __init__(self) -> None:
        self._n = 0
        self._stamps = np.zeros(0, np.int64)
        self._kids = np.zeros(0, np.int32)
        self._rel = np.zeros((0, 3, 4))

    def __len__(self) -> int:
        return self._n

    def append(self, stamp_ns: int, kid: int, T_kf_scan: np.ndarray) -> None:
        if self._n == len(self._stamps):
            cap = max(256, 2 * self._n)
            self._stamps = np.resize(self._stamps, cap)
            self._kids = np.resize(self._kids, cap)
            self._rel = np.resize(self._rel, (cap, 3, 4))
        self._stamps[self._n], self._kids[self._n], self._rel[self._n] = stamp_ns, kid, T_kf_scan[:3]
        self._n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps (N,), keyframe ids (N,) and T_kf_scan (N, 4, 4)."""
        n = self._n
        rel = np.zeros((n, 4, 4))
        rel[:, :3], rel[:, 3, 3] = self._rel[:n], 1.0
        return self._stamps[:n].copy(), self._kids[:n].copy(), rel


class LioPipeline:
    """Stateful odometry; feed IMU samples and scans in time order."""

    def __init__(self, config: OdometryConfig) -> None:
        self.config = c = config
        self.T_base_lidar = _pose_from_xyzrpy(c.base_T_lidar)
        self.imu = ImuBuffer(_pose_from_xyzrpy(c.base_T_imu)[:3, :3])
        self.grid = BevGrid.for_range(c.bev_resolution, c.bev_range)
        self.extractor = FeatureExtractor(c.descriptor, c.fast_threshold, c.max_keypoints, c.descriptor_model)
        self.map = LocalMap(c.map_voxel_size, c.map_radius, c.normal_neighbors)
        self.graph = PoseGraph()
        self.loops = LoopDetector(
            LoopParams(
                min_age_s=c.loop_min_age_s,
                search_radius=c.loop_search_radius,
                candidates=c.loop_candidates,
                descriptor_distance=c.loop_descriptor_distance,
                submap_keyframes=c.loop_submap_keyframes,
                max_rmse=c.loop_max_rmse,
                min_overlap=c.loop_min_overlap,
                ransac_threshold=c.ransac_threshold,
                ransac_iterations=c.ransac_iterations,
                min_inliers=c.bev_min_matches,
                map_voxel=c.map_voxel_size,
                normal_neighbors=c.normal_neighbors,
                max_correspondence=c.max_correspondence_distance,
                resident_keyframes=c.keyframes_in_memory,
            )
        )
        self._rng = np.random.default_rng(0)
        self._last_stamp: int | None = None
        self._first_scan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # points, times, subsample
        self._pose = np.eye(4)
        self._twist = Twist.zero()
        self.inertial = InertialState()
        self._prev_features: BevFeatures | None = None
        self._last_kf_pose: np.ndarray | None = None
        self._map_T_odom = np.eye(4)
        self._keyframes: dict[int, np.ndarray] = {}  # id -> odom pose
        self.loop_closures: list[LoopClosure] = []
        self._anchors = _AnchorLog()  # every scan: stamp, keyframe id, T_kf_scan
        self._fit_history: deque[tuple[float, float]] = deque(maxlen=50)  # (overlap, rmse) of good fits
        self._poor_streak = 0
        self._last_fit: RegistrationResult | None = None  # the fit chosen for the latest scan
        self.last_scan_points = np.zeros((0, 3))

    # ------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether a scan has been accepted (the mounting and the map are fixed from then on)."""
        return self._last_stamp is not None

    def set_lidar_extrinsic(self, T_base_lidar: np.ndarray) -> None:
        """Replace base_link<-lidar (e.g. from /tf_static); only before the first scan, because
        the map and poses already built would silently disagree with a new mounting."""
        if self._last_stamp is not None:
            raise InputError("the LiDAR extrinsic can only change before the first scan")
        T = np.asarray(T_base_lidar, dtype=float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"extrinsic must be a finite 4x4 matrix, got shape {T.shape}")
        self.T_base_lidar = T.copy()

    def add_imu(self, stamp_ns: int, gyro: np.ndarray, accel: np.ndarray) -> None:
        """One IMU sample in the IMU frame (rad/s, m/s^2); bad samples raise :class:`InputError`."""
        self.imu.add(int(stamp_ns), gyro, accel)

    def add_scan(self, stamp_ns: int, cloud: Cloud) -> OdometryResult:
        """Register one scan. Bad input (empty, non-finite, out of order) raises :class:`InputError`
        and leaves the state untouched, so the caller can report it and go on."""
        c = self.config
        points, times = self._validate(int(stamp_ns), cloud)
        first = self._last_stamp is None
        dt = 0.0 if first else (stamp_ns - self._last_stamp) * 1e-9  # type: ignore[operator]

        # 1. prediction: IMU preintegration if samples cover the interval, else constant velocity
        twist, pre = self._twist, None
        if not first and c.use_imu and self.imu.covers(self._last_stamp, stamp_ns, c.imu_max_gap_s):  # type: ignore[arg-type]
            pre = self.imu.preintegrate(self._last_stamp, stamp_ns, self.inertial.gyro_bias)  # type: ignore[arg-type]
            twist = Twist.from_delta(self.inertial.predict(pre, self._pose[:3, :3]), dt)
        predicted = self._pose @ twist.delta(dt)

        # 2. downsample; deskew with the predicted twist for the BEV image
        deskewing = c.deskew and times is not None
        idx = voxel_indices(points, c.voxel_size)
        if len(idx) > c.max_source_points:
            idx = np.sort(self._rng.choice(idx, c.max_source_points, replace=False))
        predicted_points = deskew(points, times, twist) if deskewing else points

        # 3. BEV image, keypoints and frame-to-frame matches
        bev = bev_image(predicted_points, self.grid, c.bev_count_cap)
        features = self.extractor.extract(bev)
        bev_rows, bev_guess = (None, None) if first else self._bev_rows(features, predicted)

        # 4. registration, estimating the in-scan motion with the pose
        uncertainty = ScanUncertainty.origin()
        if first:
            pose, overlap, status, trusted = np.eye(4), 1.0, "initialised", True
        else:
            motion = ScanMotion(times[idx], self._pose, dt) if deskewing else None
            pose, overlap, status, trusted = self._register_scan(points[idx], predicted, bev_rows, bev_guess,
                                                                 motion, pre is not None)
            if self._first_scan is not None and motion is not None and trusted:
                pose = self._refine_second_scan(points[idx], pose, motion, bev_rows)
            fit = self._last_fit
            uncertainty = scan_uncertainty(
                np.zeros((6, 6)) if fit is None else fit.information,
                np.zeros((0, 3)) if fit is None else fit.normals,
                float("inf") if fit is None else fit.rmse,
                pose[:3, :3],
                dt,
                c.degeneracy_min_points,
            )
            if uncertainty.degenerate:
                # the registration's position along the free axis is noise (normal errors, the
                # map's edge): keep the prediction's there (LOAM's solution remapping)
                a = uncertainty.weakest_axis
                pose = pose.copy()
                pose[:3, 3] += a * float(a @ (predicted[:3, 3] - pose[:3, 3]))
                axis = ", ".join(f"{v:+.2f}" for v in a)
                status += (
                    f"; degenerate: only {uncertainty.support} points constrain ({axis}); "
                    f"kept at the {'IMU' if pre is not None else 'constant-velocity'} prediction along it"
                )
        new_twist = Twist.zero()
        if not first:
            delta = pose_inverse(self._pose) @ pose
            new_twist = Twist.from_delta(delta, dt)
            self.inertial.update(pre, self._pose[:3, :3], delta, dt)
        if deskewing and not first:
            points = deskew(points, times, new_twist)

        # 5. map and state; the first scan's motion is known only now: re-deskew it
        if self._first_scan is not None and deskewing:
            first_map = self._rebuild_first_map(new_twist)
            self.loops.keyframes[0] = replace(self.loops.keyframes[0], cloud=pack_cloud(first_map))
        self._first_scan = (points, times) if first and deskewing else None
        map_points = voxel_downsample(points, c.map_voxel_size)
        self.last_scan_points = map_points  # deskewed, base frame at the stamp (for display)
        if trusted:  # a misregistered scan in the map would be a ghost that later scans lock onto
            self.map.update(transform_points(pose, map_points), pose[:3, 3])
        self._twist = new_twist
        self._pose, self._prev_features, self._last_stamp = pose, features, int(stamp_ns)

        # 6. keyframe and back end
        is_kf = trusted and self._is_keyframe(pose)
        loops: tuple[LoopClosure, ...] = ()
        if is_kf:
            loops = self._add_keyframe(int(stamp_ns), pose, map_points, features, bev)
            if loops:
                status += f"; loop closed with keyframe {loops[0].from_id}"
        kid = len(self._keyframes) - 1
        self._anchors.append(int(stamp_ns), kid, pose_inverse(self._keyframes[kid]) @ pose)
        n_bev = 0 if bev_rows is None else len(bev_rows.anchors)
        return OdometryResult(
            int(stamp_ns),
            pose.copy(),
            self._map_T_odom.copy(),
            is_kf,
            loops,
            status,
            n_bev,
            overlap,
            self._twist,
            uncertainty,
        )

    def keyframe_poses(self) -> dict[int, np.ndarray]:
        """Optimised map poses of all keyframes (id -> T_map_base)."""
        return self.graph.estimates()

    def keyframe_map_pose(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Stamp, T_map_base and its 6x6 covariance (ROS order, map axes; GTSAM marginal) of
        the newest keyframe: the map pose with the uncertainty the pose graph assigns it, for
        a localisation filter or AMCL's initial pose."""
        kid = len(self._keyframes) - 1
        if kid < 0:
            raise InputError("no keyframe yet")
        return int(self.loops.keyframes.stamps[kid]), self.graph.estimate(kid), self.graph.marginal_covariance(kid)

    def map_trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps (N,) and T_map_base (N, 4, 4) of every accepted scan, each anchored to the
        latest keyframe at its time, so loop closures correct the whole history."""
        stamps, kids, rel = self._anchors.arrays()
        if len(stamps) == 0:
            return stamps, np.zeros((0, 4, 4))
        kfs = self.graph.estimates()
        K = np.stack([kfs[k] for k in range(len(kfs))])
        return stamps, np.einsum("nij,njk->nik", K[kids], rel)

    def map_path(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps and T_map_base of the keyframes plus the latest scan: the loop-corrected path
        at keyframe spacing, for a live Path message whose cost must not grow with every scan."""
        if self._last_stamp is None:
            return np.zeros(0, np.int64), np.zeros((0, 4, 4))
        kfs = self.graph.estimates()
        kf_stamps = self.loops.keyframes.stamps
        poses = [kfs[k] for k in range(len(kf_stamps))]
        if self._last_stamp != kf_stamps[-1]:
            kf_stamps = np.append(kf_stamps, self._last_stamp)
            poses.append(self._map_T_odom @ self._pose)
        return kf_stamps, np.stack(poses)

    # ------------------------------------------------------------------------------------------
    def _register_scan(
        self,
        source: np.ndarray,
        predicted: np.ndarray,
        bev_rows: BevRows | None,
        bev_guess: np.ndarray | None,
        motion: ScanMotion | None,
        imu_predicted: bool,
    ) -> tuple[np.ndarray, float, str, bool]:
        """Pose, overlap, status of one scan and whether it may enter the map: registration
        from the prediction, checked.

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
        c = self.config
        self._last_fit = None

        def run(initial: np.ndarray, widen: float = 1.0) -> RegistrationResult:
            return register(
                source,
                self.map,
                initial,
                c.max_correspondence_distance * widen,
                c.max_iterations,
                c.convergence,
                bev=bev_rows,
                bev_weight=c.bev_weight,
                prior_weight=c.prior_weight,
                motion=motion,
            )

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
                f"degraded: only {len(source)} voxels of structure; pose from the motion prediction",
                False,
            )
        starts = [("", predicted)] + ([(", from the BEV guess", bev_guess)] if bev_guess is not None else [])
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
                        f"degraded: registration failed ({summary}); pose from the IMU prediction",
                        False,
                    )
                return best.pose, best.overlap, f"degraded: poor registration ({summary}{how})", False
            self._fit_history.clear()
            how += f", accepted after {POOR_RESET} poor fits"
        self._poor_streak = 0
        self._fit_history.append((best.overlap, best.rmse))
        status = f"ok: {best.iterations} it, overlap {best.overlap:.2f}, rmse {best.rmse:.3f} m{how}"
        if best.overlap < 0.2:
            status = f"degraded: only {best.overlap:.0%} of points matched the map"
        return best.pose, best.overlap, status, True

    def _rebuild_first_map(self, twist: Twist) -> np.ndarray:
        """The map from the first scan deskewed with ``twist`` (its motion is known only from the second)."""
        c = self.config
        first_pts, first_times = self._first_scan  # type: ignore[misc]
        first_map = voxel_downsample(deskew(first_pts, first_times, twist), c.map_voxel_size)
        self.map = LocalMap(c.map_voxel_size, c.map_radius, c.normal_neighbors)
        self.map.update(first_map, np.zeros(3))
        return first_map

    def _refine_second_scan(
        self, source: np.ndarray, pose: np.ndarray, motion: ScanMotion, bev_rows: BevRows | None
    ) -> np.ndarray:
        """Register the second scan again against the first scan deskewed with the motion just
        estimated. The first registration ran against a first scan smeared by the whole sweep's
        motion (unknown then): on a real Ouster clip at 2.5 m/s it found 0.165 m for a 0.25 m step."""
        c = self.config
        for _ in range(2):
            self._rebuild_first_map(motion.twist(pose))
            fit = register(
                source,
                self.map,
                pose,
                c.max_correspondence_distance,
                c.max_iterations,
                c.convergence,
                bev=bev_rows,
                bev_weight=c.bev_weight,
                prior_weight=c.prior_weight,
                motion=motion,
            )
            pose, self._last_fit = fit.pose, fit
        return pose

    def _poor_fit(self, reg: RegistrationResult) -> bool:
        """Clearly worse than the median of the recent accepted fits (none yet: not poor)."""
        if len(self._fit_history) < 5:
            return False
        ov, rmse = np.median(np.asarray(self._fit_history), axis=0)
        return bool(reg.overlap < ov - POOR_OVERLAP_DROP or reg.rmse > POOR_RMSE_RATIO * rmse)

    def _validate(self, stamp_ns: int, cloud: Cloud) -> tuple[np.ndarray, np.ndarray | None]:
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
        return pts, None if times is None else times[keep]

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

    def _is_keyframe(self, pose: np.ndarray) -> bool:
        if self._last_kf_pose is None:
            return True
        d = pose_inverse(self._last_kf_pose) @ pose
        return bool(
            np.linalg.norm(d[:3, 3]) >= self.config.keyframe_distance
            or rotation_angle(d[:3, :3]) >= self.config.keyframe_angle
        )

    def _add_keyframe(
        self, stamp_ns: int, pose: np.ndarray, map_points: np.ndarray, features: BevFeatures, bev: BevImage
    ) -> tuple[LoopClosure, ...]:
        c = self.config
        kid = len(self._keyframes)
        self.graph.add_variable(kid, self._map_T_odom @ pose)
        if kid == 0:
            self.graph.fix_variable(0, pose)
        else:
            prev = self._keyframes[kid - 1]
            self.graph.add_factor(kid - 1, kid, pose_inverse(prev) @ pose, c.odom_sigma_rot, c.odom_sigma_trans)
        self._keyframes[kid] = pose.copy()
        self._last_kf_pose = pose.copy()
        polar = polar_descriptor(bev, c.bev_range)
        kf = Keyframe.create(kid, stamp_ns, map_points, features, polar)
        self.loops.add(kf)
        self.graph.optimize()
        loops: tuple[LoopClosure, ...] = ()
        cooling = self.loop_closures and kid - self.loop_closures[-1].to_id <= c.loop_cooldown_keyframes
        if c.loop_closure and kid > 0 and not cooling:
            loop = self.loops.detect(kf, self.graph.estimates_view())
            if loop is not None:
                self.graph.add_factor(
                    loop.from_id, loop.to_id, loop.T_from_to, c.loop_sigma_rot, c.loop_sigma_trans, c.loop_robust_kernel
                )
                self.graph.optimize(relinearize_all=True)
                self.loop_closures.append(loop)
                loops = (loop,)
        self._map_T_odom = self.graph.estimate(kid) @ pose_inverse(pose)
        return loops
