"""CLoCKDistill pieces on hand-made cases: the LCMD masks, the LCMD loss, the TCLD loss."""

from __future__ import annotations

import pytest
import torch

from lkd_perception.common.errors import ConfigError
from lkd_perception.detection.detr import ARCHS, DecoderOutput, Detr, DetrArch
from lkd_perception.detection.distill import (
    CLoCKDistill,
    DistillWeights,
    binary_kl,
    layer_pairs,
    lcmd_loss,
    lcmd_masks,
    tcld_loss,
)
from lkd_perception.detection.matcher import Targets


def _box(x1, y1, x2, y2):
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def test_lcmd_mask_inside_outside_and_smaller_box_wins():
    # 4x4 grid, cell centres at 0.125, 0.375, 0.625, 0.875.
    big = _box(0.0, 0.0, 0.5, 0.5)        # rows 0-1, cols 0-1: 4 cells
    small = _box(0.3, 0.3, 0.45, 0.45)    # contains only the centre of cell (1, 1)
    m, s = lcmd_masks([Targets(torch.tensor([0, 1]), torch.tensor([big, small]))], 4, 4)
    expect_m = torch.zeros(4, 4)
    expect_m[:2, :2] = 1
    assert torch.equal(m[0], expect_m)
    assert s[0, 1, 1] == pytest.approx(1.0)           # the small box's cell: 1/1, not 1/4
    for r, c in [(0, 0), (0, 1), (1, 0)]:
        assert s[0, r, c] == pytest.approx(0.25)
    assert torch.allclose(s[0][m[0] == 0], torch.full((12,), 1 / 12))


def test_lcmd_mask_tiny_box_claims_its_centre_cell_and_empty_image():
    tiny = _box(0.80, 0.05, 0.82, 0.07)   # no cell centre inside
    m, s = lcmd_masks([Targets(torch.tensor([0]), torch.tensor([tiny])),
                       Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))], 4, 4)
    assert m[0].sum() == 1 and m[0, 0, 3] == 1 and s[0, 0, 3] == 1
    assert m[1].sum() == 0 and torch.allclose(s[1], torch.full((4, 4), 1 / 16))


def test_lcmd_loss_weights_foreground_and_background():
    m = torch.zeros(1, 2, 2)
    m[0, 0, 0] = 1
    s = torch.full((1, 2, 2), 1 / 3)
    s[0, 0, 0] = 1.0
    t = torch.zeros(1, 3, 2, 2)
    st = torch.zeros(1, 3, 2, 2)
    st[0, :, 0, 0] = 1.0   # foreground error: 3 channels x 1^2
    st[0, :, 1, 1] = 2.0   # background error: 3 channels x 2^2
    loss = lcmd_loss(t, st, m, s, alpha=2.0, beta=0.5)
    assert loss.item() == pytest.approx(2.0 * 3.0 + 0.5 * (12.0 / 3))
    assert lcmd_loss(t, t, m, s, 1.0, 1.0).item() == 0.0


def test_tcld_zero_for_identical_outputs_and_confidence_weighted():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4)
    boxes = torch.rand(2, 3, 4) * 0.3 + 0.3
    out = DecoderOutput([logits], [boxes])
    valid = torch.ones(2, 3)
    w = DistillWeights()
    assert tcld_loss(out, out, valid, w).item() == pytest.approx(0.0, abs=1e-5)
    shifted = DecoderOutput([logits + 1.0], [boxes + 0.05])
    base = tcld_loss(shifted, out, valid, w).item()
    assert base > 0
    # A query the teacher is unsure about teaches less: lower teacher confidence, lower loss.
    unsure = DecoderOutput([logits - 5.0], [boxes])
    shifted_unsure = DecoderOutput([logits - 4.0], [boxes + 0.05])
    assert tcld_loss(shifted_unsure, unsure, valid, w).item() < base
    # Padded queries do not count.
    assert tcld_loss(shifted, out, torch.zeros(2, 3), w).item() == 0.0


def test_binary_kl_nonnegative_and_layer_pairs():
    z = torch.randn(50, 4) * 3
    assert (binary_kl(torch.randn(50, 4), z, 2.0) >= -1e-6).all()
    assert layer_pairs(3, 4) == [(0, 0), (1, 2), (2, 3)]
    assert layer_pairs(2, 2) == [(0, 0), (1, 1)]


def test_distiller_needs_the_same_memory_grid():
    small_t = DetrArch(0.35, (13,), 32, 4, 1, 2, 64, 6)
    small_s = DetrArch(0.35, (6,), 16, 2, 1, 1, 32, 4)   # stride 8 memory: grids differ
    with pytest.raises(ConfigError, match="stride"):
        CLoCKDistill(Detr(small_t, 2), Detr(small_s, 2), DistillWeights())
    d = CLoCKDistill(Detr(ARCHS["teacher"], 2), Detr(ARCHS["student"], 2), DistillWeights())
    assert isinstance(d.adapter, torch.nn.Conv2d) and d.adapter.in_channels == 128 and d.adapter.out_channels == 256
