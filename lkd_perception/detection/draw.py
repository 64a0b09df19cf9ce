"""Detections drawn on an image, for people to look at: ``lkd detect --draw`` and the detector
node's debug image share this one drawing, so what an operator sees live is what a file shows."""

from __future__ import annotations

import cv2
import numpy as np

from lkd_perception.detection.postprocess import Detections

# Distinct, saturated colours (RGB); a class keeps its colour across frames and images.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0),
)


def draw_detections(rgb: np.ndarray, det: Detections) -> np.ndarray:
    """A copy of the (H, W, 3) RGB image with each box and a "name score" label on a filled tag.

    Line width and text size follow the image size, so labels stay legible on a 4K frame and do
    not cover a 320-pixel one. Highest scores are drawn last, on top.
    """
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font_scale = max(0.35, min(h, w) / 900)
    order = np.argsort(det.scores, kind="stable")
    boxes = det.boxes_xyxy.round().astype(int)
    for i in order.tolist():
        x1, y1, x2, y2 = boxes[i].tolist()
        cid = int(det.class_ids[i])
        colour = PALETTE[cid % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{det.class_names[cid]} {float(det.scores[i]):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thick - 1))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + base + 2)  # inside the box at the top edge
        cv2.rectangle(out, (x1, ty - th - base), (min(w - 1, x1 + tw + 2), ty + 1), colour, -1)
        ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        cv2.putText(out, text, (x1 + 1, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, ink, max(1, thick - 1),
                    cv2.LINE_AA)
    return out
