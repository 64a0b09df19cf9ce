"""Task-aligned label assignment (TAL, from TOOD; used by YOLOv8 and LeYOLO).

For every ground-truth box the ``top_k`` anchors inside it with the highest alignment
``score^alpha * IoU^beta`` become positives; an anchor claimed by several boxes keeps the one it
overlaps most. Soft class targets are the alignment normalised per box so that the best anchor
of each box gets that box's best IoU: classification learns to rank by localisation quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lkd_perception.detection.boxes import box_iou_ciou


@dataclass(frozen=True)
class Assignment:
    """Targets per anchor: boxes [B, A, 4] (xyxy, pixels), soft scores [B, A, C], positives [B, A]."""

    boxes: torch.Tensor
    scores: torch.Tensor
    foreground: torch.Tensor
    gt_index: torch.Tensor


class TaskAlignedAssigner:
    """TAL with the LeYOLO/YOLOv8 settings (alpha 0.5, beta 6, top-k 10) as defaults."""

    def __init__(
        self, num_classes: int, top_k: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9
    ) -> None:
        self.nc, self.top_k, self.alpha, self.beta, self.eps = num_classes, top_k, alpha, beta, eps

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchors: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> Assignment:
        """pred_scores [B,A,C] probabilities; pred_boxes [B,A,4] xyxy; anchors [A,2] xy;
        gt_labels [B,M] int; gt_boxes [B,M,4] xyxy; gt_mask [B,M] bool (False = padding)."""
        b, a, _ = pred_scores.shape
        m = gt_boxes.shape[1]
        dev = pred_scores.device
        if m == 0:
            return Assignment(
                torch.zeros_like(pred_boxes),
                torch.zeros_like(pred_scores),
                torch.zeros(b, a, dtype=torch.bool, device=dev),
                torch.zeros(b, a, dtype=torch.long, device=dev),
            )
        # 1. candidates: anchor centres strictly inside a real gt box
        x, y = anchors[:, 0].view(1, 1, -1), anchors[:, 1].view(1, 1, -1)
        g = gt_boxes.unsqueeze(-1)  # [B,M,4,1]
        inside = torch.stack((x - g[:, :, 0], y - g[:, :, 1], g[:, :, 2] - x, g[:, :, 3] - y), -1).amin(-1) > self.eps
        candidate = inside & gt_mask.unsqueeze(-1)  # [B,M,A]
        # 2. alignment metric of each candidate
        overlaps = torch.zeros(b, m, a, device=dev, dtype=pred_boxes.dtype)
        bi, mi, ai = candidate.nonzero(as_tuple=True)
        overlaps[bi, mi, ai] = box_iou_ciou(gt_boxes[bi, mi], pred_boxes[bi, ai]).clamp(min=0).to(overlaps.dtype)
        cls_prob = pred_scores.gather(2, gt_labels.long().clamp(0, self.nc - 1).unsqueeze(1).expand(b, a, m)).transpose(
            1, 2
        )
        align = cls_prob.pow(self.alpha) * overlaps.pow(self.beta) * candidate
        # 3. top-k candidates per gt box
        k = min(self.top_k, a)
        top_idx = align.topk(k, dim=-1).indices
        top_mask = torch.zeros_like(candidate).scatter_(-1, top_idx, True)
        positive = top_mask & candidate
        # 4. an anchor claimed by several boxes keeps the box it overlaps most
        claims = positive.sum(1)  # [B,A]
        if (claims > 1).any():
            best = F.one_hot(overlaps.argmax(1), m).transpose(1, 2).bool()  # [B,M,A]
            positive = torch.where((claims > 1).unsqueeze(1), best, positive)
        foreground = positive.any(1)
        gt_index = positive.float().argmax(1)  # [B,A]
        labels = gt_labels.long().gather(1, gt_index).clamp(0, self.nc - 1)
        boxes = gt_boxes.gather(1, gt_index.unsqueeze(-1).expand(b, a, 4))
        # 5. soft targets: alignment rescaled so each box's best anchor gets the box's best IoU
        align = align * positive
        norm = align * (overlaps * positive).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + self.eps)
        scores = F.one_hot(labels, self.nc).to(pred_scores.dtype) * norm.amax(1).unsqueeze(-1)
        scores = scores * foreground.unsqueeze(-1)
        return Assignment(boxes, scores, foreground, gt_index)
