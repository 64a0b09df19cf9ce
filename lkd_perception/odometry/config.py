"""The one configuration of the LiDAR-inertial odometry (front end, loop closure, pose graph).

Defaults follow BEV-LIO(LC) where the paper fixes a value (0.4 m/px BEV, count <= 1 -> 0,
keyframes by distance and 0.2 rad, loop gating by radius and age, ICP fitness gate) and
KISS-ICP-style choices where our CPU budget (>= 10 scans/s on 2 cores in Python) forces
coarser voxels and fewer iterations. REFERENCE sections 3.2-3.5 give the sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.config import param, section
from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix


def extrinsic_matrix(xyzrpy: list[float]) -> np.ndarray:
    """The 4x4 transform of an extrinsic setting ``[x, y, z, roll, pitch, yaw]`` (m, rad)."""
    x, y, z, roll, pitch, yaw = xyzrpy
    return make_pose(yaw_pitch_roll_matrix(yaw, pitch, roll), [x, y, z])


def extrinsic_list(T: np.ndarray) -> list[float]:
    """The extrinsic setting ``[x, y, z, roll, pitch, yaw]`` of a 4x4 transform (inverse of
    :func:`extrinsic_matrix`)."""
    R = T[:3, :3]
    yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    pitch = float(np.arcsin(-np.clip(R[2, 0], -1, 1)))
    roll = float(np.arctan2(R[2, 1], R[2, 2]))
    return [float(T[0, 3]), float(T[1, 3]), float(T[2, 3]), roll, pitch, yaw]


@dataclass(frozen=True)
class KeyframeConfig:
    """When the back end takes a scan as a keyframe, and the odometry factor between keyframes
    (parameters ``keyframe.*``)."""

    distance: float = param(2.0, "A new keyframe after this much travel (m).", lo=0.1, hi=100.0)
    angle: float = param(0.2, "A new keyframe after this much rotation (rad).", lo=0.01, hi=3.2)
    in_memory: int = param(
        200,
        "Newest keyframes kept whole in memory; older ones' clouds, BEV features and ring-sector descriptors "
        "move to a temporary file and are read back for loop verification (bounds their memory on long drives).",
        lo=1,
        hi=10_000_000,
        read_only=True,
    )
    sigma_rot: float = param(0.01, "Odometry factor rotation sigma (rad).", lo=1e-6, hi=10.0)
    sigma_trans: float = param(0.05, "Odometry factor translation sigma (m).", lo=1e-6, hi=100.0)
    graph_window: int = param(
        0,
        "Newest keyframes kept as pose-graph variables; older ones are fixed at their estimate and leave the "
        "graph (in batches of half the window), so its memory stays bounded on all-day drives while loops to "
        "them are still found and pull the live keyframes. 0 = keep every keyframe in the graph.",
        lo=0,
        hi=10_000_000,
        read_only=True,
    )


@dataclass(frozen=True)
class LoopConfig:
    """Loop closure: candidate search, the ICP gate and the loop factor (parameters ``loop.*``).
    Verification also uses the front end's RANSAC, map voxel and correspondence settings."""

    enabled: bool = param(True, "Detect loops and correct map->odom with the pose graph.")
    min_age_s: float = param(20.0, "Loop candidates must be at least this much older (s).", lo=0.0, hi=3600.0)
    cooldown_keyframes: int = param(
        5,
        "After an accepted loop, skip loop search for this many keyframes: on a revisited street one loop "
        "factor per few keyframes holds the map as well as one per keyframe, at a fraction of the CPU and "
        "graph memory (0 = search at every keyframe).",
        lo=0,
        hi=1000,
    )
    search_radius: float = param(
        10.0, "Loop candidates must lie within this distance (m) in the map.", lo=0.5, hi=200.0
    )
    candidates: int = param(10, "Nearest global descriptors examined per keyframe.", lo=1, hi=100)
    descriptor_distance: float = param(
        0.35, "Max ring-sector descriptor distance (1 - cosine) of a candidate.", lo=0.0, hi=2.0
    )
    submap_keyframes: int = param(5, "Keyframes either side of the candidate in the loop submap.", lo=0, hi=50)
    max_rmse: float = param(0.3, "ICP fitness gate: max point-to-plane RMSE (m) to accept a loop.", lo=0.01, hi=5.0)
    min_overlap: float = param(0.5, "ICP fitness gate: min fraction of points with a correspondence.", lo=0.0, hi=1.0)
    robust_kernel: str = param(
        "cauchy",
        "Robust kernel of loop factors; 'none' also exempts loops from GNC outlier rejection.",
        choices=["cauchy", "geman_mcclure", "huber", "none"],
    )
    sigma_rot: float = param(0.02, "Loop factor rotation sigma (rad).", lo=1e-6, hi=10.0)
    sigma_trans: float = param(0.1, "Loop factor translation sigma (m).", lo=1e-6, hi=100.0)


@dataclass(frozen=True)
class OdometryConfig:
    """Settings of :class:`lkd_perception.odometry.pipeline.LioPipeline` and its node."""

    # --- frames -------------------------------------------------------------------------------
    odom_frame: str = param("odom", "Frame of the continuous odometry (REP-105).", read_only=True)
    base_frame: str = param("base_link", "Vehicle body frame; poses are odom->base_link.", read_only=True)
    map_frame: str = param("map", "Globally consistent frame corrected by loop closures.", read_only=True)
    base_T_lidar: list[float] = param(
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "Extrinsic base_link<-lidar as [x, y, z, roll, pitch, yaw] (m, rad).",
        read_only=True,
    )
    base_T_imu: list[float] = param(
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "Extrinsic base_link<-imu as [x, y, z, roll, pitch, yaw] (m, rad); the translation is used only with "
        "accel_bias (the accelerometer's lever arm: its turn accelerations are removed).",
        read_only=True,
    )
    # --- preprocessing ------------------------------------------------------------------------
    min_range: float = param(1.0, "Points closer than this (m) are dropped (vehicle body).", lo=0.0, hi=20.0)
    max_range: float = param(80.0, "Points farther than this (m) are dropped.", lo=5.0, hi=300.0)
    min_points: int = param(100, "Scans with fewer valid points are rejected as bad input.", lo=3, hi=100000)
    deskew: bool = param(True, "Undo motion within a scan using the per-point time field.")
    imu_deskew: bool = param(
        True,
        "Deskew with the IMU's rotation and acceleration inside the sweep (when samples cover it) instead of the "
        "constant twist of the interval before the scan.",
    )
    velocity_fusion_sigma: float = param(
        0.01,
        "Position noise (m) of a registered scan, for weighing the velocity the registration implies against the "
        "IMU-propagated one (a Kalman filter; keeps registration noise out of the velocity the IMU carries through "
        "weakly constrained stretches). 0: the registered velocity alone.",
        lo=0.0,
        hi=1.0,
    )
    use_imu: bool = param(
        True, "Use IMU preintegration (gyro + accelerometer) as the motion prior when samples cover the interval."
    )
    accel_bias: bool = param(
        False,
        "Estimate the accelerometer bias (body frame) beside gravity (a Kalman filter; turns separate the two) and "
        "subtract it, with the lever arm of base_T_imu removed; off, the gravity estimate absorbs it, exact while "
        "the heading holds. Off by default: it did not lower drift on the simulated benchmark (README).",
    )
    gravity: float = param(
        9.80665,
        "Local gravity magnitude (m/s^2); separates the vertical accelerometer bias from gravity on level ground.",
        lo=9.7,
        hi=9.9,
    )
    imu_max_gap_s: float = param(
        0.3,
        "Largest hole between IMU samples (s) bridged by interpolating the gyro and accelerometer; a longer "
        "one makes the prediction fall back to constant velocity. A busy live node loses IMU messages in bursts, "
        "and across a second of skipped scans in a turn the interpolated IMU is far better than constant velocity.",
        lo=0.0,
        hi=10.0,
    )
    # --- registration -------------------------------------------------------------------------
    voxel_size: float = param(0.8, "Voxel (m) of the scan used for registration.", lo=0.05, hi=5.0)
    max_source_points: int = param(1500, "Registration uses at most this many scan points.", lo=100, hi=100000)
    map_voxel_size: float = param(0.5, "Voxel (m) of the local map (one point per voxel).", lo=0.05, hi=5.0)
    map_radius: float = param(
        70.0, "Local map points farther than this (m) from the vehicle are dropped.", lo=10.0, hi=500.0
    )
    normal_neighbors: int = param(10, "Neighbours for map normal estimation.", lo=5, hi=50)
    max_correspondence_distance: float = param(
        1.5, "Max point-to-map distance (m) of a correspondence.", lo=0.1, hi=10.0
    )
    max_iterations: int = param(12, "Gauss-Newton iterations per scan.", lo=1, hi=100)
    convergence: float = param(1e-3, "Stop when the update (rad + m) is below this.", lo=1e-8, hi=1.0)
    prior_weight: float = param(
        1e-3,
        "Weight of the motion prior (per point-equivalent); keeps degenerate directions (corridors) at the prediction.",
        lo=0.0,
        hi=1e3,
    )
    residual_trim: float = param(
        0.0,
        "Point-to-plane rows whose residual exceeds this many robust residual scales (1.4826 MAD, at least "
        "0.2 m) get no weight, so points on moving cars do not pull the pose. 0 = off (Geman-McClure only).",
        lo=0.0,
        hi=100.0,
    )
    degeneracy_min_points: int = param(
        10,
        "A scan is degenerate along its least constrained axis (corridor, tunnel, open field) when fewer "
        "matched points than this have a normal facing that axis: reported (diagnostics WARN, large covariance "
        "there) and the pose along that axis is kept at the motion prediction (IMU). 0 = never.",
        lo=0,
        hi=100000,
    )
    # --- BEV image and features ---------------------------------------------------------------
    bev_resolution: float = param(0.4, "BEV pixel size (m/px).", lo=0.05, hi=2.0)
    bev_range: float = param(50.0, "BEV half-width (m); the image is (2*range/res+1)^2.", lo=5.0, hi=200.0)
    bev_count_cap: int = param(15, "Occupied height voxels per cell are capped at this.", lo=2, hi=255)
    descriptor: str = param(
        "orb", "Local BEV descriptor: 'orb' (classical) or 'cnn' (ONNX model).", choices=["orb", "cnn"], read_only=True
    )
    descriptor_model: str = param(
        "", "ONNX file of the CNN descriptor; empty = models/bev_descriptor.onnx.", read_only=True
    )
    fast_threshold: int = param(20, "FAST corner threshold on the BEV image.", lo=1, hi=255)
    max_keypoints: int = param(500, "Strongest FAST keypoints kept per BEV image.", lo=10, hi=10000)
    ransac_threshold: float = param(1.0, "2-D RANSAC inlier threshold (m) for BEV matches.", lo=0.05, hi=10.0)
    ransac_iterations: int = param(200, "2-D RANSAC trials.", lo=10, hi=10000)
    bev_min_matches: int = param(10, "Below this many RANSAC inliers the BEV rows are skipped.", lo=3, hi=1000)
    bev_weight: float = param(
        0.05, "lambda: scale of the BEV pixel rows against the point-to-plane rows.", lo=0.0, hi=100.0
    )
    bev_guess_distance: float = param(
        0.3,
        "When the BEV RANSAC puts the scan this far (m) from the motion prediction, registration also starts from the "
        "BEV pose and the better fit wins.",
        lo=0.01,
        hi=100.0,
    )
    bev_guess_angle: float = param(
        0.02, "The same trigger for the BEV RANSAC's yaw difference (rad).", lo=0.001, hi=3.2
    )
    # --- back end: keyframes, loop closure, pose graph ----------------------------------------
    keyframe: KeyframeConfig = section(
        KeyframeConfig, "Keyframes: when a scan becomes one, how many stay in memory, the factor between them."
    )
    loop: LoopConfig = section(LoopConfig, "Loop closure: candidate search, verification and the loop factor.")
    path_period_s: float = param(
        2.0,
        "The node re-publishes the Path (keyframes + latest pose) at a keyframe at most this often (s of scan time); "
        "always after a loop closure.",
        lo=0.0,
        hi=600.0,
    )
    publish_tf: bool = param(
        True,
        "Publish odom->base_link and map->odom on /tf; false when another node (robot_localization, AMCL) "
        "owns those transforms and fuses lkd/odometry (with its covariance) instead.",
        read_only=True,
    )
    scan_cloud_period_s: float = param(
        1.0,
        "The node publishes the latest deskewed scan (lkd/scan, base_link, map voxel) for RViz at most this "
        "often (s of scan time), and only while someone subscribes; 0 = every scan.",
        lo=0.0,
        hi=3600.0,
    )
    map_cloud_period_s: float = param(
        5.0,
        "The same for the local map used for registration (lkd/local_map, odom frame): tens of thousands of "
        "points, so less often.",
        lo=0.0,
        hi=3600.0,
    )
