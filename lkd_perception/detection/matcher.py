"""One-to-one Hungarian matching between DETR predictions and ground truth, and its box geometry.

DETR has no NMS: each object must be claimed by exactly one query. The matching cost is the one
the loss will pay (focal classification cost + L1 + GIoU), so the assignment is the cheapest for
the loss, solved exactly per image with SciPy's ``linear_sum_assignment``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def _area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise GIoU (N,M) of xyxy boxes a (N,4) and b (M,4): IoU - (enclosing - union) / enclosing."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    iou = inter / (union + eps)
    elt = torch.minimum(a[:, None, :2], b[None, :, :2])
    erb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    enclosing = (erb - elt).clamp(min=0).prod(-1)
    return iou - (enclosing - union) / (enclosing + eps)


def paired_generalized_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of matched xyxy boxes a (...,4) and b (...,4)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = _area(a) + _area(b) - inter
    iou = inter / (union + eps)
    enclosing = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (enclosing - union) / (enclosing + eps)


@dataclass(frozen=True)
class Targets:
    """Ground truth of one image: class indices (n,) int64 and boxes (n,4) normalised cxcywh."""

    labels: torch.Tensor
    boxes: torch.Tensor


@dataclass(frozen=True)
class MatchCost:
    """Weights of the matching cost (Deformable-DETR defaults)."""

    cls: float = 2.0
    l1: float = 5.0
    giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor, boxes: torch.Tensor, targets: list[Targets], cost: MatchCost = MatchCost()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (query indices, target indices) of the minimum-cost one-to-one assignment.

    ``logits`` (B,Q,nc) raw, ``boxes`` (B,Q,4) normalised cxcywh. The class cost is the focal loss
    of calling the query positive minus that of calling it negative, for the target's class.
    """
    out = []
    prob = logits.sigmoid()
    for b, tgt in enumerate(targets):
        if tgt.labels.numel() == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        p = prob[b][:, tgt.labels]  # (Q, n)
        neg = (1 - cost.alpha) * p.pow(cost.gamma) * -(1 - p + 1e-8).log()
        pos = cost.alpha * (1 - p).pow(cost.gamma) * -(p + 1e-8).log()
        c_cls = pos - neg
        c_l1 = torch.cdist(boxes[b], tgt.boxes, p=1)
        c_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes[b]), cxcywh_to_xyxy(tgt.boxes))
        c = cost.cls * c_cls + cost.l1 * c_l1 + cost.giou * c_giou
        rows, cols = linear_sum_assignment(c.cpu().numpy())
        out.append((rows.astype(np.int64), cols.astype(np.int64)))
    return out
