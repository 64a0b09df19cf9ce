"""Training-time augmentation of the LeYOLO recipe: HSV jitter, horizontal flip, random
scale/translate (one affine warp), all on letterboxed squares with boxes carried along.

Mosaic and mixup are off, as in the published nano checkpoint's recipe (REFERENCE.md 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lkd_perception.detection.preprocess import PAD_VALUE, letterbox


@dataclass(frozen=True)
class AugmentSettings:
    """Strengths; zero disables an augmentation."""

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    fliplr: float = 0.5
    scale: float = 0.5
    translate: float = 0.1


def augment_hsv(image: np.ndarray, s: AugmentSettings, rng: np.random.Generator) -> np.ndarray:
    """Random multiplicative gains on hue, saturation and value through lookup tables (RGB in/out)."""
    if not (s.hsv_h or s.hsv_s or s.hsv_v):
        return image
    gains = rng.uniform(-1, 1, 3) * (s.hsv_h, s.hsv_s, s.hsv_v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def random_affine(image: np.ndarray, boxes: np.ndarray, s: AugmentSettings, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scale about the centre by U(1-scale, 1+scale) and shift by U(-translate, translate) of the size.

    Returns the warped image and a keep mask + boxes: boxes are clipped to the image and dropped
    when less than 10 % of their area or under 2 px in a side remains visible.
    """
    size = image.shape[0]
    if not (s.scale or s.translate):
        return image, boxes
    g = rng.uniform(1 - s.scale, 1 + s.scale)
    tx, ty = rng.uniform(0.5 - s.translate, 0.5 + s.translate, 2) * size
    m = np.array([[g, 0, tx - g * size / 2], [0, g, ty - g * size / 2]], dtype=np.float64)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    if boxes.shape[0] == 0:
        return out, boxes
    nb = boxes * g + np.array([m[0, 2], m[1, 2], m[0, 2], m[1, 2]])
    clipped = nb.clip(0, size)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    area0 = (nb[:, 2] - nb[:, 0]) * (nb[:, 3] - nb[:, 1])
    ok = (w > 2) & (h > 2) & (w * h > 0.1 * np.maximum(area0, 1e-9))
    return out, np.where(ok[:, None], clipped, np.nan)


def prepare_sample(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, size: int, s: AugmentSettings,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Letterbox to ``size`` then augment. Returns (S,S,3) uint8, boxes [n,4] xyxy input pixels, classes [n]."""
    square, geom = letterbox(image, size)
    b = boxes.astype(np.float64).copy()
    b[:, [0, 2]] = b[:, [0, 2]] * geom.scale_x + geom.pad_x
    b[:, [1, 3]] = b[:, [1, 3]] * geom.scale_y + geom.pad_y
    square, b = random_affine(square, b, s, rng)
    keep = ~np.isnan(b).any(1)
    b, classes = b[keep], classes[keep]
    square = augment_hsv(square, s, rng)
    if s.fliplr and rng.random() < s.fliplr:
        square = np.ascontiguousarray(square[:, ::-1])
        b = np.stack((size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]), 1) if b.shape[0] else b
    return square, b.astype(np.float32).reshape(-1, 4), classes.astype(np.int64)
