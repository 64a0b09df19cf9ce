"""Line-segment metrics: structural AP (sAP^5/10/15) and the heatmap F-score F^H / AP^H.

sAP follows L-CNN ("End-to-End Wireframe Parsing", ICCV 2019, ``lcnn/metric.py``):
segments of every image are rescaled to 128x128 using that image's width and height;
the distance of a prediction to a ground-truth segment is the smaller, over the two endpoint
orderings, of ||p1-g1||^2 + ||p2-g2||^2; in descending score order a prediction is a true
positive if its nearest ground truth is closer than the threshold and not yet matched.
All images are pooled, sorted by score, and the VOC-interpolated AP is reported in percent.

F^H follows the rasterised protocol (``lcnn eval-APH.py``) with a documented approximation:
both sets are drawn 1 px wide at image resolution; a predicted pixel counts as correct if a
ground-truth pixel lies within 1 % of the image diagonal, and a ground-truth pixel as found if a
predicted pixel lies within that distance (distance transforms, i.e. nearest-pixel matching,
not the one-to-one bipartite matching of BSDS ``correspondPixels``; it can only be optimistic
where several predicted pixels crowd one ground-truth pixel). Counts are summed over the data
set for each score threshold, F^H is the best 2PR/(P+R) and AP^H the area under the PR curve.
Thresholds are the quantiles 0, 5, ..., 95 % of all pooled scores, so detectors whose scores
live on different scales (mean heat, -log NFA, length) are swept alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from lkd_perception.common.errors import InputError

SAP_SIZE = 128
SAP_THRESHOLDS = (5.0, 10.0, 15.0)


@dataclass(frozen=True)
class LineMetrics:
    """Data-set metrics in percent, with the counts they rest on."""

    sap5: float
    sap10: float
    sap15: float
    f_h: float
    ap_h: float
    images: int
    ground_truth: int
    predictions: int


def _as_pred(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, np.float64).reshape(-1, 5) if np.size(arr) else np.zeros((0, 5))
    if not np.all(np.isfinite(a)):
        raise InputError("prediction contains NaN or infinite values")
    return a


def _as_gt(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, np.float64)
    if a.size == 0:
        return np.zeros((0, 4))
    if a.ndim != 2 or a.shape[1] < 4:
        raise InputError(f"ground-truth segments must be (N, 4), got {a.shape}")
    return a[:, :4]


def rescale(segments: np.ndarray, width: float, height: float, size: float = SAP_SIZE) -> np.ndarray:
    """Segments (N,>=4) of a width x height image in size x size coordinates (first 4 columns)."""
    if width <= 0 or height <= 0:
        raise InputError(f"image size must be positive, got {width}x{height}")
    out = np.asarray(segments, np.float64)[:, :4].copy()
    out[:, 0::2] *= size / width
    out[:, 1::2] *= size / height
    return out


def match_structural(pred: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """True-positive flags of ``pred`` (N,4), already in descending score order, against ``gt`` (M,4)."""
    tp = np.zeros(len(pred), bool)
    if len(pred) == 0 or len(gt) == 0:
        return tp
    p = pred.reshape(-1, 1, 2, 2)
    g = gt.reshape(1, -1, 2, 2)
    sq = ((p[:, :, :, None, :] - g[:, :, None, :, :]) ** 2).sum(-1)  # (N,M,2,2)
    dist = np.minimum(sq[:, :, 0, 0] + sq[:, :, 1, 1], sq[:, :, 0, 1] + sq[:, :, 1, 0])
    nearest = dist.argmin(1)
    best = dist[np.arange(len(pred)), nearest]
    hit = np.zeros(len(gt), bool)
    for i in range(len(pred)):
        if best[i] < threshold and not hit[nearest[i]]:
            hit[nearest[i]] = True
            tp[i] = True
    return tp


def voc_ap(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """VOC-interpolated AP (fraction) of pooled true-positive flags sorted by descending score."""
    if num_gt == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    recall = tps / num_gt
    precision = tps / np.maximum(tps + fps, 1e-12)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def structural_ap(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    sizes: Sequence[tuple[float, float]],
    thresholds: Sequence[float] = SAP_THRESHOLDS,
) -> dict[float, float]:
    """sAP (percent) per threshold; ``preds[i]`` is (N,5) x1,y1,x2,y2,score, ``sizes[i]`` = (width, height)."""
    if not (len(preds) == len(gts) == len(sizes)):
        raise InputError("preds, gts and sizes must have one entry per image")
    result = {}
    for thr in thresholds:
        tps, scores, num_gt = [], [], 0
        for pred, gt, (w, h) in zip(preds, gts, sizes):
            pred, gt = _as_pred(pred), _as_gt(gt)
            pred = pred[np.argsort(-pred[:, 4], kind="stable")]
            tps.append(match_structural(rescale(pred, w, h), rescale(gt, w, h), thr))
            scores.append(pred[:, 4])
            num_gt += len(gt)
        result[thr] = 100.0 * voc_ap(np.concatenate(tps), np.concatenate(scores), num_gt)
    return result


def rasterise(segments: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (height, width) bool map of 1-px lines (sub-pixel endpoints, pixel centres at integers)."""
    canvas = np.zeros((height, width), np.uint8)
    shift = 4
    for x1, y1, x2, y2 in np.asarray(segments, np.float64).reshape(-1, 4):
        a = (int(round(x1 * (1 << shift))), int(round(y1 * (1 << shift))))
        b = (int(round(x2 * (1 << shift))), int(round(y2 * (1 << shift))))
        cv2.line(canvas, a, b, 1, 1, cv2.LINE_8, shift)
    return canvas > 0


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest set pixel of ``mask`` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def heatmap_scores(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    sizes: Sequence[tuple[float, float]],
    tolerance: float = 0.01,
) -> tuple[float, float]:
    """(F^H, AP^H) in percent; see the module docstring for the matching rule."""
    preds = [_as_pred(p) for p in preds]
    all_scores = np.concatenate([p[:, 4] for p in preds]) if preds else np.zeros(0)
    if len(all_scores) == 0:
        return 0.0, 0.0
    levels = np.unique(np.quantile(all_scores, np.arange(0, 1.0, 0.05)))
    tp_pred = np.zeros(len(levels))
    n_pred = np.zeros(len(levels))
    tp_gt = np.zeros(len(levels))
    n_gt = 0.0
    for pred, gt, (w, h) in zip(preds, gts, sizes):
        w, h = int(round(w)), int(round(h))
        tol = tolerance * float(np.hypot(w, h))
        gt_map = rasterise(_as_gt(gt), w, h)
        n_gt += gt_map.sum()
        dist_gt = _distance_to(gt_map)
        for k, level in enumerate(levels):
            pred_map = rasterise(pred[pred[:, 4] >= level, :4], w, h)
            n_pred[k] += pred_map.sum()
            tp_pred[k] += (dist_gt[pred_map] <= tol).sum()
            tp_gt[k] += (_distance_to(pred_map)[gt_map] <= tol).sum()
    precision = tp_pred / np.maximum(n_pred, 1)
    recall = tp_gt / max(n_gt, 1)
    f = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    order = np.argsort(recall)
    r = np.concatenate([[0.0], recall[order]])
    p = np.concatenate([[precision[order][0]], precision[order]])
    ap = float(np.sum((r[1:] - r[:-1]) * 0.5 * (p[1:] + p[:-1])))
    return 100.0 * float(f.max()), 100.0 * ap


def evaluate_lines(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], sizes: Sequence[tuple[float, float]]
) -> LineMetrics:
    """All line metrics of one data set (one entry per image in each sequence)."""
    sap = structural_ap(preds, gts, sizes)
    f_h, ap_h = heatmap_scores(preds, gts, sizes)
    return LineMetrics(
        sap5=sap[5.0], sap10=sap[10.0], sap15=sap[15.0], f_h=f_h, ap_h=ap_h, images=len(gts),
        ground_truth=int(sum(len(_as_gt(g)) for g in gts)),
        predictions=int(sum(len(_as_pred(p)) for p in preds)),
    )
