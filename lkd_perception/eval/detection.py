"""COCO box mAP (faster-coco-eval) of detections in the COCO results format.

Ground truth without ``area``/``iscrowd`` (as simple writers produce) is completed with the box
area and 0, so the standard area ranges work.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lkd_perception.common.errors import InputError

logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)


@dataclass(frozen=True)
class DetectionMetrics:
    """COCO box metrics; ``per_class_ap`` is mAP50-95 per category name (-1 when it has no GT)."""

    map50_95: float
    map50: float
    map75: float
    per_class_ap: dict[str, float]
    num_images: int
    num_predictions: int

    def to_dict(self) -> dict[str, Any]:
        return {"mAP50-95": self.map50_95, "mAP50": self.map50, "mAP75": self.map75,
                "per_class_AP50-95": dict(self.per_class_ap), "num_images": self.num_images,
                "num_predictions": self.num_predictions}


def _complete_gt(gt: Mapping[str, Any]) -> dict[str, Any]:
    if not all(k in gt for k in ("images", "annotations", "categories")):
        raise InputError("ground truth must be a COCO dict with images, annotations and categories")
    out = copy.deepcopy(dict(gt))
    for i, a in enumerate(out["annotations"]):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
    return out


def evaluate_detections(gt: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]]) -> DetectionMetrics:
    """COCO mAP of ``predictions`` (dicts with image_id, category_id, bbox xywh, score) against ``gt``."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt_full = _complete_gt(gt)
    names = {c["id"]: c["name"] for c in gt_full["categories"]}
    image_ids = {im["id"] for im in gt_full["images"]}
    preds = [dict(p) for p in predictions]
    for p in preds:
        if not {"image_id", "category_id", "bbox", "score"} <= set(p):
            raise InputError(f"prediction lacks image_id/category_id/bbox/score: {p}")
    unknown = {p["image_id"] for p in preds} - image_ids
    if unknown:
        raise InputError(f"predictions name image ids absent from the ground truth: {sorted(unknown)[:5]}")
    if not preds:
        return DetectionMetrics(0.0, 0.0, 0.0, {n: 0.0 for n in names.values()}, len(image_ids), 0)
    coco_gt = COCO(gt_full)
    coco_dt = coco_gt.loadRes(preds)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = ev.stats
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    per_class: dict[str, float] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else -1.0
    return DetectionMetrics(float(stats[0]), float(stats[1]), float(stats[2]), per_class, len(image_ids), len(preds))
