"""The LSDNet-style CNN (torch; training and export only, the runtime uses ONNX Runtime).

A U-Net (REFERENCE 2.1) that predicts, per pixel, a line heatmap and the line direction. Inside,
the direction is the doubled-angle vector (cos 2θ, sin 2θ): it is continuous across θ = 0 / π,
where a raw angle in [0, π) jumps, so a regression loss on it is well posed. The exported graph
converts it to the reference's angle channel θ/π.

Channel widths are the reference's (16-32-64-128, two 3x3 convolutions per stage, ~0.49 M
parameters). The cost is dominated by the full-resolution stages, so speed is set by the input
size (``LineConfig.input_width/height``), not by the parameter count. With ``stride=2`` the first
convolution strides, so every stage runs at half the input resolution and the maps come out at
half size: about 5x less compute for the same input and parameters. The network still sees the
full-resolution pixels (the strided 3x3 convolution reads all of them), which is what keeps thin
lines visible, unlike feeding a half-size image to the stride-1 network.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lkd_perception.common.errors import ConfigError

DEFAULT_WIDTHS = (16, 32, 64, 128)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class _AddUp(nn.Module):
    """Light decoder stage: upsample, 1x1 projection to the skip's width, add the skip, one 3x3 conv.

    About a quarter of the multiply-adds of the reference stage (concatenate, two 3x3 convs), which
    is where a U-Net spends most of its time at high resolution.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)
        self.conv = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.proj(_up(x, skip)) + skip)


class _CatUp(nn.Sequential):
    """Reference decoder stage (REFERENCE 2.1): upsample, concatenate the skip, two 3x3 convs.

    A Sequential of the two convolutions, so its parameter names are those of earlier checkpoints.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*_block(cin + cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([_up(x, skip), skip], 1))


DECODERS = {"concat": _CatUp, "add": _AddUp}


class LSDNet(nn.Module):
    """U-Net: 3 poolings, bilinear upsampling with skips, 1x1 head to (heat logit, cos 2θ, sin 2θ).

    ``stride`` (1 or 2) is the output stride: the maps are ``H/stride`` x ``W/stride``.
    ``decoder``: ``"concat"`` is the reference's decoder, ``"add"`` the light one (:class:`_AddUp`).
    """

    def __init__(
        self, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS, stride: int = 1, decoder: str = "concat"
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"output stride must be 1 or 2, got {stride}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {sorted(DECODERS)}, got {decoder!r}")
        w0, w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.stride = stride
        self.decoder = decoder
        self.enc0, self.enc1, self.enc2 = _block(3, w0, stride), _block(w0, w1), _block(w1, w2)
        self.bottom = _block(w2, w3)
        up = DECODERS[decoder]
        self.dec2, self.dec1, self.dec0 = up(w3, w2), up(w2, w1), up(w1, w0)
        self.head = nn.Conv2d(w0, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N,3,H,W) RGB in [0,1], H and W multiples of 8*stride -> raw (N,3,H/s,W/s) head output."""
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        return self.head(self.dec0(self.dec1(self.dec2(b, e2), e1), e0))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ExportHead(nn.Module):
    """Wraps :class:`LSDNet` for ONNX: (N,3,H,W) RGB/255 -> (N,2,H/s,W/s) = (heat, θ/π in [0,1))."""

    def __init__(self, net: LSDNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        heat = torch.sigmoid(out[:, 0:1])
        theta = 0.5 * torch.atan2(out[:, 2:3], out[:, 1:2])  # (-π/2, π/2]
        theta = torch.where(theta < 0, theta + math.pi, theta)
        return torch.cat([heat, theta / math.pi], 1)


def parse_widths(text: str) -> tuple[int, int, int, int]:
    """Channel widths of the four levels as the command line gives them, ``16,32,64,160``."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"widths must be four positive integers like 16,32,64,160, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
