"""Model cost: parameters and convolution multiply-accumulates, counted with forward hooks.

The count is 2 x conv/linear MACs, the convention of REFERENCE.md's "derived" GFLOPs column
(the README figures also count BN and element-wise ops and sit about 6 % higher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelCost:
    """Parameters and cost of one forward pass at one input size (batch 1)."""

    params: int
    macs: int
    input_size: int

    @property
    def gflops(self) -> float:
        return 2.0 * self.macs / 1e9


def model_cost(model: nn.Module, input_size: int) -> ModelCost:
    """Run one forward pass on a zero image of ``input_size`` and sum conv and linear MACs."""
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        total[0] += out[0].numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(params=params, macs=total[0], input_size=input_size)
