"""LeYOLO nano / small / medium as a layer graph (backbone, PAN neck of inverted bottlenecks, DNiN head).

The layer tables follow the published configurations (REFERENCE.md 1.2): each row is
``(from, kind, args)`` with channel counts *before* width scaling, so a size is just a table and
a width multiplier. Layer indices are those of the published configs, which keeps the Detect
inputs (e.g. nano's 24/29/34) checkable against the paper's code.

Deliberate differences from the upstream code, both documented in the model card:
- Medium's published head computes four layers after its P5 Concat that nothing consumes; they
  are omitted here (they change neither outputs nor what is learnt).
- A block without expansion runs its depthwise conv on its *input* channels (upstream uses the
  scaled ``e``, which only works where the two agree, as in nano).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lkd_perception.common.errors import ConfigError
from lkd_perception.detection.blocks import SPPF, Concat, DNiNHead, InvertedBottleneck, MnConv

MAX_CHANNELS = 576
STRIDES = (8, 16, 32)
#: ultralytics' BatchNorm settings, used by every published LeYOLO checkpoint; PyTorch's default
#: eps (1e-5) visibly changes the outputs of the official weights, so the model uses these throughout
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

# (from, kind, args). kinds: conv (c2, k, s) | ib (c2, k, e, s, pointwise) | sppf (c2, k) | up () | cat ()
_Row = tuple[object, str, tuple]


def _ib(c2: int, k: int, e: int | None, s: int = 1, pw: bool = True) -> _Row:
    return (-1, "ib", (c2, k, e, s, pw))


_BACKBONE_STEM: list[_Row] = [
    (-1, "conv", (16, 3, 2)),
    (-1, "conv", (16, 1, 1)),
    _ib(16, 3, 16, 2, False),
]


def _nano_small_table() -> list[_Row]:
    return [
        *_BACKBONE_STEM,
        _ib(32, 3, 96, 2), _ib(32, 3, 96),                                   # 3-4   P3 /8
        _ib(64, 5, 96, 2), *[_ib(64, 5, 192)] * 4,                           # 5-9   P4 /16
        _ib(96, 5, 576, 2), *[_ib(96, 5, 576)] * 3,                          # 10-13 P5 /32
        (-1, "sppf", (96, 5)),                                               # 14
        (-1, "up", ()), ([-1, 9], "cat", ()), *[_ib(64, 5, 128)] * 3,        # 15-19 top-down P4
        (-1, "up", ()), ([-1, 4], "cat", ()),                                # 20-21
        _ib(32, 3, 96, 1, False), *[_ib(32, 3, 64)] * 2,                     # 22-24 P3 out
        (-1, "conv", (64, 3, 2)), ([-1, 19], "cat", ()), *[_ib(64, 5, 128)] * 3,  # 25-29 P4 out
        (-1, "conv", (96, 3, 2)), ([-1, 14], "cat", ()), *[_ib(96, 5, 192)] * 3,  # 30-34 P5 out
    ]


def _medium_table() -> list[_Row]:
    return [
        *_BACKBONE_STEM,
        _ib(32, 3, 96, 2), *[_ib(32, 3, 96)] * 2,                            # 3-5   P3
        _ib(64, 5, 96, 2), *[_ib(64, 5, 192)] * 5,                           # 6-11  P4
        _ib(96, 5, 576, 2), *[_ib(96, 5, 576)] * 4,                          # 12-16 P5
        (-1, "sppf", (96, 5)),                                               # 17
        (-1, "up", ()), ([-1, 11], "cat", ()), *[_ib(64, 5, 128)] * 4,       # 18-23
        (-1, "up", ()), ([-1, 5], "cat", ()),                                # 24-25
        _ib(32, 3, None, 1, False), *[_ib(32, 3, 64)] * 2, _ib(64, 5, 128),  # 26-29
        (-1, "conv", (64, 3, 2)), ([-1, 23], "cat", ()), *[_ib(64, 5, 128)] * 4,  # 30-35
        (-1, "conv", (96, 3, 2)), ([-1, 17], "cat", ()),                     # 36-37
    ]


@dataclass(frozen=True)
class LeYoloSpec:
    """One published size: layer table, width multiplier and which layers feed the head."""

    name: str
    width: float
    table: tuple[_Row, ...]
    head_from: tuple[int, int, int]


SIZES: dict[str, LeYoloSpec] = {
    "n": LeYoloSpec("n", 1.0, tuple(_nano_small_table()), (24, 29, 34)),
    "s": LeYoloSpec("s", 1.33, tuple(_nano_small_table()), (24, 29, 34)),
    "m": LeYoloSpec("m", 1.33, tuple(_medium_table()), (27, 32, 37)),
}


def scale_channels(c: int, width: float) -> int:
    """Upstream scaling: cap at 576, multiply by the width, round *up* to a multiple of 8."""
    return int(math.ceil(min(c, MAX_CHANNELS) * width / 8) * 8)


class LeYOLO(nn.Module):
    """LeYOLO detector. In training mode ``forward`` returns the raw per-level head maps (for the
    loss); in eval mode it returns the decoded YOLOv8 tensor [B, 4 + nc, N]."""

    def __init__(self, size: str = "n", nc: int = 80, reg_max: int = 16) -> None:
        super().__init__()
        if size not in SIZES:
            raise ConfigError(f"unknown LeYOLO size {size!r}; choose one of {sorted(SIZES)}")
        if nc < 1:
            raise ConfigError(f"LeYOLO needs at least one class, got nc={nc}")
        spec = SIZES[size]
        self.size, self.nc, self.reg_max = size, nc, reg_max
        self.strides = STRIDES
        layers, sources, out_ch = nn.ModuleList(), [], []
        for i, (src, kind, args) in enumerate(spec.table):
            srcs = [src] if isinstance(src, int) else list(src)
            srcs = [s if s >= 0 else i + s for s in srcs]
            c_in = [out_ch[s] if s >= 0 else 3 for s in srcs]  # -1 at layer 0 is the RGB image
            c_prev = c_in[0]
            if kind == "conv":
                c2, k, s = args
                c2 = scale_channels(c2, spec.width)
                layer: nn.Module = MnConv(c_prev, c2, k, s)
            elif kind == "ib":
                c2, k, e, s, pw = args
                c2 = scale_channels(c2, spec.width)
                e_scaled = scale_channels(e, spec.width) if e is not None else c_prev
                layer = InvertedBottleneck(c_prev, c2, k, e_scaled, s, pw)
            elif kind == "sppf":
                c2 = scale_channels(args[0], spec.width)
                layer = SPPF(c_prev, c2, args[1])
            elif kind == "up":
                c2, layer = c_prev, nn.Upsample(scale_factor=2, mode="nearest")
            else:  # cat
                c2, layer = sum(c_in), Concat()
            layers.append(layer)
            sources.append(srcs)
            out_ch.append(c2)
        self.layers = layers
        self._sources = sources
        self._keep = set(spec.head_from) | {s for srcs in sources for s in srcs if len(srcs) > 1}
        self.head_from = spec.head_from
        self.head = DNiNHead(nc, tuple(out_ch[i] for i in spec.head_from), STRIDES, reg_max)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = BN_EPS, BN_MOMENTUM

    def neck(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps the head reads (P3, P4, P5)."""
        saved: dict[int, torch.Tensor] = {}
        y = x
        for i, layer in enumerate(self.layers):
            srcs = self._sources[i]
            if len(srcs) > 1:
                y = layer([y if s == i - 1 else saved[s] for s in srcs])
            else:
                y = layer(y)
            if i in self._keep:
                saved[i] = y
        return [saved[i] for i in self.head_from]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self.neck(x)
        return self.head(feats) if self.training else self.head.predict(feats)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
