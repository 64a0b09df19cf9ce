"""Clipping image segments to a box (Liang-Barsky), for the simulator's line ground truth and the
training crops cut from it. Kept free of the renderer's imports (open3d) so that the line
benchmark's worker processes, which only crop and score, stay small."""

from __future__ import annotations

import numpy as np


def clip_segments(segments: np.ndarray, x0: float, y0: float, x1: float, y1: float,
                  min_length: float = 6.0) -> np.ndarray:
    """(N,4) segments clipped to the box [x0, x1] x [y0, y1]; those shorter than ``min_length``
    afterwards are dropped (an image is [-0.5, W-0.5] x [-0.5, H-0.5] with pixel centres at integers)."""
    seg = np.asarray(segments, np.float64).reshape(-1, 4)
    a, d = seg[:, :2], seg[:, 2:] - seg[:, :2]
    lo, hi, ok = clip_range(a, d, x0, y0, x1, y1)
    out = np.concatenate([a + lo[:, None] * d, a + hi[:, None] * d], axis=1)[ok]
    return out[np.linalg.norm(out[:, 2:] - out[:, :2], axis=1) >= min_length]


def clip_range(a: np.ndarray, d: np.ndarray, x0: float, y0: float, x1: float,
               y1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Liang-Barsky: the parameter range [lo, hi] of segments ``a + s d`` inside the box
    [x0, x1] x [y0, y1], and whether any part is inside."""
    lo = np.zeros(len(a))
    hi = np.ones(len(a))
    ok = np.ones(len(a), bool)
    for p, q in ((-d[:, 0], a[:, 0] - x0), (d[:, 0], x1 - a[:, 0]),
                 (-d[:, 1], a[:, 1] - y0), (d[:, 1], y1 - a[:, 1])):
        par = np.abs(p) < 1e-12
        ok &= ~(par & (q < 0))
        r = np.where(par, 0.0, q / np.where(par, 1.0, p))
        lo = np.where(~par & (p < 0), np.maximum(lo, r), lo)
        hi = np.where(~par & (p > 0), np.minimum(hi, r), hi)
    return lo, hi, ok & (lo < hi)
