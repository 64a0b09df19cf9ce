"""LeYOLO training loss: BCE classification + CIoU box + Distribution Focal Loss (YOLOv8 recipe).

All three terms are normalised by the sum of the soft target scores, so images with many objects
and images with few contribute comparably, and the total is scaled by the batch size as in the
reference recipe (which its learning rates assume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lkd_perception.detection.assigner import TaskAlignedAssigner
from lkd_perception.detection.blocks import make_anchors
from lkd_perception.detection.boxes import box_iou_ciou, box_to_dist, dist_to_box


@dataclass(frozen=True)
class LossParts:
    """The total (with gradient) and its detached components, for logging."""

    total: torch.Tensor
    box: float
    cls: float
    dfl: float


def targets_to_padded(targets: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[K, 6] rows (image index, class, x1, y1, x2, y2) -> labels [B,M], boxes [B,M,4], mask [B,M]."""
    dev = targets.device
    if targets.numel() == 0:
        return (torch.zeros(batch, 0, dtype=torch.long, device=dev), torch.zeros(batch, 0, 4, device=dev),
                torch.zeros(batch, 0, dtype=torch.bool, device=dev))
    idx = targets[:, 0].long()
    counts = torch.bincount(idx, minlength=batch)
    m = int(counts.max())
    labels = torch.zeros(batch, m, dtype=torch.long, device=dev)
    boxes = torch.zeros(batch, m, 4, device=dev)
    mask = torch.zeros(batch, m, dtype=torch.bool, device=dev)
    order = torch.argsort(idx, stable=True)
    idx_sorted = idx[order]
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(idx), device=dev) - starts[idx_sorted]
    labels[idx_sorted, slot] = targets[order, 1].long()
    boxes[idx_sorted, slot] = targets[order, 2:6]
    mask[idx_sorted, slot] = True
    return labels, boxes, mask


class DetectionLoss:
    """Loss of a LeYOLO head given its raw maps and the batch targets (pixels of the input tensor)."""

    def __init__(
        self,
        num_classes: int,
        strides: tuple[int, ...],
        reg_max: int = 16,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        top_k: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        self.nc, self.strides, self.reg_max = num_classes, strides, reg_max
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.assigner = TaskAlignedAssigner(num_classes, top_k, alpha, beta)

    def __call__(self, maps: list[torch.Tensor], targets: torch.Tensor) -> LossParts:
        b = maps[0].shape[0]
        flat = torch.cat([mp.flatten(2) for mp in maps], 2)  # [B, 4R + C, A]
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.nc), 1)
        box_logits = box_logits.permute(0, 2, 1).float()  # [B, A, 4R]
        cls_logits = cls_logits.permute(0, 2, 1).float()  # [B, A, C]
        points, stride = make_anchors(maps, self.strides)
        bins = torch.arange(self.reg_max, device=flat.device, dtype=torch.float32)
        a = box_logits.shape[1]
        dist = box_logits.view(b, a, 4, self.reg_max).softmax(-1) @ bins  # [B, A, 4] stride units
        pred_boxes = dist_to_box(dist, points)

        labels, gt_boxes, gt_mask = targets_to_padded(targets.to(flat.device).float(), b)
        sa = stride.view(1, -1, 1)
        assigned = self.assigner(
            cls_logits.detach().sigmoid(),
            (pred_boxes.detach() * sa),
            points * stride.unsqueeze(-1),
            labels,
            gt_boxes,
            gt_mask,
        )
        score_sum = assigned.scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, assigned.scores, reduction="sum") / score_sum

        fg = assigned.foreground
        if fg.any():
            weight = assigned.scores.sum(-1)[fg]
            target = (assigned.boxes / sa)[fg]  # stride units
            iou = box_iou_ciou(pred_boxes[fg], target)
            loss_box = ((1.0 - iou) * weight).sum() / score_sum
            ltrb = box_to_dist(points.unsqueeze(0).expand(b, -1, -1)[fg], target, self.reg_max - 1 - 0.01)
            loss_dfl = (
                self._dfl(box_logits[fg].view(-1, self.reg_max), ltrb.reshape(-1)).view(-1, 4).mean(-1) * weight
            ).sum() / score_sum
        else:
            loss_box = loss_dfl = flat.sum() * 0.0
        gb, gc, gd = self.gains
        total = (gb * loss_box + gc * loss_cls + gd * loss_dfl) * b
        return LossParts(total, float(loss_box.detach()), float(loss_cls.detach()), float(loss_dfl.detach()))

    @staticmethod
    def _dfl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two bins around a continuous target, weighted by proximity."""
        left = target.long()
        right = left + 1
        w_left = right.float() - target
        return F.cross_entropy(logits, left, reduction="none") * w_left + F.cross_entropy(
            logits, right, reduction="none"
        ) * (1.0 - w_left)
