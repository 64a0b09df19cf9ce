"""DEIMv2's training loss for Atto/Femto: Hungarian matching, matchability-aware loss (MAL) on the
classes, L1 + GIoU on the boxes, on every decoder layer, the first layer's plain-regression head
and the encoder's top-k proposals (each matched on its own, as the published criterion does with
``use_uni_set: False``).

The published Atto/Femto configs train with ``losses: ['mal', 'boxes']`` only (the FDR
distribution losses FGL/DDF are switched off for these sizes), with weights 1 / 5 / 2 and
MAL gamma 1.5; the matcher costs are class 2 (focal form, alpha 0.25, gamma 2), L1 5, GIoU 2,
which is our :func:`hungarian_match` with its default :class:`MatchCost`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lkd_perception.detection.deimv2_decoder import DecoderOutput
from lkd_perception.detection.matcher import Targets, cxcywh_to_xyxy, hungarian_match, paired_generalized_box_iou


@dataclass(frozen=True)
class DEIMLossWeights:
    """Weights of the published criterion (``weight_dict``) and MAL's gamma."""

    mal: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    gamma: float = 1.5


def paired_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU of matched xyxy boxes (N,4) and (N,4)."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter + eps)


def _gather(logits: torch.Tensor, boxes: torch.Tensor, targets: list[Targets], matches):
    """Matched (batch index, query index), predicted boxes and the targets' boxes and labels."""
    bi = torch.cat([torch.full((len(q),), b, dtype=torch.long) for b, (q, _) in enumerate(matches)])
    qi = torch.cat([torch.as_tensor(q, dtype=torch.long) for q, _ in matches])
    tb = torch.cat([t.boxes[torch.as_tensor(j, dtype=torch.long)] for t, (_, j) in zip(targets, matches)])
    tl = torch.cat([t.labels[torch.as_tensor(j, dtype=torch.long)] for t, (_, j) in zip(targets, matches)])
    return bi, qi, boxes[bi, qi], tb.to(boxes), tl.to(logits.device)


def set_losses(logits: torch.Tensor, boxes: torch.Tensor, targets: list[Targets], w: DEIMLossWeights,
               num_boxes: float) -> dict[str, torch.Tensor]:
    """MAL + L1 + GIoU of one prediction set (B,Q,C) / (B,Q,4) against its own Hungarian matching."""
    matches = hungarian_match(logits.detach(), boxes.detach(), targets)
    bi, qi, pb, tb, tl = _gather(logits, boxes, targets, matches)
    target = torch.zeros_like(logits)
    onehot = torch.zeros_like(logits)
    if len(bi):
        iou = paired_iou(cxcywh_to_xyxy(pb.detach()), cxcywh_to_xyxy(tb))
        target[bi, qi, tl] = iou.to(logits.dtype).pow(w.gamma)
        onehot[bi, qi, tl] = 1.0
    weight = logits.detach().sigmoid().pow(w.gamma) * (1 - onehot) + onehot
    mal = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    mal = mal.mean(1).sum() * logits.shape[1] / num_boxes
    if len(bi):
        l1 = F.l1_loss(pb, tb, reduction="sum") / num_boxes
        giou = (1 - paired_generalized_box_iou(cxcywh_to_xyxy(pb), cxcywh_to_xyxy(tb))).sum() / num_boxes
    else:
        l1 = giou = boxes.sum() * 0.0
    return {"mal": w.mal * mal, "bbox": w.bbox * l1, "giou": w.giou * giou}


def deim_loss(out: DecoderOutput, targets: list[Targets], w: DEIMLossWeights = DEIMLossWeights()
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss over every supervised prediction set, and its parts (summed over the sets) for logs."""
    num_boxes = max(1.0, float(sum(len(t.labels) for t in targets)))
    sets = [(out.logits[i], out.boxes[i]) for i in range(out.logits.shape[0])]
    sets.append((out.pre_logits, out.pre_boxes))
    if out.enc_logits is not None:
        sets.append((out.enc_logits, out.enc_boxes))
    parts: dict[str, torch.Tensor] = {}
    for logits, boxes in sets:
        for k, v in set_losses(logits, boxes, targets, w, num_boxes).items():
            parts[k] = parts.get(k, 0.0) + v
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}
