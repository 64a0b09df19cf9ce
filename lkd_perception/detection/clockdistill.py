"""CLoCKDistill between two DEIMv2 models (Lan & Tian 2025, REFERENCE 1.4): location-aware memory
distillation (LCMD) and target-aware-query logit distillation (TCLD), added to the student's own
DEIMv2 fine-tuning loss.

LCMD. The encoder output (the *memory* the decoder attends to, two maps at strides 16 and 32) is
distilled, not the backbone. The student's maps go through a 1x1 adapter to the teacher's width;
each cell's squared difference (mean over channels, so that the weights do not depend on the
width) is weighted by ground-truth location masks: inside an object (M = 1) every box carries a
total weight of 1 however large it is (S = 1/cells of the box; the smaller box wins where boxes
overlap), and the whole background shares a total weight of 1 (S = 1/N_bg). Objects therefore
dominate, small ones as much as large ones, and the background still counts a little.

TCLD. DEIMv2 takes its decoder queries from the memory (content of the selected cells, anchor
boxes as references). The target-aware queries do the same at places chosen from the ground
truth: for every object the box itself and four deterministic perturbations of it (shifted by
+-15% of its size, scaled by 1.25 and 0.8) as reference boxes, and as content each model's own
memory at the box centre. Teacher and student decode the *same* boxes, so their outputs pair up
one to one without matching and the student learns the teacher's class distribution (binary KL
with temperature, per class, as sigmoid classifiers score them) and box refinements (L1 + GIoU),
each query weighted by the teacher's confidence max_c sigmoid(logit): what the teacher is unsure
of teaches little. The sum over queries is divided by the number of objects, the detection
loss's normaliser (a mean over queries instead put TCLD at 5% of the loss on simulated frames).
Padding queries (images with fewer objects) are masked out of self-attention.

Weights: the third-party reimplementation's values (alpha 5e-5, beta 1e-7 on channel *sums* of
256-channel maps; lambda 1/5/2; T = 2) are unverified (REFERENCE 1.4). LCMD here averages over
channels, so its weights are ours: fg 1.0, bg 0.1, chosen to put the term on the scale of the
detection loss at the start of fine-tuning; TCLD keeps 1/5/2 and T = 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lkd_perception.common.config import to_dict
from lkd_perception.common.errors import ConfigError
from lkd_perception.detection.deimv2_decoder import DecoderOutput, DecoderQueries, inverse_sigmoid
from lkd_perception.detection.deimv2_loss import deim_loss
from lkd_perception.detection.deimv2_model import DEIMv2
from lkd_perception.detection.matcher import Targets, cxcywh_to_xyxy, paired_generalized_box_iou

#: (dx, dy, scale) of each target-aware query relative to its box: the box itself, then four
#: perturbations so that the box distillation has refinements to teach
PERTURBATIONS = ((0.0, 0.0, 1.0), (0.15, 0.15, 1.0), (-0.15, -0.15, 1.0), (0.0, 0.0, 1.25), (0.0, 0.0, 0.8))


@dataclass(frozen=True)
class ClockWeights:
    """Weights of the CLoCKDistill terms: total = det + lcmd_weight*LCMD + tcld_weight*TCLD."""

    lcmd_weight: float = 1.0
    lcmd_fg: float = 1.0
    lcmd_bg: float = 0.1
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


def lcmd_loss(teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor], targets: list[Targets],
              fg: float, bg: float) -> torch.Tensor:
    """Sum over levels of fg*sum(M*S*d) + bg*sum((1-M)*S*d), d = channel-mean squared difference,
    mean over the batch. Maps are (B,C,H,W), the student's already at the teacher's width."""
    total = student_maps[0].sum() * 0.0
    for t, s_ in zip(teacher_maps, student_maps):
        m, sc = lcmd_masks(targets, t.shape[2], t.shape[3])
        m, sc = m.to(t), sc.to(t)
        d = (t - s_).pow(2).mean(1)
        total = total + (fg * (m * sc * d).sum((1, 2)) + bg * ((1 - m) * sc * d).sum((1, 2))).mean()
    return total


def target_queries(model: DEIMv2, maps: list[torch.Tensor], targets: list[Targets]) -> DecoderQueries:
    """Target-aware queries for ``model``: perturbed GT boxes as references, the model's own memory
    (bilinear, finest level) at each box centre as content; padded to the batch's largest count."""
    boxes = []
    for t in targets:
        b = t.boxes.to(maps[0].dtype).reshape(-1, 4)
        per = [torch.stack([b[:, 0] + dx * b[:, 2], b[:, 1] + dy * b[:, 3], b[:, 2] * sc, b[:, 3] * sc], -1)
               for dx, dy, sc in PERTURBATIONS]
        boxes.append(torch.cat(per, 0).clamp(1e-4, 1 - 1e-4))
    n = max(1, max(len(b) for b in boxes))
    ref = torch.full((len(targets), n, 4), 0.5, dtype=maps[0].dtype, device=maps[0].device)
    ref[..., 2:] = 0.1
    pad = torch.ones(len(targets), n, dtype=torch.bool, device=maps[0].device)
    for i, b in enumerate(boxes):
        ref[i, : len(b)] = b.to(ref.device)
        pad[i, : len(b)] = False
    grid = (2 * ref[:, :, None, :2] - 1)  # (B,n,1,2) for grid_sample, x then y
    content = F.grid_sample(maps[0], grid, mode="bilinear", align_corners=False)[..., 0].permute(0, 2, 1)
    content = content * (~pad).unsqueeze(-1).to(content.dtype)
    return DecoderQueries(content, inverse_sigmoid(ref), pad)


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per query: sum over classes of KL(Bern(sigmoid(t/T)) || Bern(sigmoid(s/T))) * T^2."""
    zt, zs = teacher_logits / temperature, student_logits / temperature
    pt = zt.sigmoid()
    kl = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    return kl.sum(-1) * temperature ** 2


def tcld_loss(student: DecoderOutput, teacher: DecoderOutput, valid: torch.Tensor, w: ClockWeights) -> torch.Tensor:
    """Teacher-confidence-weighted KL + L1 + GIoU between the two decoders' outputs on the same
    target-aware queries, layer by layer (both DEIMv2 decoders have the same depth), summed over
    the valid queries and divided by the number of objects, as the detection loss is."""
    if student.logits.shape[0] != teacher.logits.shape[0]:
        raise ConfigError(f"student decoder has {student.logits.shape[0]} layers, teacher {teacher.logits.shape[0]}")
    n = (valid.sum() / len(PERTURBATIONS)).clamp(min=1.0)
    total = student.logits.sum() * 0.0
    for j in range(student.logits.shape[0]):
        t_logits, t_boxes = teacher.logits[j].detach(), teacher.boxes[j].detach()
        conf = t_logits.sigmoid().max(-1).values * valid
        kl = binary_kl(student.logits[j], t_logits, w.temperature)
        l1 = (student.boxes[j] - t_boxes).abs().sum(-1)
        giou = 1 - paired_generalized_box_iou(cxcywh_to_xyxy(student.boxes[j]), cxcywh_to_xyxy(t_boxes))
        total = total + (conf * (w.tcld_cls * kl + w.tcld_l1 * l1 + w.tcld_giou * giou)).sum() / n
    return total


class ClockDistiller(nn.Module):
    """The student plus what distillation trains beside it (the memory adapters); the teacher is
    held outside the module so that it is neither trained nor saved with the student."""

    def __init__(self, teacher: DEIMv2, student: DEIMv2, weights: ClockWeights = ClockWeights()) -> None:
        super().__init__()
        if teacher.num_classes != student.num_classes:
            raise ConfigError(f"teacher has {teacher.num_classes} classes, student {student.num_classes}: "
                              "fine-tune the teacher on the student's classes first")
        self.student = student
        ds, dt = student.spec.hidden, teacher.spec.hidden
        self.adapters = nn.ModuleList(nn.Conv2d(ds, dt, 1) if ds != dt else nn.Identity() for _ in range(2))
        self.weights = weights
        self._teacher = [teacher.eval()]  # a list: not a registered submodule
        for p in teacher.parameters():
            p.requires_grad_(False)

    @property
    def teacher(self) -> DEIMv2:
        return self._teacher[0]

    def distill_terms(self, images: torch.Tensor, targets: list[Targets], student_maps: list[torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
        """LCMD and TCLD (weighted) for one batch, given the student's memory maps of ``images``."""
        w = self.weights
        self.teacher.eval()
        with torch.no_grad():
            t_maps = self.teacher.encode(images)
            t_mem, shapes = DEIMv2.flatten(t_maps)
            t_out = self.teacher.decoder(t_mem, shapes, True, target_queries(self.teacher, t_maps, targets))
        lcmd = lcmd_loss(t_maps, [a(m) for a, m in zip(self.adapters, student_maps)], targets, w.lcmd_fg, w.lcmd_bg)
        queries = target_queries(self.student, student_maps, targets)
        s_mem, s_shapes = DEIMv2.flatten(student_maps)
        s_out = self.student.decoder(s_mem, s_shapes, True, queries)
        tcld = tcld_loss(s_out, t_out, (~queries.pad).to(s_out.logits.dtype), w)
        return {"lcmd": w.lcmd_weight * lcmd, "tcld": w.tcld_weight * tcld}

    def step_loss(self, images: torch.Tensor, targets: list[Targets]) -> tuple[torch.Tensor, dict[str, float]]:
        """The student's DEIMv2 loss plus the distillation terms."""
        out = self.student.run(images, all_layers=True)
        det, parts = deim_loss(out.decoder, targets)
        terms = self.distill_terms(images, targets, out.memory)
        parts.update({k: float(v.detach()) for k, v in terms.items()})
        return det + sum(terms.values()), parts


def distill(teacher_path: str | Path, student_init: str | Path, data_dir: str | Path, out_dir: str | Path, cfg,
            weights: ClockWeights = ClockWeights(), val_dir: str | Path | None = None, resume: bool = True
            ) -> dict[str, Any]:
    """``lkd distill deimv2``: fine-tune the student on ``data_dir`` with CLoCKDistill from the
    teacher (same classes); the same schedule and batches as ``lkd train deimv2`` with that seed."""
    from lkd_perception.detection.deimv2_train import (
        evaluate_deimv2,
        load_init,
        prepare_student,
        train_loop,
    )
    from lkd_perception.detection.preprocess import deimv2_resize
    from lkd_perception.detection.train_data import load_detection_data

    torch.manual_seed(cfg.seed)
    data = load_detection_data(data_dir, cfg.input_size, deimv2_resize, cfg.max_frames)
    teacher, t_names = load_init(teacher_path)
    if list(t_names) != list(data.class_names):
        raise ConfigError(f"teacher classes {t_names} are not the data's {list(data.class_names)}")
    student, class_map = prepare_student(student_init, data, cfg)
    distiller = ClockDistiller(teacher, student, weights)
    res = train_loop(student, distiller, distiller.step_loss, data, cfg, out_dir, data.class_names, resume,
                     extra={"init": Path(student_init).name, "teacher": Path(teacher_path).name,
                            "clockdistill": to_dict(weights)})
    summary: dict[str, Any] = {"result": res.__dict__, "class_map": class_map, "config": to_dict(cfg),
                               "weights": to_dict(weights)}
    if val_dir is not None and res.steps_done >= cfg.steps:
        summary["val"] = evaluate_deimv2(student, load_detection_data(val_dir, cfg.input_size, deimv2_resize))
    return summary
