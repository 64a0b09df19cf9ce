"""Line segments as oriented boxes, the form they travel in on ``vision_msgs/Detection2DArray``.

DESIGN.md fixes the encoding: midpoint (pixels), direction ``theta`` (radians, x right, y down,
from endpoint 1 to endpoint 2, in (-pi, pi]), length, width. Keeping the direction (not just the
undirected orientation) is what lets a receiver recover the endpoints in their original order.
The round trip is exact up to float64 rounding (about 1e-13 px for image-sized values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import InputError


@dataclass(frozen=True)
class OrientedBoxes:
    """N segments as oriented rectangles: ``centers`` (N,2), ``thetas`` (N,), ``lengths`` (N,), ``widths`` (N,)."""

    centers: np.ndarray
    thetas: np.ndarray
    lengths: np.ndarray
    widths: np.ndarray


def segments_to_boxes(segments: np.ndarray, widths: np.ndarray | float = 1.0) -> OrientedBoxes:
    """Encode (N,4) endpoints ``x1, y1, x2, y2`` as oriented boxes."""
    seg = np.asarray(segments, dtype=np.float64)
    if seg.ndim != 2 or seg.shape[1] != 4:
        raise InputError(f"segments must have shape (N, 4), got {seg.shape}")
    d = seg[:, 2:4] - seg[:, 0:2]
    w = np.broadcast_to(np.asarray(widths, dtype=np.float64), (len(seg),)).copy()
    return OrientedBoxes(
        centers=0.5 * (seg[:, 0:2] + seg[:, 2:4]),
        thetas=np.arctan2(d[:, 1], d[:, 0]),
        lengths=np.hypot(d[:, 0], d[:, 1]),
        widths=w,
    )


def boxes_to_segments(centers: np.ndarray, thetas: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Decode oriented boxes back to (N,4) endpoints ``x1, y1, x2, y2`` (float64)."""
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(thetas, dtype=np.float64).reshape(-1)
    h = 0.5 * np.asarray(lengths, dtype=np.float64).reshape(-1)
    if not (len(c) == len(t) == len(h)):
        raise InputError(f"centers, thetas and lengths differ in length: {len(c)}, {len(t)}, {len(h)}")
    half = np.stack([h * np.cos(t), h * np.sin(t)], axis=1)
    return np.concatenate([c - half, c + half], axis=1)
