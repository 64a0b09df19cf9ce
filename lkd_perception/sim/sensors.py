"""The sensor rig and the two sensors that need no rendering: IMU and spinning LiDAR.

Frames (REP-103/105): ``base_link`` x forward, y left, z up, at axle height; ``lidar`` on the
roof, axes as base_link; ``camera_optical`` z forward, x right, y down; ``imu`` in the cabin
with a lever arm, axes as base_link.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.se3 import make_pose
from lkd_perception.io.codecs import Cloud
from lkd_perception.io.imu_series import ImuSeries
from lkd_perception.sim.config import SimConfig
from lkd_perception.sim.raycast import Hits, WorldCaster
from lkd_perception.sim.trajectory import GRAVITY, Trajectory
from lkd_perception.sim.world import KIND_NAMES, object_table

# camera_optical axes expressed in base_link: x right = -y_base, y down = -z_base, z fwd = x_base
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Rig:
    """Mounting of the sensors on base_link and the camera intrinsics (pixel centres at integer
    coordinates, the OpenCV convention)."""

    T_base_lidar: np.ndarray
    T_base_camera: np.ndarray
    T_base_imu: np.ndarray
    K: np.ndarray
    width: int
    height: int


def make_rig(cfg: SimConfig) -> Rig:
    """The rig for a config: fixed mounting, intrinsics from the image size and field of view."""
    fx = (cfg.camera_width / 2.0) / np.tan(np.radians(cfg.camera_hfov_deg) / 2.0)
    K = np.array([[fx, 0.0, (cfg.camera_width - 1) / 2.0], [0.0, fx, (cfg.camera_height - 1) / 2.0], [0, 0, 1.0]])
    return Rig(
        T_base_lidar=make_pose(translation=[0.0, 0.0, 1.5]),
        T_base_camera=make_pose(R_BASE_OPTICAL, [1.2, 0.0, 1.2]),
        T_base_imu=make_pose(translation=[0.3, -0.15, 0.4]),
        K=K,
        width=cfg.camera_width,
        height=cfg.camera_height,
    )


@dataclass(frozen=True)
class ImuTruth:
    """Simulated IMU output and the true biases (N, 3) behind it."""

    series: ImuSeries
    gyro_bias: np.ndarray
    accel_bias: np.ndarray


def imu_kinematics(traj: Trajectory, T_base_imu: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free angular rate and specific force (N, 3) in the IMU frame at times ``t``.

    The IMU sits at lever arm r from base_link: its acceleration adds alpha x r and
    omega x (omega x r) (body frame) to the base acceleration.
    """
    R_bi = T_base_imu[:3, :3]
    r = T_base_imu[:3, 3]
    w = traj.angular_velocity(t)
    alpha = traj.angular_acceleration(t)
    R = traj.poses(t)[:, :3, :3]
    a_body = np.cross(alpha, r) + np.cross(w, np.cross(w, r))
    a_world = traj.acceleration(t) + np.einsum("nij,nj->ni", R, a_body)
    f_base = np.einsum("nji,nj->ni", R, a_world - GRAVITY)
    return np.einsum("ni,ij->nj", w, R_bi), np.einsum("ni,ij->nj", f_base, R_bi)


def simulate_imu(traj: Trajectory, rig: Rig, cfg: SimConfig, rng: np.random.Generator,
                 stamp0_ns: int = 0) -> ImuTruth:
    """IMU samples at ``cfg.imu_rate_hz`` over the drive, with white noise and bias random walk.

    Sample k is at simulation time ``t_start + k / rate``, stamped ``stamp0_ns`` + that time."""
    dt = 1.0 / cfg.imu_rate_hz
    n = int(np.floor((traj.t_end - traj.t_start) / dt + 1e-9)) + 1
    return ImuStream(traj, rig, cfg, rng, stamp0_ns).next(n)


class ImuStream:
    """The IMU of :func:`simulate_imu` produced a chunk at a time, so an hours-long drive never
    holds its whole IMU record (2 hours at 200 Hz: 1.4 M samples). The biases' random walk
    continues across chunks; one chunk of all samples is exactly :func:`simulate_imu`'s output."""

    def __init__(self, traj: Trajectory, rig: Rig, cfg: SimConfig, rng: np.random.Generator,
                 stamp0_ns: int = 0) -> None:
        self.traj, self.T_base_imu, self.cfg, self.rng, self.stamp0_ns = traj, rig.T_base_imu, cfg, rng, stamp0_ns
        self.dt = 1.0 / cfg.imu_rate_hz
        self.k = 0  # index of the next sample
        self._bg = rng.normal(0.0, cfg.gyro_bias_init, 3)  # the bias before the next sample's walk step
        self._ba = rng.normal(0.0, cfg.accel_bias_init, 3)

    def until(self, t_s: float) -> ImuTruth:
        """The samples from the next one up to simulation time ``t_s`` (inclusive)."""
        last = int(np.floor((t_s - self.traj.t_start) / self.dt + 1e-9))
        return self.next(max(0, last + 1 - self.k))

    def next(self, n: int) -> ImuTruth:
        """The next ``n`` samples."""
        cfg, dt, rng = self.cfg, self.dt, self.rng
        t = self.traj.t_start + (self.k + np.arange(n)) * dt
        stamps_ns = self.stamp0_ns + np.round(t * 1e9).astype(np.int64)
        gyro, accel = imu_kinematics(self.traj, self.T_base_imu, t)
        bg, ba = np.tile(self._bg, (n, 1)), np.tile(self._ba, (n, 1))
        if cfg.imu_noise:
            bg = bg + np.cumsum(rng.normal(0.0, cfg.gyro_bias_walk * np.sqrt(dt), (n, 3)), axis=0)
            ba = ba + np.cumsum(rng.normal(0.0, cfg.accel_bias_walk * np.sqrt(dt), (n, 3)), axis=0)
            gyro = gyro + rng.normal(0.0, cfg.gyro_noise_density / np.sqrt(dt), (n, 3))
            accel = accel + rng.normal(0.0, cfg.accel_noise_density / np.sqrt(dt), (n, 3))
        if n:
            self._bg, self._ba = bg[-1].copy(), ba[-1].copy()
        self.k += n
        return ImuTruth(ImuSeries(stamps_ns, gyro + bg, accel + ba, "imu"), bg, ba)


# reflectivity of the ground by material code (road, sidewalk, verge)
_GROUND_REFLECTIVITY = np.array([0.10, 0.25, 0.18])


class Lidar:
    """Spinning LiDAR: ``lidar_beams`` elevations equally spaced, ``lidar_azimuths`` columns per
    turn, turning clockwise seen from above (like Velodyne/Ouster) starting at +x.

    Each column is cast from the sensor pose at its own time, so a moving vehicle's scan is
    motion-distorted exactly as a real one; points are reported in the sensor frame at their
    column's time with ``time`` = seconds since the sweep start (the header stamp). Moving
    objects are placed at the sweep's middle time, or with ``lidar_mover_slices`` > 1 at the
    middle of each of that many slices of columns (an oncoming car closes at up to 28 m/s, 2.8 m
    in a 10 Hz sweep: placed once, it would be smeared or compressed by up to half that).
    """

    def __init__(self, caster: WorldCaster, rig: Rig, cfg: SimConfig) -> None:
        self.caster = caster
        self.cfg = cfg
        self.T_base_lidar = rig.T_base_lidar
        elev = np.radians(np.linspace(cfg.lidar_fov_down_deg, cfg.lidar_fov_up_deg, cfg.lidar_beams))
        azim = -2.0 * np.pi * np.arange(cfg.lidar_azimuths) / cfg.lidar_azimuths
        self.column_dt = 1.0 / (cfg.lidar_rate_hz * cfg.lidar_azimuths)
        # local ray directions (azimuths, beams, 3)
        self.dirs = np.stack(
            [
                np.cos(elev)[None, :] * np.cos(azim)[:, None],
                np.cos(elev)[None, :] * np.sin(azim)[:, None],
                np.broadcast_to(np.sin(elev)[None, :], (azim.size, elev.size)),
            ],
            axis=-1,
        )
        _, self.reflectivity, kinds = object_table(caster.world)
        self.ground_kind = KIND_NAMES.index("ground")
        self.object_kind = kinds

    def _cast(self, origins: np.ndarray, d_world: np.ndarray, t0: float) -> Hits:
        """Cast the (azimuths, beams, 3) rays of a sweep starting at ``t0``, moving objects placed
        once per slice of columns (the static scene does not care how the rays are batched)."""
        na = origins.shape[0]
        slices = min(self.cfg.lidar_mover_slices, na)
        if slices == 1:
            return self.caster.cast(origins.reshape(-1, 3), d_world.reshape(-1, 3), t0 + 0.5 / self.cfg.lidar_rate_hz)
        bounds = np.linspace(0, na, slices + 1).round().astype(int)
        parts = []
        for a0, a1 in zip(bounds[:-1], bounds[1:]):
            t_mid = t0 + 0.5 * (a0 + a1 - 1) * self.column_dt
            parts.append(self.caster.cast(origins[a0:a1].reshape(-1, 3), d_world[a0:a1].reshape(-1, 3), t_mid))
        return Hits(*(np.concatenate([getattr(h, f) for h in parts]) for f in ("t_hit", "object", "normal")))

    def scan(self, traj: Trajectory, t0: float, rng: np.random.Generator) -> Cloud:
        """One sweep starting at ``t0`` seconds."""
        cfg = self.cfg
        na, nb = self.dirs.shape[:2]
        t_col = t0 + np.arange(na) * self.column_dt
        T = traj.poses(t_col) @ self.T_base_lidar  # (na, 4, 4) map <- lidar per column
        d_world = np.einsum("aij,abj->abi", T[:, :3, :3], self.dirs)
        origins = np.broadcast_to(T[:, None, :3, 3], (na, nb, 3))
        hits = self._cast(origins, d_world, t0)
        rng_true = hits.t_hit
        rng_meas = rng_true + rng.normal(0.0, cfg.lidar_range_noise, rng_true.shape)
        cos_inc = np.abs(np.einsum("ij,ij->i", hits.normal, d_world.reshape(-1, 3)))
        keep = np.isfinite(rng_true) & (rng_meas >= cfg.lidar_min_range) & (rng_meas <= cfg.lidar_max_range)
        # random dropouts, more at grazing incidence and long range (weak returns)
        p_drop = cfg.lidar_dropout + 0.3 * (cos_inc < 0.08) + 0.2 * np.clip((rng_true - 60.0) / 40.0, 0, 1)
        keep &= rng.random(rng_true.shape) >= np.minimum(p_drop, 1.0)
        obj = np.where(hits.object >= 0, hits.object, 0)
        refl = self.reflectivity[obj]
        on_ground = self.object_kind[obj] == self.ground_kind
        if on_ground.any():
            p = (origins.reshape(-1, 3) + d_world.reshape(-1, 3) * np.where(np.isfinite(rng_true), rng_true, 0)[:,
                                                                                                                None])
            mat = self.caster.world.ground.material_at(p[on_ground, :2])
            refl = refl.copy()
            refl[on_ground] = _GROUND_REFLECTIVITY[mat]
        inten = 255.0 * refl * (0.3 + 0.7 * cos_inc) + rng.normal(0.0, 2.0, rng_true.shape)
        xyz = self.dirs.reshape(-1, 3)[keep] * rng_meas[keep, None]
        times = np.repeat(t_col - t0, nb)
        return Cloud(
            xyz.astype(np.float32),
            np.clip(inten[keep], 0.0, 255.0).astype(np.float32),
            times[keep].astype(np.float32),
        )
