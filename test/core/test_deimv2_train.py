"""Fine-tuning our DEIMv2 (imported from the published Atto) on COCO-format data: the DEIMv2 loss
falls over two steps on the batch it trains on, a run stopped after a checkpoint and resumed
reaches the same weights as one run straight through, and new classes keep the COCO rows of the
classes they share with it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.toy_coco import write_toy_coco

from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.deimv2_train import (
    DEIMv2TrainConfig,
    adapt_classes,
    load_init,
    parse_aliases,
    plain_step_loss,
    prepare_student,
    train_loop,
    with_input_size,
)
from lkd_perception.detection.preprocess import deimv2_resize
from lkd_perception.detection.train_data import batch, load_detection_data

SIZE = 160  # 10x10 + 5x5 memory cells: enough for Atto's 100 queries, small enough for seconds


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_coco(root, frames=2, seed=3)
    return load_detection_data(root, SIZE, deimv2_resize)


def _cfg(**kw) -> DEIMv2TrainConfig:
    # batch = the whole set, no flips: every step sees the same images, so "the loss falls" is a
    # statement about the optimisation, not about which images were drawn
    base = dict(steps=2, batch_size=2, input_size=SIZE, lr=5e-4, warmup_steps=1, flip=False, threads=1,
                checkpoint_every=1)
    return DEIMv2TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def coco_atto():
    return load_init(resolve_model_path("models/deimv2_atto_coco.onnx"))


def _student(coco_atto, data, cfg):
    """What prepare_student does, from one import shared by the tests (the import itself is tested
    in test_deimv2_torch and, through prepare_student, in the first test here)."""
    model, names = coco_atto
    model, class_map = adapt_classes(copy.deepcopy(model), names, data.class_names, parse_aliases(cfg.aliases))
    return with_input_size(model, cfg.input_size), class_map


def _loss(model, data) -> float:
    x, t = batch(data, np.arange(2), np.zeros(2, bool))
    with torch.no_grad():
        return float(plain_step_loss(model)(x, t)[0])


def test_new_classes_start_from_the_coco_rows_they_share(data):
    cfg = _cfg()
    model, class_map = prepare_student(resolve_model_path("models/deimv2_atto_coco.onnx"), data, cfg)
    assert class_map == {"car": "car", "pedestrian": "person", "cyclist": None, "traffic_sign": None}
    coco, names = load_init(resolve_model_path("models/deimv2_atto_coco.onnx"))
    w_new, w_old = model.decoder.dec_score_head[2].weight, coco.decoder.dec_score_head[2].weight
    assert torch.equal(w_new[0], w_old[names.index("car")]) and torch.equal(w_new[1], w_old[names.index("person")])
    assert float(w_new[2].abs().sum()) == 0.0 and model.spec.input_size == SIZE


@pytest.mark.slow
def test_two_steps_lower_the_loss(coco_atto, data, tmp_path):
    cfg = _cfg()
    model, _ = _student(coco_atto, data, cfg)
    before = _loss(model, data)
    res = train_loop(model, model, plain_step_loss(model), data, cfg, tmp_path, data.class_names, resume=False)
    after = _loss(model, data)
    assert res.steps_done == 2 and (tmp_path / "model.pt").is_file()
    assert after < before, (before, after)


@pytest.mark.slow
def test_resume_from_a_checkpoint_reaches_the_same_weights(coco_atto, data, tmp_path):
    cfg = _cfg(flip=True)
    straight, _ = _student(coco_atto, data, cfg)
    train_loop(straight, straight, plain_step_loss(straight), data, cfg, tmp_path / "a", data.class_names, resume=False)

    first, _ = _student(coco_atto, data, cfg)
    r1 = train_loop(first, first, plain_step_loss(first), data, cfg, tmp_path / "b", data.class_names, stop_after=1)
    assert r1.steps_done == 1 and not (tmp_path / "b" / "model.pt").exists()
    again, _ = _student(coco_atto, data, cfg)  # a fresh process: weights and optimiser come from last.pt
    r2 = train_loop(again, again, plain_step_loss(again), data, cfg, tmp_path / "b", data.class_names)
    assert (r2.resumed_from, r2.steps_done) == (1, 2)
    for (k, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    fresh, _ = _student(coco_atto, data, cfg)
    assert not torch.allclose(fresh.decoder.dec_score_head[2].weight, again.decoder.dec_score_head[2].weight)
