"""HGNetv2 (Atto, Femto) and the LiteEncoder of DEIMv2, with batch norm folded into the convolutions.

The published DEIMv2 exports carry each convolution with its batch norm already folded in (one
weight and one bias). The modules here are that deploy form: a convolution with a bias, then the
activation (and for HGNetv2 the learnable affine "lab" after it). Loading the ONNX weights is then
a plain copy, and fine-tuning trains the folded weights directly, which also avoids batch-norm
statistics from the tiny batches a CPU can afford. Module names follow the published graph's
node names so that :mod:`lkd_perception.detection.deimv2_import` maps them without a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StageSpec:
    """One HGNetv2 stage: channels in/mid/out, whether it halves the resolution first, whether its
    layers are light (1x1 then depth-wise), the kernel of its layers, and how many layers."""

    cin: int
    mid: int
    cout: int
    downsample: bool
    light: bool
    kernel: int
    layers: int


#: Atto and Femto differ only in the last stage (256 vs 512 channels, kernel 3 vs 5); both stop
#: after three stages and hand stride 16 to the encoder.
HGNET_STAGES: dict[str, tuple[StageSpec, ...]] = {
    "atto": (StageSpec(16, 16, 64, False, False, 3, 3), StageSpec(64, 32, 256, True, False, 3, 3),
             StageSpec(256, 64, 256, True, True, 3, 3)),
    "femto": (StageSpec(16, 16, 64, False, False, 3, 3), StageSpec(64, 32, 256, True, False, 3, 3),
              StageSpec(256, 64, 512, True, True, 5, 3)),
}


class Affine(nn.Module):
    """HGNetv2's learnable affine block: one scalar scale and bias after the activation."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvAct(nn.Module):
    """Folded conv + batch norm, optional activation, optional affine (``lab``) after it."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu",
                 lab: bool = False, pad: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 if pad else 0, groups=groups, bias=True)
        self.act = {"relu": nn.ReLU(), "silu": nn.SiLU(), None: nn.Identity()}[act]
        self.lab = Affine() if (lab and act is not None) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.conv(x)))


class Stem(nn.Module):
    """Stride-4 stem: a 2x2 conv branch beside a max-pool branch, concatenated (HGNetv2)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem1 = ConvAct(3, 16, 3, 2, lab=True)
        self.stem2a = ConvAct(16, 8, 2, lab=True, pad=False)
        self.stem2b = ConvAct(8, 16, 2, lab=True, pad=False)
        self.stem3 = ConvAct(32, 16, 3, 2, lab=True)
        self.stem4 = ConvAct(16, 16, 1, lab=True)
        self.pool = nn.MaxPool2d(2, 1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        x2 = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        return self.stem4(self.stem3(torch.cat([self.pool(x), x2], 1)))


class LightConv(nn.Module):
    """1x1 projection (no activation) then a depth-wise conv with activation."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv1 = ConvAct(cin, cout, 1, act=None)
        self.conv2 = ConvAct(cout, cout, k, groups=cout, lab=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class HGBlock(nn.Module):
    """Layers in sequence, every intermediate concatenated, then squeeze/excite 1x1 aggregation."""

    def __init__(self, s: StageSpec) -> None:
        super().__init__()
        make = (lambda i: LightConv(s.cin if i == 0 else s.mid, s.mid, s.kernel)) if s.light else \
            (lambda i: ConvAct(s.cin if i == 0 else s.mid, s.mid, s.kernel, lab=True))
        self.layers = nn.ModuleList(make(i) for i in range(s.layers))
        total = s.cin + s.layers * s.mid
        self.aggregation = nn.Sequential(
            ConvAct(total, s.cout // 2, 1, lab=True), ConvAct(s.cout // 2, s.cout, 1, lab=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for layer in self.layers:
            outs.append(layer(outs[-1]))
        return self.aggregation(torch.cat(outs, 1))


class HGStage(nn.Module):
    def __init__(self, s: StageSpec) -> None:
        super().__init__()
        self.downsample = ConvAct(s.cin, s.cin, 3, 2, groups=s.cin, act=None) if s.downsample else nn.Identity()
        self.blocks = nn.Sequential(HGBlock(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class HGNetv2(nn.Module):
    """HGNetv2 Atto/Femto returning the stride-16 map of its third stage (the only one DEIMv2 uses)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        specs = HGNET_STAGES[name]
        self.stem = Stem()
        self.stages = nn.ModuleList(HGStage(s) for s in specs)
        self.out_channels = specs[-1].cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class CSPBranch(nn.Module):
    """1x1 to twice the width, split in two; the second half through fused 3x3 blocks, added to the first."""

    def __init__(self, cin: int, c: int, n: int) -> None:
        super().__init__()
        self.conv1 = ConvAct(cin, 2 * c, 1, act="silu")
        self.bottlenecks = nn.Sequential(*[ConvAct(c, c, 3, act="silu") for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).chunk(2, 1)
        return a + self.bottlenecks(b)


class ELANBlock(nn.Module):
    """RepNCSPELAN4 as deployed: 1x1 split, two CSP branches chained on the second half, 1x1 fuse."""

    def __init__(self, c: int, c4: int, n: int) -> None:
        super().__init__()
        self.cv1 = ConvAct(c, 2 * c, 1, act="silu")
        self.cv2 = nn.Sequential(CSPBranch(c, c4, n), ConvAct(c4, c4, 3, act="silu"))
        self.cv3 = nn.Sequential(CSPBranch(c4, c4, n), ConvAct(c4, c4, 3, act="silu"))
        self.cv4 = ConvAct(2 * c + 2 * c4, c, 1, act="silu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.append(self.cv2(y[-1]))
        y.append(self.cv3(y[-1]))
        return self.cv4(torch.cat(y, 1))


def _down(c: int) -> nn.Sequential:
    # index 2 held the batch norm that is folded into the conv at index 1: kept as Identity so the
    # indices (and so the names) stay those of the published graph
    return nn.Sequential(nn.AvgPool2d(3, 2, 1), nn.Conv2d(c, c, 1, bias=True), nn.Identity(), nn.SiLU())


class LiteEncoder(nn.Module):
    """DEIMv2's two-scale encoder: project stride 16, pool a stride-32 map with a global-context
    fusion, then one top-down (FPN) and one bottom-up (PAN) ELAN fusion. Its two outputs, flattened,
    are the *memory* the decoder attends to (and what CLoCKDistill's LCMD distils)."""

    def __init__(self, cin: int, hidden: int, expansion: float = 0.34, depth_mult: float = 0.5) -> None:
        super().__init__()
        self.input_proj = nn.ModuleList([nn.Sequential()])
        self.input_proj[0].add_module("conv", nn.Conv2d(cin, hidden, 1, bias=True))
        self.down_sample1 = _down(hidden)
        self.down_sample2 = _down(hidden)
        self.bi_fusion = nn.Module()
        self.bi_fusion.cv = ConvAct(hidden, hidden, 1, act="silu")
        c4, n = round(expansion * hidden // 2), round(3 * depth_mult)
        self.fpn_block = ELANBlock(hidden, c4, n)
        self.pan_block = ELANBlock(hidden, c4, n)
        self.hidden = hidden

    def forward(self, feat: torch.Tensor) -> list[torch.Tensor]:
        p16 = self.input_proj[0](feat)
        p32 = self.down_sample1(p16)
        p32 = self.bi_fusion.cv(p32 + F.adaptive_avg_pool2d(p32, 1))
        o16 = self.fpn_block(p16 + F.interpolate(p32, scale_factor=2.0, mode="nearest"))
        o32 = self.pan_block(p32 + self.down_sample2(o16))
        return [o16, o32]
