"""Settings of the synthetic drive: scenario, sensors, noise.

One flat frozen dataclass (the house config pattern), so ``lkd simulate`` options, a YAML file
and the tests share names. Noise defaults describe a consumer MEMS IMU (datasheet figures of
the ICM-20948/BMI088 class) and a 32-beam spinning LiDAR.
"""

from __future__ import annotations

from dataclasses import dataclass

from lkd_perception.common.config import param
from lkd_perception.sim.layout import SCENARIOS


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a simulated drive (the world itself comes from scenario + seed)."""

    scenario: str = param("loop", "street layout and tour", choices=SCENARIOS)
    seconds: float = param(60.0, "length of the drive, s (up to a day, for long LiDAR-only benchmark drives)",
                           lo=0.1, hi=86400.0)
    seed: int = param(0, "seed of the world, the sensor noise and the moving objects", lo=0)
    density: float = param(1.0, "scale of street furniture and traffic counts", lo=0.0, hi=4.0)
    moving_cars: int = param(0, "cars driving on the ego vehicle's own roads, half in its lane ahead/behind, "
                             "half oncoming (the world's other traffic keeps off the tour)", lo=0, hi=64)
    camera: bool = param(True, "render the camera (off: LiDAR and IMU only, much faster)")
    camera_format: str = param("raw", "camera messages: raw rgb8 sensor_msgs/Image, or jpeg/png "
                               "sensor_msgs/CompressedImage on <topic>/compressed (image_transport's name)",
                               choices=("raw", "jpeg", "png"))
    camera_width: int = param(640, "image width, px", lo=16, hi=4096)
    camera_height: int = param(480, "image height, px", lo=16, hi=4096)
    camera_hfov_deg: float = param(75.0, "horizontal field of view, deg", lo=20.0, hi=150.0)
    camera_rate_hz: float = param(10.0, "camera frame rate, Hz", lo=0.1, hi=60.0)
    camera_supersample: int = param(1, "rays per pixel side (2 = 4 rays per pixel, anti-aliased)", lo=1, hi=4)
    camera_noise: float = param(2.0, "std of additive pixel noise, grey levels", lo=0.0, hi=50.0)
    camera_shadows: bool = param(True, "cast shadow rays towards the sun")
    lidar_beams: int = param(32, "vertical channels", lo=1, hi=256)
    lidar_azimuths: int = param(1024, "columns per revolution", lo=16, hi=8192)
    lidar_rate_hz: float = param(10.0, "revolutions per second", lo=1.0, hi=40.0)
    lidar_fov_up_deg: float = param(15.0, "elevation of the top beam, deg", lo=-90.0, hi=90.0)
    lidar_fov_down_deg: float = param(-25.0, "elevation of the bottom beam, deg", lo=-90.0, hi=90.0)
    lidar_min_range: float = param(1.0, "returns nearer than this are dropped, m", lo=0.0, hi=10.0)
    lidar_max_range: float = param(100.0, "returns farther than this are dropped, m", lo=1.0, hi=500.0)
    lidar_mover_slices: int = param(1, "moving objects are re-placed this many times per sweep, each slice of "
                                    "columns at its middle time (1: once, at the sweep's middle)", lo=1, hi=256)
    lidar_range_noise: float = param(0.02, "std of range noise, m", lo=0.0, hi=1.0)
    lidar_dropout: float = param(0.02, "probability of a lost return", lo=0.0, hi=1.0)
    imu_rate_hz: float = param(200.0, "IMU sample rate, Hz", lo=10.0, hi=2000.0)
    imu_noise: bool = param(True, "add IMU white noise and bias random walk")
    gyro_noise_density: float = param(2.6e-4, "gyro white noise, rad/s/sqrt(Hz)", lo=0.0)
    accel_noise_density: float = param(2.3e-3, "accelerometer white noise, m/s^2/sqrt(Hz)", lo=0.0)
    gyro_bias_walk: float = param(2.0e-5, "gyro bias random walk, rad/s^2/sqrt(Hz)", lo=0.0)
    accel_bias_walk: float = param(3.0e-4, "accelerometer bias random walk, m/s^3/sqrt(Hz)", lo=0.0)
    gyro_bias_init: float = param(3.0e-3, "std of the initial gyro bias per axis, rad/s", lo=0.0)
    accel_bias_init: float = param(5.0e-2, "std of the initial accelerometer bias per axis, m/s^2", lo=0.0)
