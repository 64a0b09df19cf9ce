"""A small DAB-style DETR built from standard attention only (no deformable sampling).

Why this shape: the ONNX graph has to go through TensorRT on a Jetson, where ``grid_sample``
(deformable attention) is the usual source of export failures (REFERENCE 1.5, 1.7). A DAB-DETR
decoder keeps the fast-converging part of modern DETRs - each query carries an anchor box that is
refined layer by layer and turned into the positional query - with plain matrix products.

The same module serves teacher and student; :data:`ARCHS` holds the two sizes. A model also owns
a :class:`TargetQueryEncoder` (q = Embed(class) + MLP(box), GT box as reference point): during
training it feeds noised ground truth through the decoder (denoising queries, which speed up
convergence) and during distillation it builds the target-aware queries of TCLD.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.backbones import build_backbone

# ImageNet statistics of the backbone weights; applied inside the graph so the ONNX input is RGB in [0, 1].
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DetrArch:
    """Size of one DETR. ``backbone_indices``: MobileNetV2 ``features`` outputs used; the first sets
    the memory resolution and any later (coarser, stride x2) one is upsampled and added to it."""

    backbone_width: float
    backbone_indices: tuple[int, ...]
    d_model: int
    n_heads: int
    enc_layers: int
    dec_layers: int
    ffn_dim: int
    num_queries: int

    @classmethod
    def from_dict(cls, d: dict) -> "DetrArch":
        try:
            return cls(**{**d, "backbone_indices": tuple(d["backbone_indices"])})
        except (TypeError, KeyError) as exc:
            raise ModelError(f"bad DETR architecture record {d!r}: {exc}") from exc

    def to_dict(self) -> dict:
        return asdict(self)


# Teacher: full MobileNetV2 (stride 16 + 32 fused), d=256. Student: MobileNetV2 cut after stride 16
# block 10 (64 channels), d=128, one encoder layer, fewer decoder layers and queries.
ARCHS: dict[str, DetrArch] = {
    "teacher": DetrArch(1.0, (13, 17), 256, 8, 3, 4, 1024, 50),
    "student": DetrArch(1.0, (10,), 128, 4, 1, 3, 512, 30),
}


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """logit(x), clamped so that boxes at the image border stay finite."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def sine_embed(coords: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine/cosine embedding of each coordinate in [0,1] to ``dim`` values, concatenated (..., K*dim)."""
    half = dim // 2
    freq = temperature ** (2 * torch.arange(half, dtype=torch.float32, device=coords.device) / dim)
    angles = coords[..., None] * (2 * math.pi) / freq  # (..., K, half)
    emb = torch.cat((angles.sin(), angles.cos()), -1)
    return emb.flatten(-2)


def grid_position(h: int, w: int, d_model: int, device: torch.device) -> torch.Tensor:
    """Positional encoding (h*w, d_model) of a feature grid: sine embedding of cell-centre (y, x)."""
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return sine_embed(torch.stack((xx.flatten(), yy.flatten()), -1), d_model // 2)


class MLP(nn.Module):
    """Linear layers with ``activation`` between them (none after the last): ReLU in our DETR,
    SiLU in DEIMv2 (its published weights were trained with it)."""

    def __init__(self, din: int, dhidden: int, dout: int, layers: int,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.relu) -> None:
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


class Attention(nn.Module):
    """Multi-head attention written with matmul + softmax, so the exported graph has only standard ops."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ModelError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.h, self.dh = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_pad: torch.Tensor | None = None
    ) -> torch.Tensor:
        b = q.shape[0]
        qh = self.q(q).reshape(b, -1, self.h, self.dh).transpose(1, 2)
        kh = self.k(k).reshape(b, -1, self.h, self.dh).transpose(1, 2)
        vh = self.v(v).reshape(b, -1, self.h, self.dh).transpose(1, 2)
        att = (qh @ kh.transpose(-1, -2)) * (self.dh**-0.5)
        if key_pad is not None:  # padded target queries must not be attended to
            att = att.masked_fill(key_pad[:, None, None, :], -1e9)
        out = (att.softmax(-1) @ vh).transpose(1, 2).reshape(b, -1, self.h * self.dh)
        return self.o(out)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer; position added to queries and keys only."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attn = Attention(d, heads)
        self.ffn = MLP(d, ffn, d, 2)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        qk = x + pos
        x = self.norm1(x + self.attn(qk, qk, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """Self-attention among queries, cross-attention into the memory, FFN (post-norm)."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d, heads), Attention(d, heads)
        self.ffn = MLP(d, ffn, d, 2)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(
        self, tgt: torch.Tensor, qpos: torch.Tensor, memory: torch.Tensor, mpos: torch.Tensor, pad: torch.Tensor | None
    ) -> torch.Tensor:
        qk = tgt + qpos
        tgt = self.norm1(tgt + self.self_attn(qk, qk, tgt, pad))
        tgt = self.norm2(tgt + self.cross_attn(tgt + qpos, memory + mpos, memory))
        return self.norm3(tgt + self.ffn(tgt))


@dataclass(frozen=True)
class DecoderOutput:
    """Per decoder layer: class logits (B,N,nc) and boxes (B,N,4) normalised cxcywh."""

    logits: list[torch.Tensor]
    boxes: list[torch.Tensor]


@dataclass(frozen=True)
class Encoded:
    """Encoder memory (B, H*W, d), its positional encoding (H*W, d) and grid size."""

    memory: torch.Tensor
    pos: torch.Tensor
    hw: tuple[int, int]


class TargetQueryEncoder(nn.Module):
    """Queries from (class, box): content = Embed(class) + MLP(box); the box is the reference point."""

    def __init__(self, num_classes: int, d: int) -> None:
        super().__init__()
        self.label = nn.Embedding(num_classes, d)
        self.box = MLP(4, d, d, 2)

    def forward(self, labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.label(labels) + self.box(boxes)


class Detr(nn.Module):
    """Backbone -> 1x1 projection (+ fused coarser level) -> encoder -> dense proposals -> top-Q
    query selection -> DAB decoder -> per-layer heads."""

    def __init__(self, arch: DetrArch, num_classes: int, backbone_weights: str | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes}")
        if arch.d_model % 8 or arch.d_model % arch.n_heads:
            raise ModelError(f"d_model {arch.d_model} must be a multiple of 8 and of n_heads {arch.n_heads}")
        self.arch, self.num_classes = arch, num_classes
        d = arch.d_model
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = build_backbone(arch.backbone_width, arch.backbone_indices, backbone_weights)
        strides = self.backbone.out_strides
        if any(s != strides[0] * 2**i for i, s in enumerate(strides)):
            raise ModelError(f"backbone levels must double in stride, got {strides}")
        self.stride = strides[0]
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32 if d % 32 == 0 else 8, d))
            for c in self.backbone.out_channels
        )
        self.encoder = nn.ModuleList(EncoderLayer(d, arch.n_heads, arch.ffn_dim) for _ in range(arch.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d, arch.n_heads, arch.ffn_dim) for _ in range(arch.dec_layers))
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.query_content = nn.Embedding(arch.num_queries, d)
        self.enc_output = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.enc_class_head = nn.Linear(d, num_classes)
        self.enc_box_head = MLP(d, d, 4, 3)
        self.class_heads = nn.ModuleList(nn.Linear(d, num_classes) for _ in range(arch.dec_layers))
        self.box_heads = nn.ModuleList(MLP(d, d, 4, 3) for _ in range(arch.dec_layers))
        self.target_queries = TargetQueryEncoder(num_classes, d)
        self._init_heads()

    def _init_heads(self) -> None:
        # Focal-loss prior: start every class at probability 0.01 so the many negatives do not swamp training.
        bias = -math.log((1 - 0.01) / 0.01)
        for head in [*self.class_heads, self.enc_class_head]:
            nn.init.constant_(head.bias, bias)
        for head in [*self.box_heads, self.enc_box_head]:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    def encode(self, images: torch.Tensor) -> Encoded:
        """Images (B,3,S,S) RGB in [0,1] -> encoder memory."""
        x = (images - self.mean) / self.std
        feats = self.backbone(x)
        fused = self.proj[0](feats[0])
        for level, proj in enumerate(self.proj[1:], start=1):
            fused = fused + F.interpolate(proj(feats[level]), scale_factor=2.0**level, mode="nearest")
        b, d, h, w = fused.shape
        memory = fused.flatten(2).transpose(1, 2)
        pos = grid_position(h, w, d, images.device)
        for layer in self.encoder:
            memory = layer(memory, pos)
        return Encoded(memory, pos, (h, w))

    def decode(
        self, enc: Encoded, content: torch.Tensor, ref: torch.Tensor, pad: torch.Tensor | None = None
    ) -> DecoderOutput:
        """Run queries (content (B,N,d), reference boxes (B,N,4) in [0,1]) through the decoder."""
        d = self.arch.d_model
        logits, boxes = [], []
        tgt = content
        for layer, cls_head, box_head in zip(self.decoder, self.class_heads, self.box_heads):
            qpos = self.ref_point_head(sine_embed(ref, d // 2))
            tgt = layer(tgt, qpos, enc.memory, enc.pos, pad)
            new_ref = (box_head(tgt) + inverse_sigmoid(ref)).sigmoid()
            logits.append(cls_head(tgt))
            boxes.append(new_ref)
            ref = new_ref.detach()  # each layer refines its own anchor; gradients stay per layer
        return DecoderOutput(logits, boxes)

    def proposals(self, enc: Encoded) -> DecoderOutput:
        """One box and class score per memory token (B,HW,*), relative to an anchor at the token's
        cell (size 2 cells): the dense, one-stage-like first guess the decoder starts from."""
        h, w = enc.hw
        ys = (torch.arange(h, dtype=torch.float32, device=enc.memory.device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=enc.memory.device) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        anchors = torch.stack(
            (
                xx.flatten(),
                yy.flatten(),
                torch.full_like(xx.flatten(), 2.0 / w),
                torch.full_like(yy.flatten(), 2.0 / h),
            ),
            -1,
        )
        feat = self.enc_output(enc.memory)
        boxes = (self.enc_box_head(feat) + inverse_sigmoid(anchors)).sigmoid()
        return DecoderOutput([self.enc_class_head(feat)], [boxes])

    def select_queries(self, enc: Encoded, props: DecoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Query selection (DINO-style "mixed"): the Q best-scoring proposals give the reference
        boxes, the content part stays a learned embedding. Uses TopK + Gather (TensorRT-safe)."""
        q = self.arch.num_queries
        if props.boxes[0].shape[1] < q:
            raise ModelError(f"{props.boxes[0].shape[1]} memory tokens cannot seed {q} queries; use a larger input")
        best = props.logits[0].max(-1).values
        idx = best.topk(q, dim=1).indices
        ref = torch.gather(props.boxes[0], 1, idx.unsqueeze(-1).expand(-1, -1, 4)).detach()
        content = self.query_content.weight.unsqueeze(0).expand(ref.shape[0], -1, -1)
        return content, ref

    def forward_train(self, images: torch.Tensor) -> tuple[Encoded, DecoderOutput, DecoderOutput]:
        """Encoding, dense proposals, and the decoder outputs of the selected queries."""
        enc = self.encode(images)
        props = self.proposals(enc)
        return enc, props, self.decode(enc, *self.select_queries(enc, props))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference/export: boxes (B,Q,4) normalised cxcywh and sigmoid scores (B,Q,nc)."""
        _, _, out = self.forward_train(images)
        return out.boxes[-1], out.logits[-1].sigmoid()


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode with frozen affine parameters (ImageNet statistics kept).

    Detection batches of a few images give noisy batch statistics; DETR practice is frozen BN.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
