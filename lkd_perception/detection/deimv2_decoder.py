"""DEIMv2's decoder: query selection from the encoder memory, deformable cross-attention, and
fine-grained distribution refinement (FDR) of box edges.

Each query holds a box; every layer predicts, per box edge, a distribution over 33 bins of a
non-uniform weighting function, and the expected value moves the edge relative to the box of the
first layer (``distance2bbox``). Scores come only from the last layer at inference (plus a small
quality term from the sharpness of the edge distributions, the LQE). Training returns every
layer's outputs for the auxiliary losses, and CLoCKDistill can hand in its own queries
(``DecoderQueries``) instead of the top-k selection so teacher and student look at the same places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear layers with ``activation`` between them (none after the last): SiLU in DEIMv2 (its
    published weights were trained with it)."""

    def __init__(self, din: int, dhidden: int, dout: int, layers: int,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.silu) -> None:
        super().__init__()
        dims = [din] + [dhidden] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, -1)
        return self.w3(F.silu(a) * b)


class SelfAttention(nn.Module):
    """Multi-head self-attention between queries (q = k = content + position, v = content)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, qk: torch.Tensor, v: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """``pad`` (B,Q) True for padding queries, which no query attends to."""
        b, n, c = v.shape
        split = lambda t: t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q, k, val = split(self.q_proj(qk)), split(self.k_proj(qk)), split(self.v_proj(v))
        logits = q @ k.transpose(-1, -2) / (c // self.heads) ** 0.5
        if pad is not None:
            # an image without objects has only padding: masking all its keys would give NaN rows
            pad = pad & ~pad.all(-1, keepdim=True)
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        attn = torch.softmax(logits, -1)
        return self.out_proj((attn @ val).transpose(1, 2).reshape(b, n, c))


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention with per-level point counts and box-relative offsets, no
    value or output projection (D-FINE/DEIM's version)."""

    def __init__(self, dim: int, heads: int, points: tuple[int, ...], offset_scale: float = 0.5) -> None:
        super().__init__()
        self.heads, self.points, self.offset_scale = heads, tuple(points), offset_scale
        total = sum(points)
        self.sampling_offsets = nn.Linear(dim, heads * total * 2)
        self.attention_weights = nn.Linear(dim, heads * total)
        self.register_buffer(
            "num_points_scale", torch.tensor([1 / n for n in points for _ in range(n)]), persistent=False
        )

    def forward(
        self, query: torch.Tensor, ref: torch.Tensor, values: list[torch.Tensor], shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """``ref`` (B,Q,4) cxcywh in [0,1]; ``values`` per level (B*heads, head_dim, H, W)."""
        b, q, _ = query.shape
        total = sum(self.points)
        offsets = self.sampling_offsets(query).reshape(b, q, self.heads, total, 2)
        weights = torch.softmax(self.attention_weights(query).reshape(b, q, self.heads, total), -1)
        scale = self.num_points_scale.to(query.dtype).unsqueeze(-1)
        loc = ref[:, :, None, None, :2] + offsets * scale * ref[:, :, None, None, 2:] * self.offset_scale
        grids = (2 * loc - 1).permute(0, 2, 1, 3, 4).flatten(0, 1).split(list(self.points), dim=-2)
        sampled = [
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
            for v, g in zip(values, grids)
        ]
        w = weights.permute(0, 2, 1, 3).reshape(b * self.heads, 1, q, total)
        out = (torch.cat(sampled, -1) * w).sum(-1)  # (B*heads, head_dim, Q)
        return out.reshape(b, -1, q).permute(0, 2, 1)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, points: tuple[int, ...]) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.norm1 = RMSNorm(dim)
        self.cross_attn = DeformableAttention(dim, heads, points)
        self.norm2 = RMSNorm(dim)
        self.swish_ffn = SwiGLU(dim, ffn // 2)
        self.norm3 = RMSNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        ref: torch.Tensor,
        values: list[torch.Tensor],
        shapes: list[tuple[int, int]],
        pos: torch.Tensor,
        pad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x + pos, x, pad))
        x = self.norm2(x + self.cross_attn(x + pos, ref, values, shapes))
        return self.norm3((x + self.swish_ffn(x)).clamp(-65504, 65504))


class LQE(nn.Module):
    """Localisation quality: the top-4 bin probabilities (and their mean) of each edge's
    distribution, through a small MLP, added to the class logits (sharp distributions = good box)."""

    def __init__(self, reg_max: int, k: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.k, self.reg_max = k, reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden, 1, 2, F.silu)

    def forward(self, scores: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        b, n, _ = corners.shape
        prob = torch.softmax(corners.reshape(b, n, 4, self.reg_max + 1), -1)
        top, _ = prob.topk(self.k, -1)
        stat = torch.cat([top, top.mean(-1, keepdim=True)], -1)
        return scores + self.reg_conf(stat.reshape(b, n, -1))


def weighting_function(reg_max: int, up: float, reg_scale: float) -> torch.Tensor:
    """FDR's non-uniform bin values W(n): fine near zero offset, coarse towards +-2*up*reg_scale."""
    ub1, ub2 = abs(up) * abs(reg_scale), abs(up) * abs(reg_scale) * 2
    step = (ub1 + 1) ** (2 / (reg_max - 2))
    left = [-(step**i) + 1 for i in range(reg_max // 2 - 1, 0, -1)]
    right = [step**i - 1 for i in range(1, reg_max // 2)]
    return torch.tensor([-ub2] + left + [0.0] + right + [ub2], dtype=torch.float32)


def distance2bbox(points: torch.Tensor, distance: torch.Tensor, reg_scale: float) -> torch.Tensor:
    """Edge offsets (in units of box size / reg_scale) around a cxcywh box -> cxcywh box."""
    rs = abs(reg_scale)
    x1 = points[..., 0] - (0.5 * rs + distance[..., 0]) * (points[..., 2] / rs)
    y1 = points[..., 1] - (0.5 * rs + distance[..., 1]) * (points[..., 3] / rs)
    x2 = points[..., 0] + (0.5 * rs + distance[..., 2]) * (points[..., 2] / rs)
    y2 = points[..., 1] + (0.5 * rs + distance[..., 3]) * (points[..., 3] / rs)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clip(0.0, 1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


@dataclass
class DecoderQueries:
    """Queries handed to the decoder instead of its own top-k selection: content (B,Q,C),
    reference boxes before the sigmoid (B,Q,4), and which are padding (B,Q) (batches of images
    with different object counts)."""

    content: torch.Tensor
    ref_unact: torch.Tensor
    pad: torch.Tensor | None = None


@dataclass
class DecoderOutput:
    """Per decoder layer (L,B,Q,...): logits, cxcywh boxes, edge-bin logits; plus the first
    layer's plain-regression boxes/logits (``pre_*``) and the encoder's top-k proposals (``enc_*``),
    all for the training losses."""

    logits: torch.Tensor
    boxes: torch.Tensor
    corners: torch.Tensor
    pre_logits: torch.Tensor
    pre_boxes: torch.Tensor
    enc_logits: torch.Tensor | None
    enc_boxes: torch.Tensor | None


class DEIMDecoder(nn.Module):
    """Query selection + FDR decoder. ``memory`` is the flattened encoder output (B, sum HW, C)."""

    def __init__(
        self,
        num_classes: int,
        hidden: int,
        queries: int,
        layers: int,
        ffn: int,
        points: tuple[int, ...] = (4, 2),
        heads: int = 8,
        reg_max: int = 32,
        reg_scale: float = 4.0,
        up: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes, self.hidden, self.num_queries, self.heads = num_classes, hidden, queries, heads
        self.reg_max, self.reg_scale, self.up = reg_max, reg_scale, up
        self.layers = nn.ModuleList(DecoderLayer(hidden, heads, ffn, points) for _ in range(layers))
        self.lqe_layers = nn.ModuleList(LQE(reg_max) for _ in range(layers))
        self.enc_score_head = nn.Linear(hidden, num_classes)
        self.enc_bbox_head = MLP(hidden, hidden, 4, 3, F.silu)
        self.query_pos_head = MLP(4, hidden, hidden, 3, F.silu)
        self.pre_bbox_head = MLP(hidden, hidden, 4, 3, F.silu)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden, num_classes) for _ in range(layers))
        self.dec_bbox_head = MLP(hidden, hidden, 4 * (reg_max + 1), 3, F.silu)  # one head shared by every layer
        self.register_buffer("project", weighting_function(reg_max, up, reg_scale), persistent=False)

    @staticmethod
    def anchors(shapes: list[tuple[int, int]], eps: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit-space anchor boxes per memory cell (size 0.05 * 2^level) and the cells inside (eps, 1-eps)."""
        out = []
        for lvl, (h, w) in enumerate(shapes):
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            xy = (torch.stack([gx, gy], -1).float() + 0.5) / torch.tensor([w, h], dtype=torch.float32)
            wh = torch.ones_like(xy) * 0.05 * (2.0**lvl)
            out.append(torch.cat([xy, wh], -1).reshape(1, h * w, 4))
        a = torch.cat(out, 1)
        valid = ((a > eps) & (a < 1 - eps)).all(-1, keepdim=True)
        return torch.where(valid, torch.log(a / (1 - a)), torch.full_like(a, float("inf"))), valid

    def select(self, memory: torch.Tensor, shapes: list[tuple[int, int]]):
        """Top-k memory cells by best class logit: their content, anchor-refined box logits, and
        (for the encoder loss) their logits and boxes."""
        anchors, valid = self.anchors(shapes)
        anchors, valid = anchors.to(memory.device), valid.to(memory.device)
        memory = valid.to(memory.dtype) * memory
        logits = self.enc_score_head(memory)
        _, idx = torch.topk(logits.max(-1).values, min(self.num_queries, logits.shape[1]), dim=-1)
        gather = lambda t: t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))  # noqa: E731
        top_memory = gather(memory)
        ref_unact = self.enc_bbox_head(top_memory) + gather(anchors.expand(memory.shape[0], -1, -1))
        return top_memory, ref_unact, gather(logits), ref_unact.sigmoid()

    def values(self, memory: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
        b, _, c = memory.shape
        v = memory.reshape(b, -1, self.heads, c // self.heads).permute(0, 2, 3, 1)
        parts = v.split([h * w for h, w in shapes], dim=-1)
        return [p.reshape(b * self.heads, c // self.heads, h, w) for p, (h, w) in zip(parts, shapes)]

    def integral(self, corners: torch.Tensor) -> torch.Tensor:
        shape = corners.shape
        prob = torch.softmax(corners.reshape(-1, self.reg_max + 1), 1)
        return (prob @ self.project.to(prob.dtype)).reshape(*shape[:-1], 4)

    def forward(
        self,
        memory: torch.Tensor,
        shapes: list[tuple[int, int]],
        all_layers: bool = False,
        queries: DecoderQueries | None = None,
    ) -> DecoderOutput:
        pad = None
        if queries is None:
            top_memory, ref_unact, enc_logits, enc_boxes = self.select(memory, shapes)
            content, ref_unact = top_memory.detach(), ref_unact.detach()
        else:
            content, ref_unact, enc_logits, enc_boxes = queries.content, queries.ref_unact, None, None
            pad = queries.pad
        values = self.values(memory, shapes)
        ref = ref_unact.sigmoid()
        pos = self.query_pos_head(ref).clamp(-10, 10)
        x, x_detach, corners_prev = content, 0, 0
        logits_all, boxes_all, corners_all = [], [], []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, ref, values, shapes, pos, pad)
            if i == 0:
                pre_boxes = torch.sigmoid(self.pre_bbox_head(x) + inverse_sigmoid(ref))
                pre_logits = self.dec_score_head[0](x)
                ref0 = pre_boxes.detach()
            corners = self.dec_bbox_head(x + x_detach) + corners_prev
            boxes = distance2bbox(ref0, self.integral(corners), self.reg_scale)
            if all_layers or i == last:
                logits_all.append(self.lqe_layers[i](self.dec_score_head[i](x), corners))
                boxes_all.append(boxes)
                corners_all.append(corners)
            corners_prev, ref, x_detach = corners, boxes.detach(), x.detach()
        return DecoderOutput(
            torch.stack(logits_all),
            torch.stack(boxes_all),
            torch.stack(corners_all),
            pre_logits,
            pre_boxes,
            enc_logits,
            enc_boxes,
        )
