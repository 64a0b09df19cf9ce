"""The building blocks of LeYOLO (Hollard et al., 2024), written from the paper's description.

Two convolution flavours appear in the published model and both are kept, because they change
the parameter count the fidelity test checks:

- :class:`MnConv` ("mn_conv") is used in the backbone and neck: a biased Conv2d, BN, SiLU, with
  no padding when kernel == stride (a pure patchify/downsample conv).
- :class:`ConvBnAct` is the YOLOv8 convolution used by SPPF and the detection head: bias-free
  Conv2d with "same" padding, BN, SiLU.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MnConv(nn.Module):
    """Biased convolution + BN + SiLU; ``groups`` = channels gives the depthwise form."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, groups: int = 1) -> None:
        super().__init__()
        pad = 0 if k == s else k // 2
        self.conv = nn.Conv2d(c1, c2, k, s, pad, groups=groups, bias=True)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvBnAct(nn.Module):
    """Bias-free convolution + BN + SiLU with "same" padding (the YOLOv8 ``Conv``)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedBottleneck(nn.Module):
    """LeYOLO's ``MobileNetV3_BLOCK``: [1x1 expand] -> kxk depthwise -> 1x1 linear projection.

    The expansion is optional (``pointwise=False`` skips it: the depthwise conv then runs on the
    input channels, which is how the published configs use it right after a Concat). The block
    is residual exactly when input and output shapes agree. The published ``sa`` (SE) flag is
    unused upstream, so there is no SE here.
    """

    def __init__(self, c1: int, c2: int, k: int, expand: int, stride: int = 1, pointwise: bool = True) -> None:
        super().__init__()
        mid = expand if pointwise else c1
        layers: list[nn.Module] = [MnConv(c1, mid, 1)] if pointwise else []
        layers += [MnConv(mid, mid, k, stride, groups=mid), nn.Conv2d(mid, c2, 1), nn.BatchNorm2d(c2)]
        self.layers = nn.Sequential(*layers)
        self.residual = c1 == c2 and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools over a halved-channel map."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.reduce = ConvBnAct(c1, hidden, 1)
        self.fuse = ConvBnAct(hidden * 4, c2, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.fuse(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Concat(nn.Module):
    """Channel concatenation of several earlier layers (a node in the PAN graph)."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class DNiNHead(nn.Module):
    """LeYOLO's decoupled "DNiN" head: per level, box and class branches of 1x1 -> DW3x3 -> DW3x3 -> 1x1.

    Box branch predicts ``4 * reg_max`` logits (Distribution Focal Loss bins for the distances
    left/top/right/bottom), class branch ``nc`` logits. Anchor-free: one prediction per cell.
    """

    def __init__(self, nc: int, channels: tuple[int, ...], strides: tuple[int, ...], reg_max: int = 16) -> None:
        super().__init__()
        self.nc = nc
        self.reg_max = reg_max
        self.strides = strides
        box_w = max(16, channels[0] // 4, reg_max * 4)
        cls_w = max(channels[0], min(nc, 100))
        self.box = nn.ModuleList(self._branch(c, box_w, 4 * reg_max) for c in channels)
        self.cls = nn.ModuleList(self._branch(c, cls_w, nc) for c in channels)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self._init_biases()

    @staticmethod
    def _branch(c_in: int, width: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            ConvBnAct(c_in, width, 1),
            ConvBnAct(width, width, 3, groups=width),
            ConvBnAct(width, width, 3, groups=width),
            nn.Conv2d(width, c_out, 1),
        )

    def _init_biases(self) -> None:
        # Start with a prior of ~5 objects per 640x640 image so early class losses are sane.
        for box, cls, s in zip(self.box, self.cls, self.strides):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias, math.log(5 / self.nc / (640 / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Raw per-level maps [B, 4*reg_max + nc, H, W] (what the loss consumes)."""
        return [torch.cat((b(f), c(f)), 1) for f, b, c in zip(feats, self.box, self.cls)]

    def predict(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """YOLOv8 output [B, 4 + nc, N] from the neck features: xywh (centre, size) in input pixels,
        sigmoid scores. The eval/export path; ``forward`` + the loss is the training path.

        The numbers are those of decoding ``forward``'s maps (DFL expectation, anchor centres), but
        the graph is written for ONNX Runtime's CPU kernels, measured on the official nano
        (profiles in the model card): box and class maps are flattened separately, so there is no
        per-level Concat followed by a Split of the joined tensor; the sigmoid follows each level's
        last class convolution, where ONNX Runtime fuses it into the convolution; and the DFL softmax
        over the bin axis is exp(x - max) / sum, because ONNX Runtime runs Softmax on a non-last
        axis with two transposes (it was the costliest single op of the decode).
        """
        boxes = [branch(f) for f, branch in zip(feats, self.box)]
        scores = torch.cat([branch(f).sigmoid().flatten(2) for f, branch in zip(feats, self.cls)], 2)
        points, stride = make_anchors(boxes, self.strides)
        box = torch.cat([m.flatten(2) for m in boxes], 2)
        logits = box.view(box.shape[0], 4, self.reg_max, -1)
        weights = (logits - logits.amax(2, keepdim=True)).exp()
        dist = (weights * self.bins.view(1, 1, -1, 1)).sum(2) / weights.sum(2)  # [B, 4, N] in stride units
        lt, rb = dist[:, :2], dist[:, 2:]
        pts = points.transpose(0, 1).unsqueeze(0)  # [1, 2, N]
        centre = (pts + (rb - lt) / 2) * stride.view(1, 1, -1)
        size = (lt + rb) * stride.view(1, 1, -1)
        return torch.cat((centre, size, scores), 1)


def make_anchors(maps: list[torch.Tensor], strides: tuple[int, ...], offset: float = 0.5) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """Cell centres of every level in that level's stride units ([N, 2] xy) and each cell's stride ([N])."""
    points, stride_list = [], []
    for m, s in zip(maps, strides):
        h, w = m.shape[2], m.shape[3]
        ys = torch.arange(h, device=m.device, dtype=torch.float32) + offset
        xs = torch.arange(w, device=m.device, dtype=torch.float32) + offset
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        stride_list.append(torch.full((h * w,), float(s), device=m.device))
    return torch.cat(points), torch.cat(stride_list)
