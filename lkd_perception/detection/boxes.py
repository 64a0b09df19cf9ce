"""Box geometry in torch shared by the assigner and the losses (xyxy pixels unless stated)."""

from __future__ import annotations

import math

import torch


def box_iou_ciou(a: torch.Tensor, b: torch.Tensor, ciou: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU (or Complete-IoU) of broadcastable xyxy boxes ``a`` and ``b`` (last dim 4).

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v, where v measures the
    aspect-ratio mismatch; it keeps a gradient for non-overlapping boxes.
    """
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    w1, h1 = ax2 - ax1, (ay2 - ay1).clamp(min=eps)
    w2, h2 = bx2 - bx1, (by2 - by1).clamp(min=eps)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not ciou:
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    diag2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / diag2 + v * alpha)


def dist_to_box(dist: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(left, top, right, bottom) distances from anchor points -> xyxy (same units as the inputs)."""
    lt, rb = dist.chunk(2, -1)
    return torch.cat((points - lt, points + rb), -1)


def box_to_dist(points: torch.Tensor, boxes: torch.Tensor, limit: float) -> torch.Tensor:
    """xyxy -> (left, top, right, bottom) distances from anchor points, clamped to [0, limit]."""
    x1y1, x2y2 = boxes.chunk(2, -1)
    return torch.cat((points - x1y1, x2y2 - points), -1).clamp(0, limit)
