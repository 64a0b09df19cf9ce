"""Raw network outputs -> boxes in original image pixels, for each ONNX family (see DESIGN contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.detection.nms import batched_nms
from lkd_perception.detection.preprocess import Geometry


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes_xyxy`` [N,4] original pixels, ``scores`` [N], ``class_ids`` [N]
    (0-based into ``class_names``)."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of each detection."""
        return [self.class_names[int(c)] for c in self.class_ids]


def empty_detections(class_names: tuple[str, ...]) -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)


def decode_yolo(output: np.ndarray, geometry: Geometry, class_names: tuple[str, ...], conf_threshold: float,
                iou_threshold: float, max_detections: int) -> Detections:
    """YOLOv8-format output [4 + nc, N] (xywh input pixels, sigmoid scores) -> NMSed detections."""
    pred = output.T  # [N, 4 + nc]
    cls_scores = pred[:, 4:]
    class_ids = cls_scores.argmax(1)
    scores = cls_scores[np.arange(pred.shape[0]), class_ids]
    sel = scores > conf_threshold
    if not sel.any():
        return empty_detections(class_names)
    xywh, scores, class_ids = pred[sel, :4], scores[sel], class_ids[sel]
    boxes = np.concatenate((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
    keep = batched_nms(boxes, scores, class_ids, iou_threshold, max_detections)
    return Detections(geometry.to_original(boxes[keep]), scores[keep].astype(np.float32),
                      class_ids[keep].astype(np.int64), class_names)


def decode_deimv2(labels: np.ndarray, boxes_xyxy: np.ndarray, scores: np.ndarray, width: int, height: int,
                  class_names: tuple[str, ...], conf_threshold: float, max_detections: int) -> Detections:
    """DEIMv2 export outputs: labels [K], boxes [K,4] x1y1x2y2 already in original pixels, scores [K].

    The export has already ranked its top (query, class) pairs and scaled the boxes by
    ``orig_target_sizes``; what is left is the threshold, the cap, and clipping, since a box may
    reach past the image border. No NMS, as for every DETR.
    """
    order = np.argsort(-scores, kind="stable")  # exports give them sorted; do not rely on it
    order = order[scores[order] > conf_threshold][:max_detections]
    if order.size == 0:
        return empty_detections(class_names)
    ids = labels[order].astype(np.int64)
    if ids.min() < 0 or ids.max() >= len(class_names):
        raise ModelError(f"DEIMv2 model gave class id {int(ids.max())} but names only {len(class_names)} classes")
    out = boxes_xyxy[order].astype(np.float32, copy=True)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return Detections(out, scores[order].astype(np.float32), ids, class_names)


def detections_to_coco(
    det: Detections, image_id: int, category_ids: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    """One image's Detections -> COCO result dicts (category id = given mapping, else class index + 1).

    Each result also names its class (``category_name``, the model's name): COCO tools ignore the
    extra key, and a reader of the JSON needs no annotation file to know what was found.
    """
    if category_ids is not None and len(category_ids) != len(det.class_names):
        raise InputError(
            f"the model has {len(det.class_names)} classes but the annotations "
            f"{len(category_ids)} categories: results cannot be mapped onto them"
        )
    out = []
    for (x1, y1, x2, y2), s, c in zip(det.boxes_xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        cat = category_ids[c] if category_ids is not None else c + 1
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(cat),
                "category_name": det.class_names[c],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(s),
            }
        )
    return out
