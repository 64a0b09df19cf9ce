"""Segments drawn on an image: what ``lkd lines --draw`` writes and the node's debug image shows."""

from __future__ import annotations

import cv2
import numpy as np

from lkd_perception.common.errors import InputError

#: RGB colour of drawn segments (red: visible on grey and on most photographs)
SEGMENT_COLOUR = (255, 40, 20)
_SHIFT = 4  # sub-pixel bits for cv2.line: endpoints are drawn to 1/16 px, not rounded to pixels


def draw_segments(rgb: np.ndarray, segments: np.ndarray, thickness: int = 1) -> np.ndarray:
    """A copy of the (H,W,3) uint8 RGB image with (N,4) x1,y1,x2,y2 segments drawn (anti-aliased,
    sub-pixel endpoints, pixel centres at integers as everywhere in the package)."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}")
    seg = np.asarray(segments, np.float64).reshape(-1, 4)
    out = arr.copy()
    for x1, y1, x2, y2 in np.round(seg * (1 << _SHIFT)).astype(np.int64).tolist():
        cv2.line(out, (x1, y1), (x2, y2), SEGMENT_COLOUR, thickness, cv2.LINE_AA, _SHIFT)
    return out
