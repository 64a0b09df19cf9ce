"""CLoCKDistill between DEIMv2 models (teacher Femto, student Atto, both imported from the
published files): each loss is zero when the student is the teacher and positive otherwise; the
location masks follow the boxes; two distillation steps lower the loss; a stopped run resumes from
its checkpoint to the same weights (student and adapters)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.toy_coco import write_toy_coco

from lkd_perception.common.errors import ConfigError
from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.clockdistill import (
    ClockDistiller,
    binary_kl,
    lcmd_loss,
    lcmd_masks,
    target_queries,
)
from lkd_perception.detection.deimv2_train import (
    DEIMv2TrainConfig,
    adapt_classes,
    load_init,
    parse_aliases,
    train_loop,
    with_input_size,
)
from lkd_perception.detection.matcher import Targets
from lkd_perception.detection.preprocess import deimv2_resize
from lkd_perception.detection.train_data import batch, load_detection_data

SIZE = 160


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_coco(root, frames=2, seed=5)
    return load_detection_data(root, SIZE, deimv2_resize)


@pytest.fixture(scope="module")
def published():
    torch.set_num_threads(1)
    return {n: load_init(resolve_model_path(f"models/deimv2_{n}_coco.onnx")) for n in ("atto", "femto")}


def _model(published, name, data):
    model, names = published[name]
    model, _ = adapt_classes(copy.deepcopy(model), names, data.class_names, parse_aliases("pedestrian=person"))
    return with_input_size(model, SIZE)


def _batch(data):
    return batch(data, np.arange(2), np.zeros(2, bool))


def _terms(distiller, x, t):
    with torch.no_grad():
        maps = distiller.student.run(x, all_layers=True).memory
        return {k: float(v) for k, v in distiller.distill_terms(x, t, maps).items()}


def test_each_loss_is_zero_when_the_student_is_the_teacher_and_positive_otherwise(published, data):
    x, t = _batch(data)
    teacher = _model(published, "femto", data)
    same = _terms(ClockDistiller(teacher, copy.deepcopy(teacher)), x, t)
    assert same["lcmd"] == 0.0
    assert same["tcld"] < 1e-5  # GIoU's epsilon leaves ~1e-7 on identical boxes
    # a different student: Atto (its own width, through the adapters)
    other = _terms(ClockDistiller(teacher, _model(published, "atto", data)), x, t)
    assert other["lcmd"] > 1e-3 and other["tcld"] > 1e-3
    # the same architecture with the decoder alone changed: memory identical, decoder outputs not
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.decoder.dec_score_head[2].bias.add_(1.0)
        student.decoder.dec_bbox_head.layers[2].bias.add_(0.5)
    dec_only = _terms(ClockDistiller(teacher, student), x, t)
    assert dec_only["lcmd"] == 0.0 and dec_only["tcld"] > 1e-3
    # the loss functions themselves
    a = torch.randn(2, 8, 4, 4)
    assert float(lcmd_loss([a], [a.clone()], t, 1.0, 0.1)) == 0.0
    assert float(lcmd_loss([a], [a + 0.1], t, 1.0, 0.1)) > 0.0
    z = torch.randn(3, 5, 4)
    assert float(binary_kl(z, z, 2.0).abs().max()) < 1e-6 and float(binary_kl(z + 1, z, 2.0).min()) > 0.0


def test_masks_follow_the_boxes():
    # 8x8 grid; box covering cells columns 2..3, rows 4..6 (cell centres (k+0.5)/8)
    box = torch.tensor([[0.325, 0.6875, 0.25, 0.375]])  # cx, cy, w, h: x 0.2..0.45, y 0.5..0.875
    m, s = lcmd_masks([Targets(torch.tensor([0]), box)], 8, 8)
    inside = m[0].nonzero().tolist()
    assert sorted({r for r, _ in inside}) == [4, 5, 6] and sorted({c for _, c in inside}) == [2, 3]
    assert torch.isclose(s[0][m[0] == 1].sum(), torch.tensor(1.0))  # a box weighs 1 in total
    assert torch.isclose(s[0][m[0] == 0].sum(), torch.tensor(1.0))  # so does the background
    moved = box.clone()
    moved[0, 0] += 0.25  # two cells to the right
    m2, _ = lcmd_masks([Targets(torch.tensor([0]), moved)], 8, 8)
    assert torch.equal(m2[0], torch.roll(m[0], 2, dims=1))
    # overlapping boxes: the smaller one's weight wins in the overlap; a tiny box claims its centre cell
    big = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    small = torch.tensor([[0.5625, 0.5625, 0.1, 0.1]])
    tiny = torch.tensor([[0.1, 0.1, 0.01, 0.01]])
    m3, s3 = lcmd_masks([Targets(torch.tensor([0, 1, 2]), torch.cat([big, small, tiny]))], 8, 8)
    assert float(s3[0, 4, 4]) == 1.0 and float(s3[0, 0, 0]) == 1.0 and float(s3[0, 7, 7]) == 1.0 / 64
    assert int(m3[0].sum()) == 64


def test_target_queries_are_the_same_boxes_for_teacher_and_student(published, data):
    x, t = _batch(data)
    teacher, student = _model(published, "femto", data), _model(published, "atto", data)
    with torch.no_grad():
        qt = target_queries(teacher, teacher.encode(x), t)
        qs = target_queries(student, student.encode(x), t)
    assert torch.equal(qt.ref_unact, qs.ref_unact) and torch.equal(qt.pad, qs.pad)
    assert qt.content.shape[-1] == 96 and qs.content.shape[-1] == 64
    assert int((~qt.pad).sum()) == 5 * sum(len(tt.labels) for tt in t)


def test_an_image_without_objects_gives_finite_losses_and_gradients(published, data):
    x, t = _batch(data)
    t = [t[0], Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))]  # the second image: nothing
    d = ClockDistiller(_model(published, "femto", data), _model(published, "atto", data))
    loss, parts = d.step_loss(x, t)
    loss.backward()
    assert all(np.isfinite(v) for v in parts.values())
    assert all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)


def test_teacher_must_have_the_students_classes(published, data):
    with pytest.raises(ConfigError, match="classes"):
        ClockDistiller(published["femto"][0], _model(published, "atto", data))


def _cfg(**kw) -> DEIMv2TrainConfig:
    base = dict(steps=2, batch_size=2, input_size=SIZE, lr=5e-4, warmup_steps=1, flip=False, threads=1,
                checkpoint_every=1)
    return DEIMv2TrainConfig(**{**base, **kw})


def _distiller(published, data):
    torch.manual_seed(0)  # the adapters' initialisation
    return ClockDistiller(_model(published, "femto", data), _model(published, "atto", data))


@pytest.mark.slow
def test_two_distillation_steps_lower_the_loss(published, data, tmp_path):
    d = _distiller(published, data)
    x, t = _batch(data)
    with torch.no_grad():
        before = float(d.step_loss(x, t)[0])
    res = train_loop(d.student, d, d.step_loss, data, _cfg(), tmp_path, data.class_names, resume=False)
    with torch.no_grad():
        after = float(d.step_loss(x, t)[0])
    assert res.steps_done == 2 and {"lcmd", "tcld", "mal"} <= set(res.last_losses)
    assert after < before, (before, after)


@pytest.mark.slow
def test_distillation_resumes_from_a_checkpoint(published, data, tmp_path):
    cfg = _cfg(flip=True)
    straight = _distiller(published, data)
    train_loop(straight.student, straight, straight.step_loss, data, cfg, tmp_path / "a", data.class_names,
               resume=False)
    first = _distiller(published, data)
    assert (
        train_loop(
            first.student, first, first.step_loss, data, cfg, tmp_path / "b", data.class_names, stop_after=1
        ).steps_done
        == 1
    )
    again = _distiller(published, data)
    r = train_loop(again.student, again, again.step_loss, data, cfg, tmp_path / "b", data.class_names)
    assert (r.resumed_from, r.steps_done) == (1, 2)
    for (k, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert any(k.startswith("adapters.") for k in again.state_dict())  # the adapters are trained and saved too
