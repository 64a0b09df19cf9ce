"""A simulated drive: the vehicle's sensors over time, with exact ground truth.

:class:`DriveSimulator` owns the world, trajectory, ray caster and sensor models and produces
sensor data per timestamp; :func:`simulate_drive` collects a (short) drive in memory for tests
and the odometry pipeline, and :mod:`lkd_perception.sim.recording` streams a long one to disk.

Times: simulation time 0 is stamped ``START_NS`` (a fixed epoch, so the same seed gives the
same bytes). Random streams are separate per sensor, so switching the camera off leaves the
LiDAR and IMU data unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lkd_perception.common.config import from_dict, to_dict
from lkd_perception.io.codecs import Cloud
from lkd_perception.io.imu_series import ImuSeries
from lkd_perception.sim.annotations import BoxAnnotation, LineAnnotator, box_annotations
from lkd_perception.sim.camera import Camera
from lkd_perception.sim.config import SimConfig
from lkd_perception.sim.layout import tour_polyline
from lkd_perception.sim.raycast import WorldCaster
from lkd_perception.sim.sensors import Lidar, Rig, make_rig, simulate_imu
from lkd_perception.sim.traffic import add_tour_traffic
from lkd_perception.sim.trajectory import Trajectory, make_trajectory
from lkd_perception.sim.world import World, build_world

START_NS = 1_700_000_000 * 1_000_000_000  # stamp of simulation time 0
GT_RATE_HZ = 100.0


def to_ns(t: float | np.ndarray) -> Any:
    """Simulation seconds to stamp nanoseconds."""
    return START_NS + np.round(np.asarray(t, float) * 1e9).astype(np.int64)


@dataclass(frozen=True)
class LidarScan:
    """One sweep: ``stamp_ns`` = sweep start, points in the ``lidar`` frame with per-point time."""

    stamp_ns: int
    cloud: Cloud


@dataclass(frozen=True)
class CameraFrame:
    """One image with its ground truth (see :mod:`lkd_perception.sim.annotations`)."""

    stamp_ns: int
    file_name: str
    rgb: np.ndarray
    boxes: tuple[BoxAnnotation, ...]
    lines: np.ndarray  # (L, 4)


@dataclass(frozen=True)
class Extrinsics(Rig):
    """The rig (sensor mounting ``T_base_<sensor>``, camera intrinsics) and the IMU noise model:
    what a drive's ground truth records about its vehicle."""

    imu_noise: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (the ``extrinsics.yaml`` content)."""
        return {
            "frames": {"base": "base_link", "lidar": "lidar", "camera": "camera_optical", "imu": "imu", "world": "map"},
            "T_base_lidar": self.T_base_lidar.tolist(),
            "T_base_camera": self.T_base_camera.tolist(),
            "T_base_imu": self.T_base_imu.tolist(),
            "camera": {"K": self.K.tolist(), "width": self.width, "height": self.height,
                       "distortion": [0.0] * 5},
            "imu": dict(self.imu_noise),
        }


@dataclass(frozen=True)
class Drive:
    """A whole drive in memory.

    ``gt_stamps_ns`` (N,) / ``gt_poses`` (N, 4, 4): base_link in map at 100 Hz;
    ``imu_gyro_bias`` / ``imu_accel_bias`` (M, 3): the true biases behind each IMU sample;
    ``frames`` only when the camera was rendered. ``trajectory`` answers exact pose and
    derivative queries at any time (simulation seconds = (stamp - START_NS) / 1e9).
    """

    config: SimConfig
    scans: tuple[LidarScan, ...]
    imu: ImuSeries
    imu_gyro_bias: np.ndarray
    imu_accel_bias: np.ndarray
    gt_stamps_ns: np.ndarray
    gt_poses: np.ndarray
    extrinsics: Extrinsics
    frames: tuple[CameraFrame, ...]
    trajectory: Trajectory


def frame_name(index: int) -> str:
    """Image file name of frame ``index`` (the key of the ground-truth files)."""
    return f"frame_{index:06d}.png"


class DriveSimulator:
    """World, trajectory and sensors of one drive; produces data per timestamp on demand."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.world: World = add_tour_traffic(build_world(cfg.scenario, cfg.seed, cfg.density), cfg.moving_cars,
                                             cfg.seconds, cfg.seed)
        self.trajectory: Trajectory = make_trajectory(tour_polyline(self.world.layout), self.world.ground, cfg.seconds)
        self.rig: Rig = make_rig(cfg)
        self.caster = WorldCaster(self.world)
        self.lidar = Lidar(self.caster, self.rig, cfg)
        self._camera: Camera | None = None
        self._lines: LineAnnotator | None = None
        self._rng_lidar = np.random.default_rng([cfg.seed, 1])
        self._rng_camera = np.random.default_rng([cfg.seed, 3])

    @property
    def camera(self) -> Camera:
        if self._camera is None:
            self._camera = Camera(self.caster, self.rig, self.cfg)
        return self._camera

    def extrinsics(self) -> Extrinsics:
        c = self.cfg
        noise = {
            "rate_hz": c.imu_rate_hz,
            "gyro_noise_density": c.gyro_noise_density if c.imu_noise else 0.0,
            "accel_noise_density": c.accel_noise_density if c.imu_noise else 0.0,
            "gyro_bias_random_walk": c.gyro_bias_walk if c.imu_noise else 0.0,
            "accel_bias_random_walk": c.accel_bias_walk if c.imu_noise else 0.0,
            "gyro_bias_init_std": c.gyro_bias_init,
            "accel_bias_init_std": c.accel_bias_init,
        }
        r = self.rig
        return Extrinsics(r.T_base_lidar, r.T_base_camera, r.T_base_imu, r.K, r.width, r.height, noise)

    def scan_times(self) -> np.ndarray:
        """Sweep start times (s) of all sweeps that end within the drive."""
        period = 1.0 / self.cfg.lidar_rate_hz
        return np.arange(int(np.floor(self.cfg.seconds / period + 1e-9))) * period

    def frame_times(self) -> np.ndarray:
        """Camera frame times (s) within the drive."""
        period = 1.0 / self.cfg.camera_rate_hz
        return np.arange(int(np.floor(self.cfg.seconds / period + 1e-9)) + 1) * period

    def gt(self) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth stamps (ns) and poses T_map_base at 100 Hz."""
        t = np.arange(int(np.floor(self.cfg.seconds * GT_RATE_HZ + 1e-6)) + 1) / GT_RATE_HZ
        return to_ns(t), self.trajectory.poses(t)

    def imu(self):
        """The IMU record of the whole drive (see :func:`simulate_imu`)."""
        return simulate_imu(self.trajectory, self.rig, self.cfg, np.random.default_rng([self.cfg.seed, 2]), START_NS)

    def scan(self, t0: float) -> LidarScan:
        """The sweep starting at ``t0`` seconds."""
        return LidarScan(int(to_ns(t0)), self.lidar.scan(self.trajectory, t0, self._rng_lidar))

    def frame(self, index: int, t: float, annotate: bool = True) -> CameraFrame:
        """Render frame ``index`` at ``t`` seconds, with boxes and lines unless ``annotate`` is off."""
        T_map_cam = self.trajectory.poses(t)[0] @ self.rig.T_base_camera
        r = self.camera.render(T_map_cam, t, self._rng_camera)
        boxes: tuple[BoxAnnotation, ...] = ()
        lines = np.zeros((0, 4))
        if annotate:
            boxes = tuple(box_annotations(self.world, r.object_ids, T_map_cam, self.rig.K, t))
            if self._lines is None:
                self._lines = LineAnnotator(self.world)
            lines = self._lines.segments(r.depth, T_map_cam, self.rig.K, t)
        return CameraFrame(int(to_ns(t)), frame_name(index), r.rgb, boxes, lines)


def make_config(scenario: str = "loop", seconds: float = 10.0, seed: int = 0, camera: bool = False,
                **overrides: Any) -> SimConfig:
    """A validated :class:`SimConfig` from the main choices plus any other fields."""
    values = {**to_dict(SimConfig()), "scenario": scenario, "seconds": float(seconds), "seed": int(seed),
              "camera": bool(camera), **overrides}
    return from_dict(SimConfig, values)


def simulate_drive(scenario: str = "loop", seconds: float = 10.0, seed: int = 0, camera: bool = False,
                   **overrides: Any) -> Drive:
    """Simulate a drive in memory. ``overrides`` are further :class:`SimConfig` fields
    (e.g. ``imu_noise=False``, ``lidar_azimuths=512``, ``camera_width=160``)."""
    cfg = make_config(scenario, seconds, seed, camera, **overrides)
    sim = DriveSimulator(cfg)
    imu = sim.imu()
    scans = tuple(sim.scan(t0) for t0 in sim.scan_times())
    frames = tuple(sim.frame(k, t) for k, t in enumerate(sim.frame_times())) if cfg.camera else ()
    stamps, poses = sim.gt()
    return Drive(cfg, scans, imu.series, imu.gyro_bias, imu.accel_bias, stamps, poses, sim.extrinsics(),
                 frames, sim.trajectory)
