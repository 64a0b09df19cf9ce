"""The LSDNet-style CNN (torch; training and export only, the runtime uses ONNX Runtime).

A U-Net (REFERENCE 2.1) that predicts, per pixel, a line heatmap and the line direction. Inside,
the direction is the doubled-angle vector (cos 2θ, sin 2θ): it is continuous across θ = 0 / π,
where a raw angle in [0, π) jumps, so a regression loss on it is well posed. The exported graph
converts it to the reference's angle channel θ/π.

Channel widths are the reference's (16-32-64-128, two 3x3 convolutions per stage, ~0.49 M
parameters). The cost is dominated by the full-resolution stages, so speed is set by the input
size (``LineConfig.input_width/height``), not by the parameter count.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_WIDTHS = (16, 32, 64, 128)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class LSDNet(nn.Module):
    """U-Net: 3 poolings, bilinear upsampling with skips, 1x1 head to (heat logit, cos 2θ, sin 2θ)."""

    def __init__(self, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.enc0, self.enc1, self.enc2 = _block(3, w0), _block(w0, w1), _block(w1, w2)
        self.bottom = _block(w2, w3)
        self.dec2, self.dec1, self.dec0 = _block(w3 + w2, w2), _block(w2 + w1, w1), _block(w1 + w0, w0)
        self.head = nn.Conv2d(w0, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N,3,H,W) RGB in [0,1], H and W multiples of 8 -> raw (N,3,H,W) head output."""
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([_up(b, e2), e2], 1))
        d1 = self.dec1(torch.cat([_up(d2, e1), e1], 1))
        d0 = self.dec0(torch.cat([_up(d1, e0), e0], 1))
        return self.head(d0)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ExportHead(nn.Module):
    """Wraps :class:`LSDNet` for ONNX: (N,3,H,W) RGB/255 -> (N,2,H,W) = (heat, θ/π in [0,1))."""

    def __init__(self, net: LSDNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        heat = torch.sigmoid(out[:, 0:1])
        theta = 0.5 * torch.atan2(out[:, 2:3], out[:, 1:2])  # (-π/2, π/2]
        theta = torch.where(theta < 0, theta + math.pi, theta)
        return torch.cat([heat, theta / math.pi], 1)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
