"""DEIMv2 (HGNetv2 Atto / Femto) as one PyTorch module, and its deploy wrapper with the published
ONNX contract: inputs ``images`` (1,3,S,S) RGB in [0,1] and ``orig_target_sizes`` (1,2) int64
(width, height); outputs ``labels`` (1,K) int64, ``boxes`` (1,K,4) xyxy pixels, ``scores`` (1,K)
sigmoid, the top K of all (query, class) pairs (K = 300, as published).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lkd_perception.detection.deimv2_backbone import HGNetv2, LiteEncoder
from lkd_perception.detection.deimv2_decoder import DecoderOutput, DecoderQueries, DEIMDecoder


@dataclass(frozen=True)
class DEIMv2Spec:
    """Sizes of one DEIMv2 variant (values of the published configs)."""

    name: str
    input_size: int
    hidden: int
    queries: int
    ffn: int
    layers: int = 3
    top_k: int = 300


SPECS = {
    "atto": DEIMv2Spec("atto", 320, 64, 100, 160),
    "femto": DEIMv2Spec("femto", 416, 96, 150, 256),
}


@dataclass
class DEIMv2Output:
    """What training and distillation need: the encoder memory (one map per level, (B,C,H,W)) and
    the decoder's outputs."""

    memory: list[torch.Tensor]
    decoder: DecoderOutput


class DEIMv2(nn.Module):
    """Backbone -> LiteEncoder -> FDR decoder. ``forward`` gives normalised cxcywh boxes and logits."""

    def __init__(self, spec: DEIMv2Spec, num_classes: int = 80) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        self.backbone = HGNetv2(spec.name)
        self.encoder = LiteEncoder(self.backbone.out_channels, spec.hidden)
        self.decoder = DEIMDecoder(num_classes, spec.hidden, spec.queries, spec.layers, spec.ffn)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(self.backbone(images))

    @staticmethod
    def flatten(maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        shapes = [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        return torch.cat([m.flatten(2).permute(0, 2, 1) for m in maps], 1), shapes

    def run(
        self, images: torch.Tensor, all_layers: bool = False, queries: DecoderQueries | None = None
    ) -> DEIMv2Output:
        maps = self.encode(images)
        memory, shapes = self.flatten(maps)
        return DEIMv2Output(maps, self.decoder(memory, shapes, all_layers, queries))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.run(images).decoder
        return out.logits[-1], out.boxes[-1]


def postprocess(logits: torch.Tensor, boxes: torch.Tensor, sizes: torch.Tensor, top_k: int):
    """The published post-processing: sigmoid, top-k over all (query, class) pairs, xyxy in pixels
    of the original image (``sizes`` (B,2) = width, height)."""
    num_classes = logits.shape[-1]
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    xyxy = xyxy * sizes.repeat(1, 2).unsqueeze(1).to(xyxy.dtype)
    scores, index = torch.topk(logits.sigmoid().flatten(1), min(top_k, logits.shape[1] * num_classes), -1)
    labels = index - index // num_classes * num_classes  # mod, spelt so that the graph shows the class count
    query = index // num_classes
    picked = xyxy.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    return labels, picked, scores


class DEIMv2Deploy(nn.Module):
    """DEIMv2 plus post-processing: the module exported to ONNX with the published contract."""

    def __init__(self, model: DEIMv2) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor):
        logits, boxes = self.model(images)
        return postprocess(logits, boxes, orig_target_sizes, self.model.spec.top_k)
