"""The DEIMv2 CLoCKDistill ablation machinery: the real-photograph agreement measure, and one
tiny end-to-end ablation (one step per arm) that writes its summary and resumes instead of
retraining."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from helpers.toy_coco import write_toy_coco

from lkd_perception.common.paths import resolve_model_path
from lkd_perception.detection.clockdistill import ClockWeights
from lkd_perception.detection.deimv2_ablation import coco_agreement, run_ablation
from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig, load_init
from lkd_perception.io.formats import read_rgb

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "detection_real"


@pytest.fixture(scope="module")
def atto():
    torch.set_num_threads(1)
    return load_init(resolve_model_path("models/deimv2_atto_coco.onnx"))


def test_agreement_is_full_with_itself_and_drops_when_a_class_is_lost(atto):
    model, names = atto
    photos = [read_rgb(PHOTOS / n) for n in ("messi5.jpg", "basketball2.png")]
    same = coco_agreement(model, names, model, names, photos, {})
    assert same["official_detections"] >= 2
    assert same["official_found_by_model"] == 1.0 and same["model_confirmed_by_official"] == 1.0
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.decoder.dec_score_head[2].bias[names.index("person")] -= 20.0  # never says person
    lost = coco_agreement(blind, names, model, names, photos, {})
    assert lost["official_found_by_model"] < 1.0


@pytest.mark.slow
def test_tiny_ablation_writes_its_summary_and_resumes(tmp_path):
    data = tmp_path / "toy"
    write_toy_coco(data, frames=2, seed=7)
    cfg = DEIMv2TrainConfig(steps=1, batch_size=2, input_size=160, threads=1, warmup_steps=1)
    args = (resolve_model_path("models/deimv2_atto_coco.onnx"), resolve_model_path("models/deimv2_atto_coco.onnx"),
            data, data, tmp_path / "abl", cfg, 1, [0], ClockWeights())
    summary = run_ablation(*args)
    assert set(summary["per_seed"]) == {"plain", "clock"} and "gain_mAP50-95" in summary
    assert json.loads((tmp_path / "abl" / "ablation.json").read_text())["seeds"] == [0]
    stamp = (tmp_path / "abl" / "clock_s0" / "last.pt").stat().st_mtime_ns
    again = run_ablation(*args)  # finished arms are re-scored, not retrained
    assert (tmp_path / "abl" / "clock_s0" / "last.pt").stat().st_mtime_ns == stamp
    assert again["clock"]["values"] == summary["clock"]["values"]
