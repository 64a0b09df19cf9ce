"""COCO training data held in memory for the set-prediction detector (DEIMv2): images resized to
the training square, targets as normalised cxcywh, and what evaluation needs to map predictions
back to COCO ids and pixels.

The boxes are those :func:`lkd_perception.io.coco.load_coco` keeps (one rule for every family);
training resizes with the very function the runtime preprocesses with
(:mod:`lkd_perception.detection.preprocess`), so deployment sees the pixels training saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from lkd_perception.common.errors import InputError
from lkd_perception.detection.matcher import Targets
from lkd_perception.detection.preprocess import Geometry
from lkd_perception.io.coco import load_coco
from lkd_perception.io.formats import read_rgb

#: (RGB image, square side) -> (the resized (side, side, 3) uint8 image, its geometry), e.g.
#: ``preprocess.deimv2_resize``
Resize = Callable[[np.ndarray, int], tuple[np.ndarray, Geometry]]

@dataclass(frozen=True)
class DetectionData:
    """Images resized to the training square, targets in normalised cxcywh, and the COCO
    document and ids for evaluation."""

    images: np.ndarray  # (N,S,S,3) uint8 RGB
    labels: list[np.ndarray]
    boxes: list[np.ndarray]
    image_ids: list[int]
    orig_sizes: np.ndarray  # (N,2) width, height
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    coco: dict[str, Any]


def load_detection_data(path: str | Path, size: int, resize: Resize, max_frames: int = 0) -> DetectionData:
    """A COCO folder (``annotations.json`` + ``images/``) or annotation file, its first
    ``max_frames`` images (0 = all, file order) resized to ``size`` with ``resize``."""
    cs = load_coco(path).head(max_frames)
    if not cs.images:
        raise InputError(f"{cs.annotation_file}: no images")
    arr = np.zeros((len(cs.images), size, size, 3), np.uint8)
    labels, boxes, sizes = [], [], []
    for k, im in enumerate(cs.images):
        rgb = read_rgb(im.path)
        h, w = rgb.shape[:2]
        arr[k] = resize(rgb, size)[0]
        b = im.boxes_xyxy.astype(np.float32)
        cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                           (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1)
        labels.append(im.classes.astype(np.int64))
        boxes.append(np.clip(cxcywh, 0, 1).astype(np.float32))
        sizes.append((w, h))
    return DetectionData(arr, labels, boxes, [im.image_id for im in cs.images], np.asarray(sizes, np.int64),
                         cs.class_names, cs.category_ids, cs.ground_truth())


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(B,S,S,3) uint8 -> (B,3,S,S) float in [0,1], what both families' networks take."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def batch(data: DetectionData, idx: np.ndarray, flips: np.ndarray) -> tuple[torch.Tensor, list[Targets]]:
    """Images (B,3,S,S) in [0,1] and targets, horizontally flipped where ``flips``."""
    imgs = data.images[idx].copy()
    targets = []
    for j, (i, flip) in enumerate(zip(idx, flips)):
        b = data.boxes[i].copy()
        if flip:
            imgs[j] = imgs[j, :, ::-1]
            b[:, 0] = 1.0 - b[:, 0]
        targets.append(Targets(torch.from_numpy(data.labels[i]), torch.from_numpy(b)))
    return _tensor(imgs), targets


def image_batches(data: DetectionData, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Every image in order, ``batch_size`` at a time: (indices, images (B,3,S,S) in [0,1])."""
    for s in range(0, len(data.images), batch_size):
        idx = np.arange(s, min(s + batch_size, len(data.images)))
        yield idx, _tensor(data.images[idx])


def coco_result(data: DetectionData, index: int, class_index: int, xywh: Sequence[float],
                score: float) -> dict[str, Any]:
    """One prediction on image ``index`` in the COCO results format (box in original pixels)."""
    return {"image_id": int(data.image_ids[index]), "category_id": int(data.category_ids[class_index]),
            "bbox": [float(v) for v in xywh], "score": float(score)}
