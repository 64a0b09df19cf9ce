"""Training and export of LSDNet: a step lowers the loss; the ONNX graph matches torch in ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.export import export_onnx, load_checkpoint, save_checkpoint
from lkd_perception.lines.lsdnet import ExportHead, LSDNet, count_parameters
from lkd_perception.lines.runtime import LineDetector
from lkd_perception.lines.synthetic import SyntheticImage
from lkd_perception.lines.train import SourceMix, line_loss, make_batch, train_step

TINY = (4, 8, 8, 16)


@torch.no_grad()
def evaluate_loss(net, batches, pos_weight: float = 4.0, angle_weight: float = 1.0) -> float:
    net.eval()
    return float(np.mean([float(line_loss(net(b.image), b, pos_weight, angle_weight)) for b in batches]))


def test_default_network_size_matches_the_reference():
    # REFERENCE 2.1: about 0.5 M parameters (the original has 498,890)
    assert 400_000 < count_parameters(LSDNet()) < 600_000


def test_shipped_design_is_lighter_but_about_the_same_size():
    # stride 2, light decoder, wider bottom (models/MODEL_CARD.md): still about 0.5 M parameters
    shipped = LSDNet((16, 32, 64, 160), stride=2, decoder="add")
    assert 400_000 < count_parameters(shipped) < 600_000
    with pytest.raises(ValueError):
        LSDNet(TINY, decoder="sum")


@pytest.mark.parametrize("stride,decoder", [(1, "concat"), (2, "add")])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(stride, decoder):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = LSDNet(TINY, stride, decoder)
    batch = make_batch(np.random.default_rng(0), 2, 32, stride=stride)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = evaluate_loss(net, [batch])
    reported = train_step(net, opt, batch)
    after = evaluate_loss(net, [batch])
    assert reported == pytest.approx(before, rel=1e-4)
    assert after < before


def test_stride_two_network_has_the_same_parameters_and_half_size_maps():
    net = LSDNet(TINY, stride=2)
    assert count_parameters(net) == count_parameters(LSDNet(TINY))
    assert net(torch.zeros(1, 3, 48, 64)).shape == (1, 3, 24, 32)
    with pytest.raises(ValueError):
        LSDNet(TINY, stride=3)


def test_stride_two_targets_are_drawn_on_the_output_grid():
    # the same scenes (same seed) at stride 1 and 2: the half-size heat is the full-size one's
    # lines moved to the coarse grid, so its line pixels sit where the full-size ones average to
    full = make_batch(np.random.default_rng(3), 2, 64, augment_strength=0.0)
    half = make_batch(np.random.default_rng(3), 2, 64, augment_strength=0.0, stride=2)
    assert half.image.shape == (2, 3, 64, 64) and half.heat.shape == (2, 32, 32)
    torch.testing.assert_close(half.image, full.image)
    pooled = torch.nn.functional.avg_pool2d(full.heat[:, None], 2)[:, 0]
    # where the fine map has a line the coarse one has one too (pooled heat is at least ~0.3 there)
    on_line = pooled > 0.4
    assert float(half.heat[on_line].mean()) > 0.6
    assert float(half.heat[pooled < 0.01].mean()) < 0.05


def test_batch_targets_are_consistent():
    b = make_batch(np.random.default_rng(1), 3, 64, augment_strength=0.0)
    assert b.image.shape == (3, 3, 64, 64) and b.heat.shape == (3, 64, 64)
    assert float(b.image.min()) >= 0.0 and float(b.image.max()) <= 1.0
    assert float(b.heat.max()) <= 1.0 and float(b.heat.max()) > 0.9  # every scene has lines
    np.testing.assert_allclose((b.cos2**2 + b.sin2**2).numpy(), 1.0, atol=1e-5)


def _round_trip(net: LSDNet, tmp_path):
    """Checkpoint save/load, ONNX export at 64x48, and the ONNX output checked against torch."""
    save_checkpoint(net, tmp_path / "c.pt")
    net = load_checkpoint(tmp_path / "c.pt")
    path = export_onnx(net, tmp_path / "m.onnx", 64, 48)
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    with torch.no_grad():
        ref = ExportHead(net)(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    return net, path, sess, got


def test_export_matches_torch_and_loads_in_the_runtime(tmp_path):
    torch.manual_seed(0)
    net = LSDNet(TINY).eval()
    net, path, sess, got = _round_trip(net, tmp_path)
    assert got.shape == (1, 2, 48, 64)
    assert got[:, 1].min() >= 0.0 and got[:, 1].max() <= 1.0  # θ/π in [0, 1]
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["normalisation"] == "rgb/255" and meta["input_width"] == "64" and meta["input_height"] == "48"
    # dynamic spatial size: the runtime can run it at another input size
    det = LineDetector(LineConfig(model_path=str(path), input_width=32, input_height=24, threads=1))
    out = det.detect(np.zeros((50, 70, 3), np.uint8))
    assert out.segments.shape[1] == 4 and len(out.scores) == len(out.segments)


def test_stride_two_export_matches_torch_and_runs_at_half_size(tmp_path):
    torch.manual_seed(0)
    net = LSDNet(TINY, stride=2, decoder="add").eval()
    net, path, sess, got = _round_trip(net, tmp_path)
    assert net.stride == 2 and net.decoder == "add"
    assert got.shape == (1, 2, 24, 32)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["output_stride"] == "2" and meta["decoder"] == "add"
    with pytest.raises(ModelError, match="multiple of 16"):
        export_onnx(net, tmp_path / "bad.onnx", 40, 48)
    with pytest.raises(ModelError, match="multiple of 16"):
        LineDetector(LineConfig(model_path=str(path), input_width=40, input_height=24, threads=1))
    det = LineDetector(LineConfig(model_path=str(path), input_width=32, input_height=32, threads=1))
    assert det.output_stride == 2
    heat, theta = det.heat_and_angle(np.zeros((50, 70, 3), np.uint8))
    assert heat.shape == theta.shape == (16, 16)


def test_doubled_angle_head_is_continuous_across_zero():
    # θ just below π and just above 0 are the same line direction; the head's (cos 2θ, sin 2θ)
    # are then nearly equal and both decode into [0, π).
    head = ExportHead(LSDNet(TINY))
    for theta in (0.01, math.pi - 0.01):
        out = torch.tensor([[[[0.0]], [[math.cos(2 * theta)]], [[math.sin(2 * theta)]]]])
        head.net.forward = lambda x, o=out: o  # type: ignore[method-assign]
        decoded = float(head(torch.zeros(1, 3, 1, 1))[0, 1]) * math.pi
        assert decoded == pytest.approx(theta, abs=1e-5)


def test_missing_checkpoint_is_a_model_error(tmp_path):
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "none.pt")


def test_source_mix_draws_in_proportion():
    def source(tag):
        return lambda rng, h, w: SyntheticImage(np.full((h, w, 3), tag, np.uint8), np.zeros((0, 4), np.float32),
                                                np.zeros((0, 2), np.float32))

    mix = SourceMix([(source(1), 0.3), (source(2), 0.1)])
    rng = np.random.default_rng(0)
    tags = np.array([mix(rng, 8, 8).rgb[0, 0, 0] for _ in range(4000)])
    assert set(tags.tolist()) == {1, 2}
    assert np.mean(tags == 1) == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError):
        SourceMix([(source(1), 0.0)])
