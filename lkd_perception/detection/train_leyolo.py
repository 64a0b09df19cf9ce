"""LeYOLO training: the Ultralytics-style recipe on a COCO-format dataset.

Warm-up then cosine learning rate, EMA weights (which are validated, checkpointed and exported),
AMP on CUDA, checkpoints that resume exactly (model, EMA, optimiser, scaler, epoch), and data
parallel training with ``torchrun`` (one process per GPU, or gloo on CPU) when WORLD_SIZE > 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lkd_perception.common.checkpoint_file import load_checkpoint_file
from lkd_perception.common.config import from_dict, to_dict
from lkd_perception.common.errors import ConfigError, InputError, ModelError
from lkd_perception.detection.augment import AugmentSettings, prepare_sample
from lkd_perception.detection.config import LeyoloTrainConfig
from lkd_perception.detection.ema import ModelEMA
from lkd_perception.detection.leyolo import LeYOLO
from lkd_perception.detection.losses import DetectionLoss
from lkd_perception.detection.postprocess import decode_yolo, detections_to_coco
from lkd_perception.detection.preprocess import letterbox
from lkd_perception.io.coco import CocoSet, load_coco
from lkd_perception.io.formats import read_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the weights went and how the run ended."""

    last_checkpoint: str
    best_checkpoint: str
    epochs_run: int
    best_map50_95: float
    final_loss: float
    seconds: float


class LeyoloDataset(Dataset):
    """Augmented letterboxed samples; randomness comes from a per-(epoch, index) generator so
    runs are repeatable regardless of worker count."""

    def __init__(self, coco: CocoSet, img_size: int, augment: AugmentSettings, seed: int) -> None:
        self.coco, self.size, self.augment, self.seed = coco, img_size, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.coco.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        im = self.coco.images[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img, boxes, classes = prepare_sample(read_rgb(im.path), im.boxes_xyxy, im.classes, self.size, self.augment, rng)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        t = torch.cat(
            (torch.zeros(len(classes), 1), torch.from_numpy(classes).float()[:, None], torch.from_numpy(boxes)), 1
        )
        return x, t


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; targets become [K, 6] rows (image index in batch, class, x1, y1, x2, y2)."""
    imgs = torch.stack([b[0] for b in batch])
    targets = []
    for i, (_, t) in enumerate(batch):
        t = t.clone()
        t[:, 0] = i
        targets.append(t)
    return imgs, torch.cat(targets) if targets else torch.zeros(0, 6)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: decaying BN scales and biases hurts small nets."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear)):
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(progress: float, step: int, warmup_steps: int, lrf: float) -> float:
    """Linear warm-up over the first ``warmup_steps`` steps, then cosine from 1 down to ``lrf``
    as ``progress`` (fraction of the run done) goes from 0 to 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def run_progress(step: int, total_steps: int, elapsed_s: float, time_limit_s: float) -> float:
    """Fraction of the run done: by steps, or by wall time when a time budget ends it sooner.

    A time budget makes the cosine schedule finish on time on a machine of unknown (or shared)
    speed, instead of being cut off at a high learning rate.
    """
    by_steps = step / max(1, total_steps)
    return max(by_steps, elapsed_s / time_limit_s) if time_limit_s > 0 else by_steps


@torch.no_grad()
def predict_coco(
    model: nn.Module,
    coco: CocoSet,
    img_size: int,
    max_images: int = 0,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
) -> list[dict[str, Any]]:
    """Predictions of a PyTorch LeYOLO (eval mode) on a COCO set, in the COCO results format."""
    model.eval()
    device = next(model.parameters()).device
    images = coco.images[:max_images] if max_images else coco.images
    results: list[dict[str, Any]] = []
    for im in images:
        square, geom = letterbox(read_rgb(im.path), img_size)
        x = torch.from_numpy(square.transpose(2, 0, 1).copy()).float().div(255).unsqueeze(0).to(device)
        out = model(x)[0].float().cpu().numpy()
        det = decode_yolo(out, geom, coco.class_names, conf, iou, max_det)
        results.extend(detections_to_coco(det, im.image_id, coco.category_ids))
    return results


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _device(cfg: LeyoloTrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _all_ranks_agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step under torchrun)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint written by :func:`train`.

    Read with ``weights_only=True``: a checkpoint is data (tensors, numbers, strings, lists,
    dicts), so a file that would run code when unpickled is refused, not executed.
    """
    p = Path(path)
    ckpt = load_checkpoint_file(p, "LeYOLO training checkpoint")
    if not isinstance(ckpt, dict) or "ema" not in ckpt or "model_args" not in ckpt:
        raise ModelError(f"{p}: not a LeYOLO training checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> LeYOLO:
    """The EMA weights of a checkpoint as an eval-mode LeYOLO."""
    model = LeYOLO(**ckpt["model_args"])
    model.load_state_dict(ckpt["ema"])
    return model.eval()


def train(cfg: LeyoloTrainConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train (or resume) LeYOLO; ``progress`` receives one dict per epoch (rank 0 only)."""
    from lkd_perception.eval.detection import evaluate_detections

    if not cfg.data:
        raise ConfigError("train: 'data' (a COCO annotations.json) is required")
    if cfg.img_size % 32:
        raise ConfigError(f"img_size must be a multiple of 32, got {cfg.img_size}")
    if cfg.resume and cfg.weights:
        raise ConfigError("give either resume (continue a run) or weights (start a new run from weights), not both")
    rank, local_rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg, local_rank)
    torch.manual_seed(cfg.seed + rank)
    train_set = load_coco(cfg.data)
    if not train_set.images:
        raise InputError(f"{cfg.data}: no images")
    val_set = load_coco(cfg.val_data) if cfg.val_data else None
    if val_set is not None and val_set.class_names != train_set.class_names:
        raise InputError(f"held-out classes {val_set.class_names} differ from training classes {train_set.class_names}")
    nc = len(train_set.class_names)
    model_args = {"size": cfg.size, "nc": nc}
    # channels-last is ~20 % faster for the depthwise-heavy network on CPU (oneDNN) and on GPU
    model = LeYOLO(**model_args).to(device, memory_format=torch.channels_last)
    if cfg.weights:
        init = load_checkpoint(cfg.weights)
        if init["model_args"] != model_args:
            raise ConfigError(f"weights: checkpoint is {init['model_args']}, this run is {model_args}")
        model.load_state_dict(init["ema"])
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr0, momentum=cfg.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr0, betas=(cfg.momentum, 0.999))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best = 0, -1.0
    out_dir = Path(cfg.out_dir)
    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume)
        if ckpt["model_args"] != model_args:
            raise ConfigError(f"resume: checkpoint is {ckpt['model_args']}, this run is {model_args}")
        model.load_state_dict(ckpt["model"])
        ema.ema.load_state_dict(ckpt["ema"])
        ema.updates = ckpt["ema_updates"]
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best_map50_95"]
    ema.ema.to(device)

    dataset = LeyoloDataset(
        train_set,
        cfg.img_size,
        AugmentSettings(cfg.hsv_h, cfg.hsv_s, cfg.hsv_v, cfg.fliplr, cfg.scale, cfg.translate),
        cfg.seed,
    )
    sampler = None
    train_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
        train_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        num_workers=cfg.workers,
        collate_fn=collate,
        drop_last=len(dataset) >= cfg.batch * world,
        persistent_workers=cfg.workers > 0,
    )
    criterion = DetectionLoss(nc, model.strides, model.reg_max, cfg.box_gain, cfg.cls_gain, cfg.dfl_gain)
    steps_per_epoch = max(1, len(loader))
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    base_lrs = [g["lr"] for g in opt.param_groups]
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    t0 = time.perf_counter()
    last_loss = float("nan")
    epoch = start_epoch - 1
    time_limit_s = cfg.time_limit_min * 60.0
    out_of_time = False
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        dataset.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        sums = np.zeros(4)
        i = -1
        for i, (imgs, targets) in enumerate(loader):
            step = epoch * steps_per_epoch + i
            done = run_progress(step, total_steps, time.perf_counter() - t0, time_limit_s)
            if time_limit_s > 0 and _all_ranks_agree(done >= 1.0, world, device):
                out_of_time = True
                break
            f = lr_factor(done, step, warmup, cfg.lrf)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            x = imgs.to(device, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=use_amp):
                parts = criterion(train_model(x), targets.to(device))
            opt.zero_grad(set_to_none=True)
            scaler.scale(parts.total).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(opt)
            scaler.update()
            ema.update(model)
            sums += (float(parts.total.detach()) / x.shape[0], parts.box, parts.cls, parts.dfl)
        n = max(1, i + 1 - int(out_of_time))
        last_loss = float(sums[0] / n)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": last_loss,
            "box": float(sums[1] / n),
            "cls": float(sums[2] / n),
            "dfl": float(sums[3] / n),
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        if rank != 0:  # only rank 0 validates, saves and reports
            if out_of_time:
                break
            continue
        is_last = epoch == cfg.epochs - 1 or out_of_time
        if val_set is not None and ((epoch + 1) % cfg.val_every == 0 or is_last):
            preds = predict_coco(ema.ema, val_set, cfg.img_size, cfg.val_max_images)
            metrics = evaluate_detections(val_set.head(cfg.val_max_images).ground_truth(), preds)
            record.update({"val_mAP50-95": metrics.map50_95, "val_mAP50": metrics.map50})
            improved = metrics.map50_95 > best
            best = max(best, metrics.map50_95)
        else:
            improved = val_set is None
        ckpt = {
            "model": model.state_dict(),
            "ema": ema.ema.state_dict(),
            "ema_updates": ema.updates,
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best_map50_95": best,
            "model_args": model_args,
            "class_names": list(train_set.class_names),
            "category_ids": list(train_set.category_ids),
            "img_size": cfg.img_size,
            "config": to_dict(cfg),
        }
        torch.save(ckpt, out_dir / "last.pt")
        if improved:
            torch.save(ckpt, out_dir / "best.pt")
        with (out_dir / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if progress is not None:
            progress(record)
        if out_of_time:
            break
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return TrainResult(
        str(out_dir / "last.pt"),
        str(out_dir / "best.pt"),
        epoch + 1 - start_epoch,
        best,
        last_loss,
        time.perf_counter() - t0,
    )


def config_from_args(values: dict[str, Any]) -> LeyoloTrainConfig:
    """Validated config from CLI/YAML values (unknown keys are an error)."""
    return from_dict(LeyoloTrainConfig, values)
