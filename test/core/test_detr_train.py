"""DETR training on a tiny toy COCO set (coloured rectangles): loading, one step lowers the loss (with and without
CLoCKDistill), checkpoints, evaluation, config validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.toy_coco import _COLOURS, TOY_CLASSES, write_toy_coco

from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import ConfigError, InputError, ModelError
from lkd_perception.detection.detr import Detr, DetrArch
from lkd_perception.detection.detr_loss import LossWeights
from lkd_perception.detection.distill import CLoCKDistill
from lkd_perception.detection.preprocess import plain_resize
from lkd_perception.detection.train_data import batch, load_detection_data
from lkd_perception.detection.train_detr import (
    DetrTrainConfig,
    evaluate_detr,
    load_checkpoint,
    save_checkpoint,
    step_losses,
    train_detr,
)

TINY_STUDENT = DetrArch(0.35, (10,), 32, 4, 1, 2, 64, 8)
TINY_TEACHER = DetrArch(0.35, (13, 17), 64, 4, 1, 3, 128, 10)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_coco(root, frames=6, seed=0, width=96, height=80)
    return load_detection_data(root, 64, plain_resize)


def _cfg(**kw):
    base = dict(input_size=64, epochs=1, batch_size=4, warmup_iters=0, hflip=0.0, lr=1e-3, backbone_lr=1e-4,
                dn_box_noise=0.0, dn_label_noise=0.0, lcmd_alpha=1e-2, lcmd_beta=1e-2)
    base.update(kw)
    return from_dict(DetrTrainConfig, base)


def test_loader_normalises_boxes(data):
    assert data.images.shape == (6, 64, 64, 3) and data.class_names == TOY_CLASSES
    # normalised by each image's own size (the loader clips to [0, 1], so a range check could not fail): the
    # sizes times the image's are the annotations' widths and heights in pixels
    sizes: dict[int, list] = {}
    for a in data.coco["annotations"]:
        sizes.setdefault(a["image_id"], []).append(a["bbox"][2:])
    for i, b, (w, h) in zip(data.image_ids, data.boxes, data.orig_sizes):
        assert b.shape[1] == 4
        np.testing.assert_allclose(sorted((b[:, 2:] * [w, h]).tolist()), sorted(sizes[int(i)]), atol=1e-3)
    for img, lab, box in zip(data.images, data.labels, data.boxes):
        cx, cy = box[-1, :2]   # the last object is drawn on top: its centre shows its class colour
        px = img[int(cy * 64), int(cx * 64)].astype(int)
        assert np.abs(px - np.array(_COLOURS[lab[-1]])).max() < 40


def _fixed_batch_loss(model, data, cfg, teacher=None, distiller=None):
    images, targets = batch(data, np.arange(4), np.zeros(4, bool))
    model.train()
    with torch.no_grad():
        losses = step_losses(
            model, distiller, teacher, images, targets, cfg, LossWeights(), 4, torch.Generator().manual_seed(0)
        )
    return float(sum(losses.values())), losses


def test_one_step_lowers_the_loss_student(data):
    torch.manual_seed(0)
    sub = type(data)(
        data.images[:4],
        data.labels[:4],
        data.boxes[:4],
        data.image_ids[:4],
        data.orig_sizes[:4],
        data.class_names,
        data.category_ids,
        data.coco,
    )
    cfg = _cfg()
    model = Detr(TINY_STUDENT, 4)
    before, _ = _fixed_batch_loss(copy.deepcopy(model), sub, cfg)
    res = train_detr(cfg, sub, model=model, log_every=1)
    after, _ = _fixed_batch_loss(res.model, sub, cfg)
    assert len(res.history) == 1
    assert after < before


def test_one_step_lowers_the_loss_with_clockdistill(data):
    torch.manual_seed(1)
    sub = type(data)(
        data.images[:4],
        data.labels[:4],
        data.boxes[:4],
        data.image_ids[:4],
        data.orig_sizes[:4],
        data.class_names,
        data.category_ids,
        data.coco,
    )
    cfg = _cfg()
    teacher = Detr(TINY_TEACHER, 4).eval()
    model = Detr(TINY_STUDENT, 4)
    distiller = CLoCKDistill(teacher, model, cfg.distill_weights())
    before, _ = _fixed_batch_loss(copy.deepcopy(model), sub, cfg, teacher, copy.deepcopy(distiller))
    res = train_detr(cfg, sub, teacher=teacher, model=model, distiller=distiller, log_every=1)
    rec = res.history[0]
    assert rec["lcmd"] > 0 and rec["tcld"] > 0 and rec["det"] > 0 and rec["dn"] > 0 and rec["enc"] > 0
    after, _ = _fixed_batch_loss(res.model, sub, cfg, teacher, res.distiller)
    assert after < before
    # And the teacher was not touched.
    assert all(not p.requires_grad for p in teacher.parameters())


class _GroundTruthModel(torch.nn.Module):
    """Answers the images, in the order evaluation feeds them, with their own boxes and classes (score 1)."""

    def __init__(self, data) -> None:
        super().__init__()
        self.data, self.seen = data, 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = range(self.seen, self.seen + len(x))
        self.seen += len(x)
        q = max(len(self.data.boxes[i]) for i in images)
        boxes, scores = torch.zeros(len(x), q, 4), torch.zeros(len(x), q, len(self.data.class_names))
        for j, i in enumerate(images):
            k = len(self.data.boxes[i])
            boxes[j, :k] = torch.as_tensor(self.data.boxes[i])
            scores[j, torch.arange(k), torch.as_tensor(self.data.labels[i], dtype=torch.long)] = 1.0
        return boxes, scores


def test_training_is_reproducible_and_checkpoint_round_trips(data, tmp_path):
    cfg = _cfg(epochs=2, batch_size=3, hflip=0.5, dn_box_noise=0.4, dn_label_noise=0.2)
    torch.manual_seed(0)
    a = train_detr(cfg, data, model=Detr(TINY_STUDENT, 4), log_every=1)
    torch.manual_seed(0)
    b = train_detr(cfg, data, model=Detr(TINY_STUDENT, 4), log_every=1)
    assert [r["loss"] for r in a.history] == pytest.approx([r["loss"] for r in b.history])
    path = save_checkpoint(tmp_path / "s.pt", a.model, data.class_names, 64, cfg)
    loaded = load_checkpoint(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x)[0], a.model(x)[0])
    assert loaded.class_names == list(TOY_CLASSES) and loaded.input_size == 64
    metrics = evaluate_detr(loaded.model, data)
    # every (query, class) pair is a prediction: fewer than the 100 kept per image
    assert metrics["num_images"] == 6 and metrics["num_predictions"] == 6 * TINY_STUDENT.num_queries * len(TOY_CLASSES)
    # the evaluation maps normalised boxes back to each image's own pixels and classes back to COCO ids: a model
    # that answers every image with its ground truth scores 1
    perfect = evaluate_detr(_GroundTruthModel(data), data)
    assert perfect["mAP50-95"] == pytest.approx(1.0) and perfect["mAP75"] == pytest.approx(1.0)


def test_frozen_blocks_stay_fixed(data):
    model = Detr(TINY_STUDENT, 4)
    first = copy.deepcopy(model.backbone.features[0].state_dict())
    res = train_detr(_cfg(freeze_blocks=2), data, model=model)
    for k, v in res.model.backbone.features[0].state_dict().items():
        assert torch.equal(v, first[k])
    assert not any(p.requires_grad for p in res.model.backbone.features[1].parameters())
    assert all(p.requires_grad for p in res.model.backbone.features[2].parameters())


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 32"):
        from_dict(DetrTrainConfig, {"input_size": 100})
    with pytest.raises(ConfigError):
        from_dict(DetrTrainConfig, {"arch": "huge"})
    with pytest.raises(InputError, match="annotations"):
        load_detection_data(tmp_path, 64, plain_resize)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow
def test_train_and_ablate_commands(tmp_path):
    """lkd train detr writes a teacher; lkd ablate detr trains the student alone and with
    CLoCKDistill from it, saves both and reports the difference of their held-out mAP."""
    import json

    from lkd_perception.cli import main

    write_toy_coco(tmp_path / "train", frames=4, seed=0, width=96, height=80)
    write_toy_coco(tmp_path / "val", frames=2, seed=1, width=96, height=80)
    small = ["--set", "input_size=256", "--set", "epochs=1", "--set", "batch_size=4", "--set", "warmup_iters=0"]
    data = ["--data", str(tmp_path / "train"), "--val", str(tmp_path / "val")]
    assert main(["train", "detr", *data, *small, "--arch", "teacher", "--out", str(tmp_path / "teacher.pt"),
                 "--json-out", str(tmp_path / "teacher.json")]) == 0
    teacher = json.loads((tmp_path / "teacher.json").read_text())
    assert teacher["frames"] == 4 and teacher["config"]["arch"] == "teacher" and "mAP50-95" in teacher["val"]
    assert main(["ablate", "detr", *data, *small, "--teacher", str(tmp_path / "teacher.pt"),
                 "--out-dir", str(tmp_path / "ab"), "--json-out", str(tmp_path / "ab.json")]) == 0
    ab = json.loads((tmp_path / "ab.json").read_text())
    assert (tmp_path / "ab" / "student.pt").is_file() and (tmp_path / "ab" / "student_clockdistill.pt").is_file()
    assert ab["delta_mAP50_95"] == ab["student_clockdistill"]["val"]["mAP50-95"] - ab["student"]["val"]["mAP50-95"]
    assert ab["teacher"]["val"] == teacher["val"] and ab["student"]["gflops"] < ab["teacher"]["gflops"]
    assert main(["ablate", "detr", "--data", str(tmp_path / "train"), *small, "--teacher",
                 str(tmp_path / "teacher.pt"), "--out-dir", str(tmp_path / "ab2")]) == 2  # no --val
