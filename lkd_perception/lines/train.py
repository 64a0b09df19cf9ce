"""Training of :class:`~lkd_perception.lines.lsdnet.LSDNet` on synthetic scenes (torch, CPU-friendly).

LSDNet's paper does not publish a loss in code form (REFERENCE 2.1), so this one is ours:

* heat: binary cross-entropy against the soft Gaussian target of
  :func:`~lkd_perception.lines.synthetic.line_targets`, weighted ``1 + pos_weight * target``
  because line pixels are a few percent of an image;
* direction: squared error of the (cos 2θ, sin 2θ) outputs, only where the target heat exceeds
  0.3 (the direction is undefined away from lines).

Every batch is freshly rendered, so the network never sees an image twice and there is no data
set to store. An optional ``extra_source`` (simulator renders, labelled photographs, or a
:class:`SourceMix` of them) supplies a share of each batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from lkd_perception.lines.lsdnet import DEFAULT_WIDTHS, LSDNet
from lkd_perception.lines.synthetic import SyntheticImage, augment, line_targets, render_scene

#: A callable returning one labelled image of the requested (height, width); used to mix in
#: simulator renders.
ImageSource = Callable[[np.random.Generator, int, int], SyntheticImage]


class SourceMix:
    """Several image sources as one: each call draws from one, in proportion to its weight."""

    def __init__(self, sources: list[tuple[ImageSource, float]]) -> None:
        weights = np.array([w for _, w in sources], np.float64)
        if not sources or np.any(weights <= 0):
            raise ValueError("a source mix needs at least one source, each with a positive weight")
        self.sources = [src for src, _ in sources]
        self.p = weights / weights.sum()

    def __call__(self, rng: np.random.Generator, height: int, width: int) -> SyntheticImage:
        return self.sources[int(rng.choice(len(self.sources), p=self.p))](rng, height, width)


@dataclass(frozen=True)
class TrainSettings:
    """Options of one training run (command line of ``lkd train lines``)."""

    steps: int = 3000
    batch: int = 12
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pos_weight: float = 4.0
    angle_weight: float = 1.0
    augment_strength: float = 1.0
    stride: int = 1
    decoder: str = "concat"
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class Batch:
    """Network input (N,3,H,W) in [0,1] and targets (N,H,W): heat, cos 2θ, sin 2θ."""

    image: torch.Tensor
    heat: torch.Tensor
    cos2: torch.Tensor
    sin2: torch.Tensor


def make_batch(
    rng: np.random.Generator,
    size: int,
    crop: int,
    augment_strength: float = 1.0,
    extra_source: ImageSource | None = None,
    extra_fraction: float = 0.0,
    stride: int = 1,
) -> Batch:
    """Render ``size`` fresh scenes of crop x crop pixels (a share from ``extra_source`` if given).

    Targets are drawn at the network's output size, crop/stride, from the exact segments moved to
    that grid (pixel centres at integers: x_out = (x + 0.5) / stride - 0.5), so they stay sharp
    instead of being a downsampled full-size map.
    """
    out = crop // stride
    imgs, heats, c2s, s2s = [], [], [], []
    for _ in range(size):
        if extra_source is not None and rng.random() < extra_fraction:
            scene = extra_source(rng, crop, crop)
        else:
            scene = render_scene(rng, crop, crop)
        rgb = augment(scene.rgb, rng, augment_strength) if augment_strength > 0 else scene.rgb
        tg = line_targets(_to_output_grid(scene.segments, stride), out, out, _to_output_grid(scene.crossings, stride))
        imgs.append(rgb)
        heats.append(tg.heat)
        c2s.append(tg.cos2)
        s2s.append(tg.sin2)
    image = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return Batch(
        image=image,
        heat=torch.from_numpy(np.stack(heats)),
        cos2=torch.from_numpy(np.stack(c2s)),
        sin2=torch.from_numpy(np.stack(s2s)),
    )


def _to_output_grid(points: np.ndarray | None, stride: int) -> np.ndarray | None:
    if points is None or stride == 1:
        return points
    return (np.asarray(points, np.float64) + 0.5) / stride - 0.5


def line_loss(out: torch.Tensor, batch: Batch, pos_weight: float = 4.0, angle_weight: float = 1.0) -> torch.Tensor:
    """Weighted heat BCE plus masked doubled-angle regression (see module docstring)."""
    heat_logit = out[:, 0]
    weight = 1.0 + pos_weight * batch.heat
    heat_loss = F.binary_cross_entropy_with_logits(heat_logit, batch.heat, weight=weight)
    mask = (batch.heat > 0.3).float()
    sq = (out[:, 1] - batch.cos2) ** 2 + (out[:, 2] - batch.sin2) ** 2
    angle_loss = (sq * mask).sum() / mask.sum().clamp(min=1.0)
    return heat_loss + angle_weight * angle_loss


def train_step(
    net: LSDNet, opt: torch.optim.Optimizer, batch: Batch, pos_weight: float = 4.0, angle_weight: float = 1.0
) -> float:
    """One optimiser step; returns the loss before the step."""
    net.train()
    opt.zero_grad(set_to_none=True)
    loss = line_loss(net(batch.image), batch, pos_weight, angle_weight)
    loss.backward()
    opt.step()
    return float(loss.detach())


@dataclass(frozen=True)
class TrainLog:
    """One line of the training log."""

    step: int
    lr: float
    train_loss: float
    seconds: float


def train(
    settings: TrainSettings,
    net: LSDNet | None = None,
    extra_source: ImageSource | None = None,
    extra_fraction: float = 0.0,
) -> Iterator[tuple[LSDNet, TrainLog]]:
    """Run training, yielding (net, log) every step so the caller decides about logging/saving.

    AdamW with a linear warm-up of 100 steps and a cosine decay to 2 % of ``lr``.
    """
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    net = net if net is not None else LSDNet(settings.widths, settings.stride, settings.decoder)
    if net.stride != settings.stride:
        raise ValueError(f"network output stride {net.stride} differs from the settings' {settings.stride}")
    if settings.crop % (8 * net.stride):
        raise ValueError(f"crop {settings.crop} must be a multiple of {8 * net.stride}")
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start = time.monotonic()
    for step in range(settings.steps):
        warm = min(1.0, (step + 1) / 100)
        cosine = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / max(settings.steps, 1)))
        lr = settings.lr * warm * cosine
        for group in opt.param_groups:
            group["lr"] = lr
        batch = make_batch(
            rng, settings.batch, settings.crop, settings.augment_strength, extra_source, extra_fraction, net.stride
        )
        loss = train_step(net, opt, batch, settings.pos_weight, settings.angle_weight)
        yield net, TrainLog(step=step, lr=lr, train_loss=loss, seconds=time.monotonic() - start)
