"""LeYOLO architecture: shapes per size, fidelity of parameters/GFLOPs to the paper, learning."""

from __future__ import annotations

import pytest
import torch

from lkd_perception.common.errors import ConfigError
from lkd_perception.detection.flops import model_cost
from lkd_perception.detection.leyolo import LeYOLO, scale_channels
from lkd_perception.detection.losses import DetectionLoss

torch.set_num_threads(1)


@pytest.mark.parametrize("size", ["n", "s", "m"])
def test_shapes_per_size(size):
    model = LeYOLO(size, nc=5).train()
    maps = model(torch.zeros(2, 3, 96, 128))
    assert [tuple(m.shape) for m in maps] == [(2, 64 + 5, 12, 16), (2, 69, 6, 8), (2, 69, 3, 4)]
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, 4 + 5, 8 * 8 + 4 * 4 + 2 * 2)
    scores = out[0, 4:]
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0


def test_width_scaling_matches_published_channels():
    # small/medium: width 1.33 -> 24 / 48 / 88 / 128 channels, expansions 128 / 256 / 768
    assert [scale_channels(c, 1.33) for c in (16, 32, 64, 96, 96, 192, 576)] == [24, 48, 88, 128, 128, 256, 768]
    assert scale_channels(1000, 1.0) == 576


def test_nano_params_and_gflops_match_paper():
    """Nano with 80 classes: ~1.1 M parameters, 0.66 / 1.47 GFLOPs (README) at 320 / 480 px."""
    model = LeYOLO("n", nc=80)
    c320, c480 = model_cost(model, 320), model_cost(model, 480)
    assert abs(c320.params - 1.12e6) / 1.12e6 < 0.10
    assert abs(c320.gflops - 0.66) / 0.66 < 0.10
    assert abs(c480.gflops - 1.47) / 1.47 < 0.10
    assert c480.params == c320.params


def test_small_and_medium_params_and_gflops():
    small = model_cost(LeYOLO("s", nc=80), 640)
    assert abs(small.params - 1.92e6) / 1.92e6 < 0.10
    assert abs(small.gflops - 4.51) / 4.51 < 0.10
    medium = model_cost(LeYOLO("m", nc=80), 640)
    assert abs(medium.gflops - 5.80) / 5.80 < 0.10
    # Published 2.40 M counts four head layers whose output nothing reads; they are omitted here.
    assert 0.85 * 2.40e6 < medium.params < 2.40e6
    assert medium.params > small.params


def test_detect_inputs_and_head_widths():
    nano = LeYOLO("n", nc=80)
    assert nano.head_from == (24, 29, 34)
    assert nano.head.box[0][0].conv.in_channels == 32 and nano.head.box[2][0].conv.in_channels == 96
    assert nano.head.cls[0][0].conv.out_channels == 80  # max(ch_P3, min(nc, 100))
    assert nano.head.box[0][-1].out_channels == 64  # 4 x reg_max 16
    assert LeYOLO("n", nc=4).head.cls[0][0].conv.out_channels == 32


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="unknown LeYOLO size"):
        LeYOLO("xl")
    with pytest.raises(ConfigError, match="at least one class"):
        LeYOLO("n", nc=0)


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = LeYOLO("n", nc=3).train()
    loss_fn = DetectionLoss(3, model.strides)
    x = torch.rand(4, 3, 96, 96)
    targets = torch.tensor(
        [[0, 0, 10, 10, 50, 40], [1, 1, 20, 30, 90, 80], [2, 2, 5, 5, 30, 60], [3, 0, 40, 40, 80, 90.0]]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = loss_fn(model(x), targets)
    opt.zero_grad()
    before.total.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn(model(x), targets)
    assert float(after.total) < float(before.total)
    assert before.box > 0 and before.cls > 0 and before.dfl > 0


def test_loss_without_objects_is_classification_only():
    model = LeYOLO("n", nc=2).train()
    parts = DetectionLoss(2, model.strides)(model(torch.rand(2, 3, 64, 64)), torch.zeros(0, 6))
    assert parts.box == 0.0 and parts.dfl == 0.0 and parts.cls > 0
    parts.total.backward()  # still differentiable


def test_eval_output_is_the_yolov8_decode_of_the_raw_maps():
    """The export path (``head.predict``) must equal the textbook decode of the training maps:
    softmax over the 16 DFL bins, expected distance, anchor centres at cell + 0.5, times the stride."""
    torch.manual_seed(0)
    model = LeYOLO("n", nc=3).eval()
    for m in model.head.modules():  # non-trivial logits: random last-layer weights in every branch
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            torch.nn.init.normal_(m.weight, std=0.5)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)[0].double()
        maps = model.head(model.neck(x))
    expected = []
    for m, s in zip(maps, model.strides):
        m = m[0].double()
        h, w = m.shape[1:]
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        dist = (m[:64].view(4, 16, h, w).softmax(1) * torch.arange(16.0).view(1, 16, 1, 1)).sum(1)
        left, top, right, bottom = dist
        box = torch.stack(
            ((xs + (right - left) / 2) * s, (ys + (bottom - top) / 2) * s, (left + right) * s, (top + bottom) * s)
        )
        expected.append(torch.cat((box, m[64:].sigmoid())).flatten(1))
    torch.testing.assert_close(out, torch.cat(expected, 1), rtol=0, atol=1e-4)
