"""CLoCKDistill for DETRs: location-aware memory distillation (LCMD) and target-aware-query logit
distillation (TCLD), after Lan & Tian 2025 (REFERENCE 1.4).

LCMD: the student's encoder memory, mapped to the teacher's width by a 1x1 adapter, is pulled
towards the teacher's memory, with positions weighted by a ground-truth location mask: inside an
object (M=1) each box contributes a total weight of 1 however large it is (S = 1/area, the smaller
box wins where boxes overlap), and the background shares a total weight of 1 (S = 1/N_bg).

TCLD: queries built from ground truth (class embedding + box MLP, the GT box as reference point)
go through *both* decoders, so both look at the same memory regions for the same objects and
their outputs are directly comparable without any matching. The student follows the teacher's
class distribution (binary KL with temperature) and boxes (L1 + GIoU), each query weighted by the
teacher's confidence max_c sigmoid(logit), so objects the teacher gets wrong teach little.

The loss weights of the third-party reimplementation (alpha=5e-5, beta=1e-7, lambda=1/5/2, T=2)
are unverified; alpha and beta are configurable because they depend on the memory's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lkd_perception.common.errors import ConfigError
from lkd_perception.detection.detr import DecoderOutput, Detr, Encoded
from lkd_perception.detection.detr_loss import PaddedTargets
from lkd_perception.detection.matcher import Targets, cxcywh_to_xyxy, paired_generalized_box_iou


@dataclass(frozen=True)
class DistillWeights:
    """Weights of the CLoCKDistill terms (total = det + lcmd_weight*LCMD + tcld_weight*TCLD)."""

    lcmd_weight: float = 1.0
    lcmd_alpha: float = 5e-5
    lcmd_beta: float = 1e-7
    tcld_weight: float = 1.0
    temperature: float = 2.0
    tcld_cls: float = 1.0
    tcld_l1: float = 5.0
    tcld_giou: float = 2.0


def lcmd_masks(targets: list[Targets], h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Location mask M (B,h,w) and scale mask S (B,h,w) on an h x w feature grid.

    A cell belongs to a box when its centre lies inside it; a box too small to contain any cell
    centre claims the cell holding its own centre. Inside: S = 1/(rows*cols covered by the box),
    the largest such value (the smallest box) where boxes overlap. Outside: S = 1/N_bg.
    """
    b = len(targets)
    m = torch.zeros(b, h, w)
    s = torch.zeros(b, h, w)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    for i, t in enumerate(targets):
        for box in cxcywh_to_xyxy(t.boxes.detach().float().cpu()):  # masks are built on the CPU
            x1, y1, x2, y2 = box.tolist()
            rows = ((ys >= y1) & (ys <= y2)).nonzero().flatten()
            cols = ((xs >= x1) & (xs <= x2)).nonzero().flatten()
            if rows.numel() == 0 or cols.numel() == 0:
                r = min(h - 1, max(0, int((y1 + y2) / 2 * h)))
                c = min(w - 1, max(0, int((x1 + x2) / 2 * w)))
                rows, cols = torch.tensor([r]), torch.tensor([c])
            r0, r1 = int(rows.min()), int(rows.max()) + 1
            c0, c1 = int(cols.min()), int(cols.max()) + 1
            weight = 1.0 / ((r1 - r0) * (c1 - c0))
            m[i, r0:r1, c0:c1] = 1.0
            s[i, r0:r1, c0:c1] = torch.clamp(s[i, r0:r1, c0:c1], min=weight)
        n_bg = int((m[i] == 0).sum())
        if n_bg:
            s[i][m[i] == 0] = 1.0 / n_bg
    return m, s


def lcmd_loss(
    mem_t: torch.Tensor, mem_s: torch.Tensor, m: torch.Tensor, s: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """alpha*sum(M*S*(T-S)^2) + beta*sum((1-M)*S*(T-S)^2) over channels and positions, mean over the batch.

    ``mem_t``, ``mem_s``: (B,C,H,W) teacher memory and adapted student memory.
    """
    sq = (mem_t - mem_s).pow(2).sum(1)  # (B,H,W)
    fg = (m * s * sq).sum((1, 2))
    bg = ((1 - m) * s * sq).sum((1, 2))
    return (alpha * fg + beta * bg).mean()


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sum over classes of KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T))) * T^2, per query.

    Sigmoid (focal) classifiers score each class independently, so the per-class Bernoulli KL is
    the divergence that matches them; T^2 keeps the gradient scale independent of T.
    """
    zt, zs = teacher_logits / temperature, student_logits / temperature
    pt = zt.sigmoid()
    kl = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    return kl.sum(-1) * temperature**2


def layer_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Student decoder layer j learns from teacher layer round((j+1)*Lt/Ls)-1 (last from last)."""
    return [(j, max(0, round((j + 1) * teacher_layers / student_layers) - 1)) for j in range(student_layers)]


def tcld_loss(student: DecoderOutput, teacher: DecoderOutput, valid: torch.Tensor, w: DistillWeights) -> torch.Tensor:
    """Confidence-weighted KL + L1 + GIoU between student and teacher outputs on the same target-aware queries."""
    n = valid.sum().clamp(min=1.0)
    total = student.logits[0].sum() * 0.0
    for js, jt in layer_pairs(len(student.logits), len(teacher.logits)):
        t_logits, t_boxes = teacher.logits[jt].detach(), teacher.boxes[jt].detach()
        conf = t_logits.sigmoid().max(-1).values * valid
        kl = binary_kl(student.logits[js], t_logits, w.temperature)
        l1 = (student.boxes[js] - t_boxes).abs().sum(-1)
        giou = 1 - paired_generalized_box_iou(cxcywh_to_xyxy(student.boxes[js]), cxcywh_to_xyxy(t_boxes))
        per_query = w.tcld_cls * kl + w.tcld_l1 * l1 + w.tcld_giou * giou
        total = total + (conf * per_query).sum() / n
    return total


def _grid(enc: Encoded) -> torch.Tensor:
    b, hw, d = enc.memory.shape
    h, w = enc.hw
    return enc.memory.transpose(1, 2).reshape(b, d, h, w)


class CLoCKDistill(nn.Module):
    """The distillation losses of a frozen teacher into a student; owns only the 1x1 memory adapter."""

    def __init__(self, teacher: Detr, student: Detr, weights: DistillWeights) -> None:
        super().__init__()
        if teacher.stride != student.stride:
            raise ConfigError(
                f"teacher memory stride {teacher.stride} differs from the student's {student.stride}; LCMD needs the "
                "same grid"
            )
        if teacher.num_classes != student.num_classes:
            raise ConfigError(f"teacher has {teacher.num_classes} classes, student {student.num_classes}")
        dt, ds = teacher.arch.d_model, student.arch.d_model
        self.adapter: nn.Module = nn.Conv2d(ds, dt, 1) if ds != dt else nn.Identity()
        self.weights = weights

    def forward(
        self,
        teacher: Detr,
        student: Detr,
        images: torch.Tensor,
        s_enc: Encoded,
        targets: list[Targets],
        gt: PaddedTargets | None,
    ) -> dict[str, torch.Tensor]:
        """LCMD and TCLD losses for one batch; ``s_enc`` is the student's encoding of ``images``."""
        teacher.eval()
        with torch.no_grad():
            t_enc = teacher.encode(images)
        h, w = s_enc.hw
        m, s = lcmd_masks(targets, h, w)
        lcmd = lcmd_loss(
            _grid(t_enc), self.adapter(_grid(s_enc)), m, s, self.weights.lcmd_alpha, self.weights.lcmd_beta
        )
        if gt is None:
            tcld = lcmd * 0.0
        else:
            with torch.no_grad():
                t_out = teacher.decode(t_enc, teacher.target_queries(gt.labels, gt.boxes), gt.boxes, gt.pad)
            s_out = student.decode(s_enc, student.target_queries(gt.labels, gt.boxes), gt.boxes, gt.pad)
            tcld = tcld_loss(s_out, t_out, (~gt.pad).float(), self.weights)
        return {"lcmd": self.weights.lcmd_weight * lcmd, "tcld": self.weights.tcld_weight * tcld}
