"""LSD-style grouping of the network's heatmap and direction field into line segments.

The steps follow LSDNet's ``line_extracter`` (REFERENCE 2.2), re-written for Python speed:

1. Support: heat above a threshold AND a Gaussian adaptive threshold on heat*255, which keeps the
   ridge of a line and drops its flanks.
2. Seeds in descending heat order (only those that can give a segment above the score threshold).
3. Region growing over the 8-neighbourhood with ``cv2.floodFill`` in fixed-range mode on the
   3-channel image (cos 2θ, sin 2θ, heat): a pixel joins when each component differs from the
   seed's by at most the tolerance. Comparing with the seed (the region's strongest, best-oriented
   pixel) instead of the running mean keeps the loop in C; the per-component box admits direction
   differences between ``angle_tolerance_deg`` and about 1.4 times it, depending on direction.
   Grown pixels are marked used, so later seeds start only in unclaimed support.
4. Heat-weighted PCA per region (vectorised with ``bincount`` over the label image); endpoints are
   the extreme projections on the main axis, the width comes from the spread across it. Then
   (ours, optional) each end is moved to where the heat along the axis falls to half, which
   recovers the corners that region growing leaves to the neighbouring segment.
5. Confidence = mean heat (there is no NFA in LSDNet), then size / length / score filters.

LSDNet's optional KDE splitter for close parallel lines is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from lkd_perception.common.errors import InputError
from lkd_perception.lines.config import LineConfig


@dataclass(frozen=True)
class GroupedSegments:
    """Segments in heat-map pixel coordinates: ``segments`` (N,4) x1,y1,x2,y2, ``scores``, ``widths`` (N,)."""

    segments: np.ndarray
    scores: np.ndarray
    widths: np.ndarray


def empty_segments() -> GroupedSegments:
    return GroupedSegments(np.zeros((0, 4), np.float64), np.zeros(0, np.float64), np.zeros(0, np.float64))


def support_mask(heat: np.ndarray, cfg: LineConfig) -> np.ndarray:
    """Step 1: pixels that may belong to a line (bool, same shape as ``heat``)."""
    mask = heat > cfg.heat_threshold
    if cfg.adaptive_block >= 3:
        block = cfg.adaptive_block | 1  # OpenCV needs an odd block size
        heat8 = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
        adaptive = cv2.adaptiveThreshold(
            heat8, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, cfg.adaptive_c
        )
        mask &= adaptive > 0
    return mask


def grow_regions(heat: np.ndarray, theta: np.ndarray, support: np.ndarray, cfg: LineConfig) -> np.ndarray:
    """Steps 2-3: an int32 label image (0 = no region); regions smaller than the minimum are dropped."""
    h, w = heat.shape
    field = np.dstack([np.cos(2 * theta), np.sin(2 * theta), heat]).astype(np.float32)
    d = 2.0 * np.sin(np.deg2rad(cfg.angle_tolerance_deg))  # chord of the doubled angle
    diff = (d, d, cfg.heat_tolerance)
    blocked = np.ones((h + 2, w + 2), np.uint8)
    blocked[1:-1, 1:-1][support] = 0
    flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (2 << 8)
    labels = np.zeros((h, w), np.int32)
    # Seeds go in descending heat, and a pixel hotter than a seed is either already used or was a
    # seed itself, so a region's mean heat never exceeds its seed's: seeds below the score
    # threshold cannot yield a kept segment and are not tried (their pixels stay available).
    seeds = support & (heat >= cfg.score_threshold)
    ys, xs = np.nonzero(seeds)
    order = np.argsort(-heat[ys, xs], kind="stable")
    next_label = 1
    for y, x in zip(ys[order].tolist(), xs[order].tolist()):
        if blocked[y + 1, x + 1]:
            continue
        area, _, _, (rx, ry, rw, rh) = cv2.floodFill(field, blocked, (x, y), 0, diff, diff, flags)
        sub = blocked[ry + 1:ry + rh + 1, rx + 1:rx + rw + 1]
        grown = sub == 2
        sub[grown] = 1  # used: no later region may take these pixels
        if area >= cfg.min_region_size:
            labels[ry:ry + rh, rx:rx + rw][grown] = next_label
            next_label += 1
    return labels


def fit_segments(labels: np.ndarray, heat: np.ndarray) -> GroupedSegments:
    """Step 4-5 (no filtering): heat-weighted PCA line per label, mean heat as the score."""
    ys, xs = np.nonzero(labels)
    if len(ys) == 0:
        return empty_segments()
    lab = labels[ys, xs]
    n = int(lab.max()) + 1
    wt = heat[ys, xs].astype(np.float64)
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    sw = np.bincount(lab, wt, n)
    count = np.bincount(lab, None, n)
    keep = count > 0
    sw_safe = np.where(sw > 0, sw, 1.0)
    mx, my = np.bincount(lab, wt * x, n) / sw_safe, np.bincount(lab, wt * y, n) / sw_safe
    dx, dy = x - mx[lab], y - my[lab]
    sxx = np.bincount(lab, wt * dx * dx, n) / sw_safe
    syy = np.bincount(lab, wt * dy * dy, n) / sw_safe
    sxy = np.bincount(lab, wt * dx * dy, n) / sw_safe
    phi = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    ux, uy = np.cos(phi), np.sin(phi)
    t = dx * ux[lab] + dy * uy[lab]
    index = np.nonzero(keep)[0]
    tmin = np.asarray(ndimage.minimum(t, lab, index))
    tmax = np.asarray(ndimage.maximum(t, lab, index))
    half_trace = 0.5 * (sxx + syy)
    minor = half_trace - np.sqrt(np.maximum(half_trace**2 - (sxx * syy - sxy**2), 0.0))
    cx, cy, ux, uy = mx[index], my[index], ux[index], uy[index]
    segments = np.stack([cx + tmin * ux, cy + tmin * uy, cx + tmax * ux, cy + tmax * uy], axis=1)
    widths = np.maximum(np.sqrt(12.0 * np.maximum(minor[index], 0.0)), 1.0)
    scores = sw[index] / count[index]
    return GroupedSegments(segments, scores, widths)


_WALK = np.arange(-2.0, 6.01, 0.25)  # px along the axis, from 2 px inside to 6 px outside an end
_TARGET_END_OFFSET = 0.5  # px past the true end where the training target falls to half (0.59)


def refine_endpoints(segments: np.ndarray, scores: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Move each endpoint to where the heat along the segment's axis falls to half its level.

    Extreme pixel projections stop short at corners, where the two edges' pixels mix
    directions and region growing hands the corner to one of them; the heat ridge itself runs
    on to the corner. Walking the (bilinearly sampled) heat outwards from 2 px inside each end
    finds where the ridge really stops. The half level is half the segment's mean heat, and the
    crossing is moved back by the distance at which the training target reaches half height.
    Ends whose inner sample is already below half keep their extreme-projection position.
    """
    if len(segments) == 0:
        return segments
    seg = segments.astype(np.float64)
    d = seg[:, 2:4] - seg[:, 0:2]
    length = np.hypot(d[:, 0], d[:, 1])
    u = d / np.maximum(length, 1e-9)[:, None]
    ends = np.concatenate([seg[:, 0:2], seg[:, 2:4]])  # (2N, 2): all first ends, then all second ends
    out_dir = np.concatenate([-u, u])
    pts = ends[:, None, :] + _WALK[None, :, None] * out_dir[:, None, :]  # (2N, K, 2)
    samples = cv2.remap(heat.astype(np.float32), pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    level = 0.5 * np.concatenate([scores, scores])[:, None]
    below = samples < level
    first = np.argmax(below, axis=1)  # first sample under the level (0 if none or the first)
    ok = (~below[:, 0]) & below.any(axis=1) & (np.concatenate([length, length]) > 4.0)
    k = np.clip(first, 1, len(_WALK) - 1)
    rows = np.arange(len(ends))
    h0, h1 = samples[rows, k - 1], samples[rows, k]
    frac = np.clip((h0 - level[:, 0]) / np.maximum(h0 - h1, 1e-6), 0.0, 1.0)
    walk = _WALK[k - 1] + frac * (_WALK[k] - _WALK[k - 1]) - _TARGET_END_OFFSET
    moved = ends + np.where(ok, walk, 0.0)[:, None] * out_dir
    n = len(seg)
    return np.concatenate([moved[:n], moved[n:]], axis=1)


def group_lines(heat: np.ndarray, theta: np.ndarray, cfg: LineConfig) -> GroupedSegments:
    """Heat (H,W) in [0,1] and line direction ``theta`` (H,W, radians, mod π) -> filtered segments."""
    heat = np.asarray(heat, np.float32)
    theta = np.asarray(theta, np.float32)
    if heat.ndim != 2 or heat.shape != theta.shape or heat.size == 0:
        raise InputError(f"heat and theta must be equal non-empty 2-D maps, got {heat.shape} and {theta.shape}")
    labels = grow_regions(heat, theta, support_mask(heat, cfg), cfg)
    raw = fit_segments(labels, heat)
    keep = raw.scores >= cfg.score_threshold
    segments, scores, widths = raw.segments[keep], raw.scores[keep], raw.widths[keep]
    if cfg.refine_endpoints:
        segments = refine_endpoints(segments, scores, heat)
    d = segments[:, 2:4] - segments[:, 0:2]
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length >= cfg.min_length
    if cfg.score_length_scale > 0:
        scores = scores * (1.0 - np.exp(-length / cfg.score_length_scale))
    return GroupedSegments(segments[ok], scores[ok], widths[ok])
