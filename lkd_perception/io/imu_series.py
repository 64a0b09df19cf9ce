"""A run of IMU samples as arrays: what bag readers return and the simulator produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import InputError


@dataclass(frozen=True)
class ImuSeries:
    """IMU samples: ``stamps_ns`` (N,) int64, angular rate ``gyro`` (N, 3) rad/s and specific
    force ``accel`` (N, 3) m/s^2 (gravity included: +9.81 up when at rest), in ``frame_id``."""

    stamps_ns: np.ndarray
    gyro: np.ndarray
    accel: np.ndarray
    frame_id: str = "imu"

    def __post_init__(self) -> None:
        n = self.stamps_ns.shape[0]
        if self.stamps_ns.ndim != 1 or self.gyro.shape != (n, 3) or self.accel.shape != (n, 3):
            raise InputError(
                f"IMU arrays disagree: stamps {self.stamps_ns.shape}, gyro {self.gyro.shape}, accel {self.accel.shape}"
            )

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    @property
    def times_s(self) -> np.ndarray:
        """Stamps in seconds (float64)."""
        return self.stamps_ns.astype(np.float64) * 1e-9
