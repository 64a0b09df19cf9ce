"""Density-normalised bird's-eye-view (BEV) images of a scan (BEV-LIO(LC), REFERENCE 3.2).

Each pixel counts the occupied height voxels (of the pixel's own size) in its column, so a wall
is bright and flat ground (one voxel per column) is zeroed by the ``count <= 1 -> 0`` rule. That
makes the image depend on structure rather than on the LiDAR's ring pattern on the ground, which
is what lets 2-D features match between scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BevGrid:
    """Pixel <-> metric mapping of a square BEV image centred on the body origin.

    ``u = c - floor(y / res)`` (column), ``v = c - floor(x / res)`` (row): x forward is up.
    """

    resolution: float
    half_size: int  # c: the pixel index of the origin

    @property
    def size(self) -> int:
        return 2 * self.half_size + 1

    @staticmethod
    def for_range(resolution: float, half_width_m: float) -> "BevGrid":
        return BevGrid(resolution, int(np.ceil(half_width_m / resolution)))

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) metric x, y -> (N, 2) integer pixel u, v."""
        c = self.half_size
        u = c - np.floor(xy[:, 1] / self.resolution)
        v = c - np.floor(xy[:, 0] / self.resolution)
        return np.stack([u, v], axis=1).astype(np.int64)

    def to_metric(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel u, v (possibly sub-pixel keypoints) -> (N, 2) metric x, y of cell centres."""
        c = self.half_size
        x = (c - uv[:, 1] + 0.5) * self.resolution
        y = (c - uv[:, 0] + 0.5) * self.resolution
        return np.stack([x, y], axis=1)


@dataclass(frozen=True)
class BevImage:
    """A BEV image: ``image`` (S, S) uint8 scaled to 255 at its maximum, ``counts`` raw capped counts."""

    image: np.ndarray
    counts: np.ndarray
    grid: BevGrid


def bev_image(points: np.ndarray, grid: BevGrid, count_cap: int = 15) -> BevImage:
    """The density-normalised BEV image of body-frame points (N, 3)."""
    res = grid.resolution
    size = grid.size
    pix = grid.to_pixels(points[:, :2])
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < size) & (pix[:, 1] >= 0) & (pix[:, 1] < size)
    pix = pix[inside]
    if len(pix) == 0:
        empty = np.zeros((size, size), np.uint8)
        return BevImage(image=empty, counts=empty.copy(), grid=grid)
    k = np.floor(points[inside, 2] / res).astype(np.int64)
    k -= k.min()
    nz = int(k.max()) + 1
    # one count per occupied (u, v, z) voxel
    cells = np.unique((pix[:, 1] * size + pix[:, 0]) * nz + k) // nz
    counts = np.bincount(cells, minlength=size * size).reshape(size, size)
    counts = np.minimum(counts, count_cap)
    counts[counts <= 1] = 0
    peak = counts.max()
    image = (counts * (255.0 / peak)).astype(np.uint8) if peak > 0 else np.zeros((size, size), np.uint8)
    return BevImage(image=image, counts=counts.astype(np.uint8), grid=grid)
