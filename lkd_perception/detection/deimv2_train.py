"""Fine-tuning our DEIMv2 on COCO-format data (the simulator's sets or a user's own), resumable.

Sized for a CPU: a reduced square input (any multiple of 32; the anchors follow the feature
maps), small batches, a fixed number of steps. On a GPU the same loop uses bfloat16 autocast
(``amp``) and, started by ``torchrun``, DistributedDataParallel with the images split by rank.

A model pretrained on COCO keeps what it knows of the classes the new data shares with it: the
new class heads start from the rows of the COCO classes of the same name (or alias, e.g.
pedestrian -> person); other classes start at the prior probability, as DEIMv2 initialises them.

Resuming is exact: batch ``k`` is drawn from a generator seeded by (seed, k), so a run stopped
after a checkpoint and resumed takes the same batches and reaches the same weights.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.config import to_dict
from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.detection.deimv2_import import save_deimv2
from lkd_perception.detection.deimv2_loss import DEIMLossWeights, deim_loss
from lkd_perception.detection.deimv2_model import DEIMv2, postprocess
from lkd_perception.detection.matcher import Targets
from lkd_perception.detection.preprocess import deimv2_resize
from lkd_perception.detection.train_data import DetectionData, batch, coco_result, image_batches, load_detection_data
from lkd_perception.eval.detection import evaluate_detections

log = logging.getLogger(__name__)

#: our simulator's class names -> the COCO class a pretrained model already knows for them
DEFAULT_ALIASES = "pedestrian=person"


def parse_aliases(text: str) -> dict[str, str]:
    """'new=old,new2=old2' -> {new: old} (the config format of ``aliases``)."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        new, sep, old = item.partition("=")
        if not sep or not new.strip() or not old.strip():
            raise InputError(f"aliases: expected NEW=OLD pairs separated by commas, got {item!r}")
        out[new.strip()] = old.strip()
    return out


@dataclass
class DEIMv2TrainConfig:
    """Fine-tuning settings (YAML under ``deimv2_train`` or ``--set key=value``)."""

    steps: int = 300
    batch_size: int = 4
    input_size: int = 256  # reduced from the published 320/416 so a CPU step stays near a second
    lr: float = 2e-4
    backbone_lr_scale: float = 0.5  # the published configs give the backbone half the rate
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 0.1  # published clip_max_norm
    flip: bool = True
    seed: int = 0
    checkpoint_every: int = 50
    threads: int = 1
    amp: bool = True  # only where CUDA is: bfloat16 autocast
    max_frames: int = 0
    aliases: str = DEFAULT_ALIASES  # NEW=OLD,...: data classes that start from a differently named COCO class


def adapt_classes(model: DEIMv2, old: tuple[str, ...] | list[str], new: tuple[str, ...] | list[str],
                  aliases: dict[str, str]) -> tuple[DEIMv2, dict[str, str | None]]:
    """``model`` with class heads for ``new``: rows of the same-named (or aliased) old classes are
    kept, others start at weight 0 and the prior bias (p = 0.01). Returns the map new -> old used."""
    if list(old) == list(new):
        return model, {n: n for n in new}
    index = {n: i for i, n in enumerate(old)}
    src = [index.get(n, index.get(aliases.get(n, ""), None)) for n in new]
    prior = -math.log((1 - 0.01) / 0.01)
    spec = model.spec
    out = DEIMv2(spec, num_classes=len(new))
    state = model.state_dict()
    new_state = out.state_dict()
    for k, v in state.items():
        if v.shape == new_state[k].shape:
            new_state[k] = v.clone()
            continue
        # a class head: weight (C, hidden) or bias (C,)
        rows = torch.zeros_like(new_state[k]) if k.endswith("weight") else torch.full_like(new_state[k], prior)
        for j, s in enumerate(src):
            if s is not None:
                rows[j] = v[s]
        new_state[k] = rows
    out.load_state_dict(new_state)
    return out, {n: (old[s] if s is not None else None) for n, s in zip(new, src)}


def with_input_size(model: DEIMv2, size: int) -> DEIMv2:
    """The same weights with another training / export input size (a multiple of 32)."""
    if size % 32:
        raise InputError(f"input size must be a multiple of 32, got {size}")
    if size == model.spec.input_size:
        return model
    out = DEIMv2(type(model.spec)(**{**model.spec.__dict__, "input_size": size}), model.num_classes)
    out.load_state_dict(model.state_dict())
    return out


StepLoss = Callable[[torch.Tensor, list[Targets]], tuple[torch.Tensor, dict[str, float]]]


def plain_step_loss(model: DEIMv2, w: DEIMLossWeights = DEIMLossWeights()) -> StepLoss:
    """The fine-tuning loss alone (what CLoCKDistill adds its terms to)."""
    def step(images: torch.Tensor, targets: list[Targets]):
        return deim_loss(model.run(images, all_layers=True).decoder, targets, w)
    return step


def _param_groups(trainable: nn.Module, cfg: DEIMv2TrainConfig) -> list[dict[str, Any]]:
    """Backbone at a reduced rate; norms, affines and biases without weight decay (published groups)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in trainable.named_parameters():
        if not p.requires_grad:
            continue
        key = ("backbone" in name, p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [
        {
            "params": ps,
            "lr": cfg.lr * (cfg.backbone_lr_scale if bb else 1.0),
            "weight_decay": 0.0 if nd else cfg.weight_decay,
        }
        for (bb, nd), ps in sorted(groups.items())
    ]


def _lr_factor(step: int, cfg: DEIMv2TrainConfig) -> float:
    """Linear warm-up, flat, then cosine down to 5% over the second half (DEIM's flat-cosine)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    half = cfg.steps // 2
    if step < half:
        return 1.0
    t = (step - half) / max(1, cfg.steps - half)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class TrainResult:
    """Where the model went, how far training got, and the last logged losses."""

    checkpoint: str
    steps_done: int
    resumed_from: int
    last_losses: dict[str, float]


def _distributed() -> tuple[int, int]:
    """(rank, world size): torchrun sets WORLD_SIZE; multi-process training only with CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if not torch.cuda.is_available():
            raise ModelError("multi-process DEIMv2 training (torchrun) needs CUDA; run one process on a CPU")
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return torch.distributed.get_rank(), world
    return 0, 1


def train_loop(
    student: DEIMv2,
    trainable: nn.Module,
    step_loss: StepLoss,
    data: DetectionData,
    cfg: DEIMv2TrainConfig,
    out_dir: str | Path,
    class_names: list[str] | tuple[str, ...],
    resume: bool = True,
    extra: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Optimise ``trainable`` (the student, or the student plus distillation adapters) with
    ``step_loss``; write ``out_dir/last.pt`` every ``checkpoint_every`` steps and at the end and
    ``out_dir/model.pt`` (the student alone) when all ``cfg.steps`` are done. With ``resume`` an
    existing ``last.pt`` is continued. ``stop_after`` ends early (tests of resuming)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _distributed()
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    trainable.to(device).train()
    wrapped: nn.Module = trainable
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(trainable, device_ids=[device.index], find_unused_parameters=True)
    opt = torch.optim.AdamW(_param_groups(trainable, cfg), lr=cfg.lr, betas=(0.9, 0.999))
    base_lrs = [g["lr"] for g in opt.param_groups]
    start, last = 0, {}
    ckpt_path = out / "last.pt"
    if resume and ckpt_path.is_file():
        ck = load_checkpoint_file(ckpt_path, "training checkpoint")
        try:
            trainable.load_state_dict(ck["trainable"])
            opt.load_state_dict(ck["optimizer"])
            start = int(ck["step"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelError(f"{ckpt_path}: not a checkpoint of this training ({exc})") from exc
        log.info("resuming %s at step %d", ckpt_path, start)
    amp = cfg.amp and device.type == "cuda"
    n = len(data.images)
    per_rank = max(1, cfg.batch_size // world)

    def save(step: int) -> None:
        if rank == 0:
            torch.save(
                {
                    "trainable": trainable.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "config": to_dict(cfg),
                },
                ckpt_path,
            )

    step = start
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    while step < end:
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.choice(n, size=cfg.batch_size, replace=n < cfg.batch_size)
        flips = rng.random(cfg.batch_size) < 0.5 if cfg.flip else np.zeros(cfg.batch_size, bool)
        idx, flips = idx[rank * per_rank : (rank + 1) * per_rank], flips[rank * per_rank : (rank + 1) * per_rank]
        images, targets = batch(data, idx, flips)
        images = images.to(device)
        targets = [Targets(t.labels.to(device), t.boxes.to(device)) for t in targets]
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * _lr_factor(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, last = step_loss(images, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if step % 10 == 0 or step == end:
            log.info("step %d/%d loss %.4f %s", step, cfg.steps, float(loss), {k: round(v, 4) for k, v in last.items()})
        if step % cfg.checkpoint_every == 0 or step == end:
            save(step)
    del wrapped
    final = out / "model.pt"
    if step >= cfg.steps and rank == 0:
        save_deimv2(final, student.cpu().eval(), class_names, {"config": to_dict(cfg), **(extra or {})})
    return TrainResult(str(final if step >= cfg.steps else ckpt_path), step, start, last)


@torch.no_grad()
def predict_coco(model: DEIMv2, data: DetectionData, max_dets: int = 100, batch_size: int = 8) -> list[dict[str, Any]]:
    """COCO results of every image: the published post-processing's top ``max_dets`` pairs."""
    model.eval()
    results: list[dict[str, Any]] = []
    for idx, x in image_batches(data, batch_size):
        logits, boxes = model(x)
        labels, xyxy, scores = postprocess(logits, boxes, torch.from_numpy(data.orig_sizes[idx]), max_dets)
        for j, i in enumerate(idx):
            for lab, (x1, y1, x2, y2), sc in zip(labels[j].tolist(), xyxy[j].tolist(), scores[j].tolist()):
                results.append(coco_result(data, i, lab, (x1, y1, x2 - x1, y2 - y1), sc))
    return results


def evaluate_deimv2(model: DEIMv2, data: DetectionData) -> dict[str, Any]:
    """COCO box mAP (faster-coco-eval) of ``model`` on ``data``."""
    return evaluate_detections(data.coco, predict_coco(model, data)).to_dict()


def load_init(path: str | Path) -> tuple[DEIMv2, list[str]]:
    """A starting model: a published ONNX export (imported) or one of our checkpoints."""
    from lkd_perception.detection.coco import COCO_CLASSES
    from lkd_perception.detection.deimv2_import import load_deimv2, model_from_onnx

    if str(path).endswith(".onnx"):
        model, _ = model_from_onnx(path)
        names = (
            list(COCO_CLASSES)
            if model.num_classes == len(COCO_CLASSES)
            else [f"class_{i}" for i in range(model.num_classes)]
        )
        return model, names
    model, names, _ = load_deimv2(path)
    return model, names


def prepare_student(
    init: str | Path, data: DetectionData, cfg: DEIMv2TrainConfig
) -> tuple[DEIMv2, dict[str, str | None]]:
    """The starting model with the data's classes and the training input size."""
    model, names = load_init(init)
    model, class_map = adapt_classes(model, names, data.class_names, parse_aliases(cfg.aliases))
    return with_input_size(model, cfg.input_size), class_map


def fine_tune(
    init: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: DEIMv2TrainConfig,
    val_dir: str | Path | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """``lkd train deimv2``: fine-tune ``init`` on ``data_dir``; evaluate on ``val_dir`` if given."""
    torch.manual_seed(cfg.seed)
    data = load_detection_data(data_dir, cfg.input_size, deimv2_resize, cfg.max_frames)
    model, class_map = prepare_student(init, data, cfg)
    res = train_loop(
        model,
        model,
        plain_step_loss(model),
        data,
        cfg,
        out_dir,
        data.class_names,
        resume,
        extra={"init": Path(init).name, "class_map": class_map},
    )
    summary: dict[str, Any] = {"result": res.__dict__, "class_map": class_map, "config": to_dict(cfg)}
    if val_dir is not None and res.steps_done >= cfg.steps:
        summary["val"] = evaluate_deimv2(model, load_detection_data(val_dir, cfg.input_size, deimv2_resize))
    return summary
