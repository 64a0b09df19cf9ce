"""Line distillation: the loss (zero for a student that reproduces the teacher, the angle wrap), the
teacher maps on the student's grid, and `lkd distill lines` on tiny data (loss goes down, the
checkpoint resumes to the same weights as an uninterrupted run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lkd_perception.cli import main
from lkd_perception.common.errors import InputError
from lkd_perception.lines.distill import (
    DistillSettings,
    distill,
    distill_loss,
    load_teacher_maps,
    make_teacher_maps,
    net_from_onnx,
    resample_teacher,
)
from lkd_perception.lines.export import load_checkpoint
from lkd_perception.lines.lsdnet import LSDNet
from lkd_perception.lines.photo_corpus import build_corpus
from lkd_perception.lines.synthetic import render_scene

ROOT = Path(__file__).resolve().parents[2]


def _teacher(n: int = 2, h: int = 6, w: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    heat = torch.from_numpy(rng.uniform(0.02, 0.98, (n, h, w)).astype(np.float32))
    theta = torch.from_numpy(rng.uniform(0, math.pi, (n, h, w)).astype(np.float32))
    return heat, theta


def _student(heat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Raw student output that gives exactly ``heat`` and direction ``theta``."""
    return torch.stack([torch.logit(heat.double()).float(), torch.cos(2 * theta), torch.sin(2 * theta)], 1)


def _loss(out, heat, theta):
    return float(distill_loss(out, heat, torch.cos(2 * theta), torch.sin(2 * theta)))


def test_loss_is_zero_for_a_student_that_reproduces_the_teacher_and_positive_otherwise():
    heat, theta = _teacher()
    assert abs(_loss(_student(heat, theta), heat, theta)) < 1e-5
    # the same lines with directions 180 degrees apart are the same lines: still zero
    assert abs(_loss(_student(heat, theta + math.pi), heat, theta)) < 1e-5
    assert abs(_loss(_student(heat, theta - math.pi), heat, theta)) < 1e-5
    # other heat, other direction: positive
    assert _loss(_student(heat.flip(0), theta), heat, theta) > 0.01
    assert _loss(_student(heat, theta + math.pi / 2), heat, theta) > 1.0
    # the wrap: 179 vs 1 degrees is a 2-degree error, far smaller than 1 vs 45 degrees
    h = torch.full((1, 1, 1), 0.9)
    deg = math.pi / 180
    near = _loss(_student(h, torch.full_like(h, 179 * deg)), h, torch.full_like(h, 1 * deg))
    far = _loss(_student(h, torch.full_like(h, 45 * deg)), h, torch.full_like(h, 1 * deg))
    assert 0 < near < far / 100


def test_teacher_maps_move_to_the_student_grid_with_their_directions():
    # a diagonal line on a 288x288 teacher map of a 4:3 frame: on a 240x176 grid its direction is
    # the image direction (the teacher's square input squashed it), and its heat stays a ridge
    heat = np.zeros((288, 288), np.float32)
    theta = np.zeros((288, 288), np.float32)
    for i in range(288):
        heat[i, max(i - 1, 0):i + 2] = 1.0
    theta[:] = np.pi / 4  # 45 degrees on the teacher's grid
    out_heat, out_theta = resample_teacher(heat, theta, 240, 176)
    assert out_heat.shape == (176, 240) and out_heat.max() > 0.8
    expected = math.atan2(176 / 288, 240 / 288)  # the frame's own diagonal direction
    on = out_heat > 0.5
    assert np.abs(out_theta[on] - expected).max() < 0.02
    # 0 and 180 degrees averaged together stay horizontal (the doubled angle), not 90
    theta[:, :144], theta[:, 144:] = 0.01, np.pi - 0.01
    _, t = resample_teacher(np.ones_like(heat), theta, 144, 144)
    assert np.all(np.minimum(t, np.pi - t) < 0.05)


def test_net_from_onnx_is_the_shipped_light_model(tmp_path):
    net = net_from_onnx(ROOT / "models" / "lsdnet.onnx")
    assert net.stride == 2 and net.widths == (16, 32, 64, 160)
    with pytest.raises(Exception):
        net_from_onnx(ROOT / "models" / "lsdnet_wireframe.onnx")


def _corpus(tmp_path: Path) -> Path:
    """Two synthetic 'photographs' in a corpus folder (the scikit-image layout, no download)."""
    from lkd_perception.lines.photo_corpus import SKIMAGE_PHOTOS

    rng = np.random.default_rng(3)
    sk = tmp_path / "sk"
    for rel in SKIMAGE_PHOTOS:
        (sk / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sk / rel), render_scene(rng, 120, 160).rgb[..., ::-1])
    build_corpus(tmp_path / "photos", skimage_root=sk, skimage_version="test")
    return tmp_path / "photos"


def test_two_steps_lower_the_loss_and_the_checkpoint_resumes(tmp_path):
    photos = _corpus(tmp_path)
    small = ROOT / "models" / "lsdnet.onnx"
    base = ["distill", "lines", "--photos", str(photos), "--init", str(small), "--frames", "3",
            "--frame-size", "96x64", "--crop", "32", "--batch", "2", "--sim-fraction", "0", "--augment", "0",
            "--lr", "3e-3", "--checkpoint-every", "1", "--snapshot-every", "2", "--no-progress", "--threads", "1"]
    out = tmp_path / "run"
    maps_first = None
    assert main([*base, "--out", str(out), "--steps", "2"]) == 0
    maps_first, meta = load_teacher_maps(out / "teacher_maps.npz")
    assert maps_first.rgb.shape == (3, 64, 96, 3) and maps_first.heat.shape == (3, 32, 48)
    assert maps_first.heat.max() > 128  # the teacher found lines in the scenes
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and (out / "snapshots" / "step_000002.pt").is_file()
    # lower loss: the student after two steps against the one before, on the same teacher crops
    from lkd_perception.lines.distill import photo_batch

    batch = photo_batch(maps_first, np.random.default_rng(0), 3, 32, 2, 0.0)
    before, after = net_from_onnx(small).eval(), load_checkpoint(out / "checkpoint.pt").eval()
    with torch.no_grad():
        l0 = float(distill_loss(before(batch.image), batch.heat, batch.cos2, batch.sin2))
        l1 = float(distill_loss(after(batch.image), batch.heat, batch.cos2, batch.sin2))
    assert l1 < l0
    # the command resumes from the checkpoint: steps 3 and 4 only, from the saved weights
    # (with --val: the snapshot at step 4 is scored on labelled photographs as it will be exported)
    val_gt = ROOT / "test" / "fixtures" / "lines_real_val" / "gt.json"
    assert main([*base, "--out", str(out), "--steps", "4", "--val", str(val_gt)]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and all(math.isfinite(r["loss"]) for r in records)
    assert "val_sap10" not in records[0]
    from lkd_perception.lines.distill import snapshot_validator

    again = snapshot_validator(val_gt, 96, 64, tmp_path)(4, load_checkpoint(out / "snapshots" / "step_000004.pt"))
    assert {k: records[1][k] for k in again} == again  # the logged scores are the snapshot's own
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    # the checkpoint exports; the distilled model is marked to skip our endpoint refinement
    onnx_path = tmp_path / "student.onnx"
    assert main(["export", "lines", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(onnx_path),
                 "--input-width", "96", "--input-height", "64", "--endpoint-refinement", "none"]) == 0
    from lkd_perception.lines.config import LineConfig
    from lkd_perception.lines.runtime import LineDetector

    det = LineDetector(LineConfig(model_path=str(onnx_path), input_width=96, input_height=64, threads=1))
    assert det.output_stride == 2 and not det.endpoint_refinement


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(0)
    scenes = [render_scene(rng, 64, 96).rgb for _ in range(2)]
    maps = make_teacher_maps(lambda f: (np.full((36, 36), 0.5, np.float32), np.zeros((36, 36), np.float32)),
                             scenes, 2, 96, 64, 2, rng)
    settings = DistillSettings(steps=4, batch=2, crop=32, sim_fraction=0.0, checkpoint_every=1, snapshot_every=4,
                               log_every=1)

    def net() -> LSDNet:
        torch.manual_seed(1)
        return LSDNet((4, 8, 8, 16), 2, "add")

    for entry in distill(settings, net(), maps, tmp_path / "cut", progress=False):
        if entry.step == 2:
            break  # interrupted after the checkpoint of step 2
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = [e.step for e in distill(settings, net(), maps, tmp_path / "cut", progress=False)]
    assert resumed == [3, 4]
    list(distill(settings, net(), maps, tmp_path / "whole", progress=False))
    a = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError):
        make_teacher_maps(lambda f: (None, None), [], 1, 96, 64, 2, np.random.default_rng(0))
    with pytest.raises(InputError, match="multiple"):
        make_teacher_maps(lambda f: (None, None), [np.zeros((10, 10, 3), np.uint8)], 1, 90, 64, 2,
                          np.random.default_rng(0))
    maps = make_teacher_maps(lambda f: (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)),
                             [np.zeros((64, 96, 3), np.uint8)], 1, 96, 64, 2, np.random.default_rng(0))
    with pytest.raises(InputError, match="simulator"):
        next(distill(DistillSettings(steps=1, sim_fraction=0.5), LSDNet((4, 8, 8, 16), 2, "add"), maps, tmp_path))
