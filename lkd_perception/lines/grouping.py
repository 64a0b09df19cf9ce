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
5. (ours) Collinear pieces whose ends lie within ``merge_gap`` of each other are joined. Region
   growing hands every pixel to one region, so where two lines cross, the line grown second is
   cut at the first one; a chessboard's or a printed grid's lines fall apart at every crossing.
6. Mean-heat filter, length filter, then the confidence: mean heat alone (LSDNet has no NFA), or
   (ours, default) ``1 - exp(-mean heat x length / confidence_length)``, the total heat along the
   segment on a [0, 1) scale. Like LSD's NFA, it ranks a long line above a short fragment of
   texture of the same heat.

LSDNet's optional KDE splitter for close parallel lines is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

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


@dataclass(frozen=True)
class _Axes:
    """Weighted principal axis of each label's points (arrays indexed by label) and where each
    point lies on it (arrays indexed by point)."""

    cx: np.ndarray
    cy: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    minor: np.ndarray  # smaller eigenvalue of the weighted covariance (spread across the axis)
    weight: np.ndarray  # sum of the weights
    along: np.ndarray  # position along the axis, from the centroid
    across: np.ndarray  # signed distance from the axis


def _principal_axes(lab: np.ndarray, x: np.ndarray, y: np.ndarray, wt: np.ndarray, n: int) -> _Axes:
    """Weighted PCA of the points of every label at once (``bincount`` over the labels)."""
    sw = np.bincount(lab, wt, n)
    sw_safe = np.where(sw > 0, sw, 1.0)
    cx, cy = np.bincount(lab, wt * x, n) / sw_safe, np.bincount(lab, wt * y, n) / sw_safe
    dx, dy = x - cx[lab], y - cy[lab]
    sxx = np.bincount(lab, wt * dx * dx, n) / sw_safe
    syy = np.bincount(lab, wt * dy * dy, n) / sw_safe
    sxy = np.bincount(lab, wt * dx * dy, n) / sw_safe
    phi = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    ux, uy = np.cos(phi), np.sin(phi)
    half_trace = 0.5 * (sxx + syy)
    minor = half_trace - np.sqrt(np.maximum(half_trace**2 - (sxx * syy - sxy**2), 0.0))
    return _Axes(cx, cy, ux, uy, minor, sw, along=dx * ux[lab] + dy * uy[lab], across=dy * ux[lab] - dx * uy[lab])


def _spans(axes: _Axes, lab: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(len(index), 4) segments from the extreme projections of each label's points on its axis."""
    tmin = np.asarray(ndimage.minimum(axes.along, lab, index))
    tmax = np.asarray(ndimage.maximum(axes.along, lab, index))
    cx, cy, ux, uy = axes.cx[index], axes.cy[index], axes.ux[index], axes.uy[index]
    return np.stack([cx + tmin * ux, cy + tmin * uy, cx + tmax * ux, cy + tmax * uy], axis=1)


def fit_segments(labels: np.ndarray, heat: np.ndarray) -> GroupedSegments:
    """Step 4-5 (no filtering): heat-weighted PCA line per label, mean heat as the score."""
    ys, xs = np.nonzero(labels)
    if len(ys) == 0:
        return empty_segments()
    lab = labels[ys, xs]
    n = int(lab.max()) + 1
    axes = _principal_axes(lab, xs.astype(np.float64), ys.astype(np.float64), heat[ys, xs].astype(np.float64), n)
    count = np.bincount(lab, None, n)
    index = np.nonzero(count > 0)[0]
    widths = np.maximum(np.sqrt(12.0 * np.maximum(axes.minor[index], 0.0)), 1.0)
    scores = axes.weight[index] / count[index]
    return GroupedSegments(_spans(axes, lab, index), scores, widths)


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


def merge_collinear(found: GroupedSegments, max_gap: float, max_offset: float, angle_deg: float) -> GroupedSegments:
    """Join collinear pieces (step 5): one segment per chain of pieces that continue each other.

    Two pieces continue each other when their directions differ by less than ``angle_deg``, each
    one's ends lie within ``max_offset`` of the other's line, and the gap between them along the
    line is at most ``max_gap`` (candidates come from a k-d tree of the ends, so pieces that merely
    overlap without ends close together are left alone). A chain is refitted through its pieces'
    ends (length-weighted principal axis, extreme projections); a chain that bends by more than
    2 x ``max_offset`` (pieces along a curve) keeps its pieces. The joined score and width are the
    length-weighted means of the pieces'.
    """
    n = len(found.segments)
    if n < 2 or max_gap <= 0:
        return found
    seg = found.segments.astype(np.float64)
    ends = np.concatenate([seg[:, 0:2], seg[:, 2:4]])
    pairs = cKDTree(ends).query_pairs(max_gap + max_offset, output_type="ndarray")
    i, j = pairs[:, 0] % n, pairs[:, 1] % n
    i, j = i[i != j], j[i != j]
    if len(i) == 0:
        return found
    d = seg[:, 2:4] - seg[:, 0:2]
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    u = d / length[:, None]
    ok = np.abs(u[i, 0] * u[j, 1] - u[i, 1] * u[j, 0]) < np.sin(np.deg2rad(angle_deg))
    for a, b in ((i, j), (j, i)):  # each piece's ends near the other's line, and the gap along it
        rel = np.stack([ends[b] - seg[a, 0:2], ends[b + n] - seg[a, 0:2]])  # (2, P, 2)
        t = rel[..., 0] * u[a, 0] + rel[..., 1] * u[a, 1]
        off = np.abs(rel[..., 1] * u[a, 0] - rel[..., 0] * u[a, 1])
        gap = np.maximum(t.min(axis=0) - length[a], -t.max(axis=0))
        ok &= (off < max_offset).all(axis=0) & (gap <= max_gap)
    if not ok.any():
        return found
    _, lab = connected_components(coo_matrix((np.ones(int(ok.sum())), (i[ok], j[ok])), shape=(n, n)), directed=False)
    # Principal axis of each chain through its pieces' ends, weighted by the pieces' lengths.
    m = int(lab.max()) + 1
    plab = np.concatenate([lab, lab])
    axes = _principal_axes(plab, ends[:, 0], ends[:, 1], np.concatenate([length, length]), m)
    index = np.arange(m)
    bent = np.asarray(ndimage.maximum(np.abs(axes.across), plab, index))
    joined = (np.bincount(lab, None, m) > 1) & (bent <= 2 * max_offset)
    chain = _spans(axes, plab, index)[joined]
    length_sum = np.bincount(lab, length, m)
    score = (np.bincount(lab, length * found.scores, m) / length_sum)[joined]
    width = (np.bincount(lab, length * found.widths, m) / length_sum)[joined]
    alone = ~joined[lab]
    return GroupedSegments(
        np.concatenate([found.segments[alone], chain]),
        np.concatenate([found.scores[alone], score]),
        np.concatenate([found.widths[alone], width]),
    )


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
    found = merge_collinear(GroupedSegments(segments, scores, widths), cfg.merge_gap, cfg.merge_offset,
                            cfg.angle_tolerance_deg)
    d = found.segments[:, 2:4] - found.segments[:, 0:2]
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length >= cfg.min_length
    scores = found.scores
    if cfg.confidence_length > 0:
        scores = 1.0 - np.exp(-scores * length / cfg.confidence_length)
    return GroupedSegments(found.segments[ok], scores[ok], found.widths[ok])
