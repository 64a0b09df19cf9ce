"""The training loop on a tiny real COCO set: checkpoints, resume, validation, export from a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.toy_coco import TOY_CLASSES, write_toy_coco

from lkd_perception.common.config import from_dict
from lkd_perception.common.errors import ConfigError, ModelError
from lkd_perception.detection.config import DetectorConfig, LeyoloTrainConfig
from lkd_perception.detection.export import export_leyolo
from lkd_perception.detection.runtime import Detector
from lkd_perception.detection.train_leyolo import (
    collate,
    load_checkpoint,
    lr_factor,
    model_from_checkpoint,
    run_progress,
    train,
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_coco(root / "train", 12, seed=0, width=80, height=64), write_toy_coco(root / "val", 4, seed=1,
                                                                                            width=80, height=64)


@pytest.mark.slow
def test_train_checkpoint_resume_and_export(toy, tmp_path):
    train_ann, val_ann = toy
    base = {"data": str(train_ann), "val_data": str(val_ann), "out_dir": str(tmp_path / "run"), "img_size": 64,
            "batch": 4, "epochs": 2, "threads": 1}
    seen = []
    result = train(from_dict(LeyoloTrainConfig, base), progress=seen.append)
    assert result.epochs_run == 2 and [r["epoch"] for r in seen] == [0, 1]
    assert all("val_mAP50-95" in r and r["loss"] > 0 for r in seen)
    ckpt = load_checkpoint(result.last_checkpoint)
    assert ckpt["epoch"] == 1 and ckpt["class_names"] == list(TOY_CLASSES) and ckpt["model_args"]["nc"] == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2

    resumed = train(from_dict(LeyoloTrainConfig, {**base, "epochs": 3, "resume": result.last_checkpoint}))
    assert resumed.epochs_run == 1
    again = load_checkpoint(resumed.last_checkpoint)
    assert again["epoch"] == 2 and again["ema_updates"] == 3 * ckpt["ema_updates"] // 2

    onnx_path = export_leyolo(model_from_checkpoint(again), tmp_path / "toy.onnx", 64, again["class_names"])
    det = Detector(from_dict(DetectorConfig, {"leyolo_model_path": str(onnx_path), "threads": 1}))
    assert det.class_names == TOY_CLASSES

    timed = train(from_dict(LeyoloTrainConfig, {**base, "out_dir": str(tmp_path / "timed"), "epochs": 50,
                                                 "time_limit_min": 0.02}))
    assert 1 <= timed.epochs_run < 50
    assert load_checkpoint(timed.last_checkpoint)["epoch"] == timed.epochs_run - 1

    tuned = train(from_dict(LeyoloTrainConfig, {**base, "out_dir": str(tmp_path / "tune"), "epochs": 1,
                                                 "weights": resumed.last_checkpoint}))
    assert load_checkpoint(tuned.last_checkpoint)["epoch"] == 0  # a new run, from trained weights
    with pytest.raises(ConfigError, match="not both"):
        train(
            from_dict(LeyoloTrainConfig, {**base, "weights": result.last_checkpoint, "resume": result.last_checkpoint})
        )

    with pytest.raises(ConfigError, match="checkpoint is"):
        train(from_dict(LeyoloTrainConfig, {**base, "size": "s", "resume": result.last_checkpoint}))


def test_schedule_and_collate():
    assert lr_factor(0.0, 0, 10, 0.01) == pytest.approx(0.1)
    assert lr_factor(0.0, 10, 10, 0.01) == pytest.approx(1.0)
    assert lr_factor(0.5, 50, 10, 0.01) == pytest.approx(0.505)
    assert lr_factor(1.0, 100, 10, 0.01) == pytest.approx(0.01)
    assert run_progress(50, 100, 30.0, 0.0) == pytest.approx(0.5)
    assert run_progress(50, 100, 30.0, 40.0) == pytest.approx(0.75)  # the time budget runs out first
    imgs, t = collate(
        [
            (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.tensor([[0, 1, 0, 0, 4, 4.0]])),
            (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.tensor([[0, 2, 1, 1, 5, 5.0], [0, 0, 2, 2, 3, 3.0]])),
        ]
    )
    assert imgs.shape == (2, 3, 8, 8) and t[:, 0].tolist() == [0, 1, 1]


def test_config_errors():
    with pytest.raises(ConfigError, match="required"):
        train(LeyoloTrainConfig())
    with pytest.raises(ConfigError):
        from_dict(LeyoloTrainConfig, {"size": "xl"})


class _RunsCodeWhenUnpickled:
    """Stands for a hostile payload: unpickling it would call ``os.system``."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unpickled",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    bad = tmp_path / "last.pt"
    torch.save({"ema": {}, "model_args": {}, "payload": _RunsCodeWhenUnpickled()}, bad)
    with pytest.raises(ModelError, match="refused, it would import"):
        load_checkpoint(bad)
