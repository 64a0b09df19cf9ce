"""DETR set losses: sigmoid focal classification + L1 + GIoU on matched pairs, per decoder layer.

Every decoder layer is supervised (auxiliary losses) with its own Hungarian matching. Denoising
queries built from noised ground truth are supervised with their known one-to-one assignment
(query i <-> object i), which gives the decoder a direct box-refinement signal from the first
iteration and is the main reason a DETR learns anything within a CPU-minutes budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lkd_perception.detection.detr import DecoderOutput
from lkd_perception.detection.matcher import (
    MatchCost,
    Targets,
    cxcywh_to_xyxy,
    hungarian_match,
    paired_generalized_box_iou,
)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three set-loss terms and the focal-loss shape."""

    cls: float = 2.0
    l1: float = 5.0
    giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0

    def match_cost(self) -> MatchCost:
        return MatchCost(self.cls, self.l1, self.giou, self.alpha, self.gamma)


@dataclass(frozen=True)
class PaddedTargets:
    """Ground truth of a batch padded to the largest count: labels (B,N), boxes (B,N,4), pad (B,N) True = empty."""

    labels: torch.Tensor
    boxes: torch.Tensor
    pad: torch.Tensor


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al.): down-weights the many easy negatives."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return a_t * ce * (1 - p_t) ** gamma


def pad_targets(targets: list[Targets]) -> PaddedTargets | None:
    """Stack per-image targets into padded tensors; None when the batch has no object at all."""
    n = max(int(t.labels.numel()) for t in targets)
    if n == 0:
        return None
    b = len(targets)
    labels = torch.zeros(b, n, dtype=torch.long)
    boxes = torch.full((b, n, 4), 0.5)
    pad = torch.ones(b, n, dtype=torch.bool)
    for i, t in enumerate(targets):
        k = int(t.labels.numel())
        labels[i, :k], boxes[i, :k], pad[i, :k] = t.labels, t.boxes, False
    return PaddedTargets(labels, boxes, pad)


def noised_targets(
    padded: PaddedTargets, num_classes: int, box_noise: float, label_noise: float, gen: torch.Generator
) -> PaddedTargets:
    """DN-DETR style noise: centres moved by up to box_noise*size/2, sizes scaled by 1 +- box_noise,
    a fraction ``label_noise`` of labels replaced at random."""
    boxes = padded.boxes.clone()
    wh = boxes[..., 2:]
    shift = (torch.rand(boxes[..., :2].shape, generator=gen) * 2 - 1) * wh / 2 * box_noise
    scale = 1 + (torch.rand(wh.shape, generator=gen) * 2 - 1) * box_noise
    boxes = torch.cat(((boxes[..., :2] + shift).clamp(0, 1), (wh * scale).clamp(1e-3, 1)), -1)
    flip = torch.rand(padded.labels.shape, generator=gen) < label_noise
    labels = torch.where(flip, torch.randint(0, num_classes, padded.labels.shape, generator=gen), padded.labels)
    return PaddedTargets(labels, boxes, padded.pad)


def _pair_losses(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: list[Targets],
    indices: list[tuple[np.ndarray, np.ndarray]],
    num_boxes: float,
    w: LossWeights,
    valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    onehot = torch.zeros_like(logits)
    pred, true = [], []
    for b, ((rows, cols), t) in enumerate(zip(indices, targets)):
        if len(rows):
            r = torch.as_tensor(rows)
            c = torch.as_tensor(cols)
            onehot[b, r, t.labels[c]] = 1.0
            pred.append(boxes[b, r])
            true.append(t.boxes[c])
    focal = sigmoid_focal_loss(logits, onehot, w.alpha, w.gamma)
    if valid is not None:
        focal = focal * valid[..., None]
    cls = focal.sum() / num_boxes
    if pred:
        p, t = torch.cat(pred), torch.cat(true)
        l1 = (p - t).abs().sum() / num_boxes
        giou = (1 - paired_generalized_box_iou(cxcywh_to_xyxy(p), cxcywh_to_xyxy(t))).sum() / num_boxes
    else:
        l1 = giou = boxes.sum() * 0.0
    return {"cls": cls, "l1": l1, "giou": giou}


def _weighted(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    return w.cls * terms["cls"] + w.l1 * terms["l1"] + w.giou * terms["giou"]


def detection_loss(out: DecoderOutput, targets: list[Targets], w: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted set loss summed over decoder layers, each layer Hungarian-matched on its own."""
    num_boxes = max(1.0, float(sum(t.labels.numel() for t in targets)))
    total = out.logits[0].sum() * 0.0
    last: dict[str, float] = {}
    for logits, boxes in zip(out.logits, out.boxes):
        idx = hungarian_match(logits, boxes, targets, w.match_cost())
        terms = _pair_losses(logits, boxes, targets, idx, num_boxes, w)
        total = total + _weighted(terms, w)
        last = {k: float(v.detach()) for k, v in terms.items()}
    return total, last


def denoising_loss(out: DecoderOutput, targets: list[Targets], pad: torch.Tensor, w: LossWeights) -> torch.Tensor:
    """Set loss of denoising queries with their fixed assignment (query i <-> target i);
    ``pad`` (B,N) marks padding queries, which are left out of the loss."""
    num_boxes = max(1.0, float(sum(t.labels.numel() for t in targets)))
    idx = [(np.arange(t.labels.numel()), np.arange(t.labels.numel())) for t in targets]
    total = out.logits[0].sum() * 0.0
    for logits, boxes in zip(out.logits, out.boxes):
        terms = _pair_losses(logits, boxes, targets, idx, num_boxes, w, valid=(~pad).float())
        total = total + _weighted(terms, w)
    return total
