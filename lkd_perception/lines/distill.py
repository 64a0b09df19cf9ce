"""Distillation of the light LSDNet (stride 2) from the Wireframe LSDNet on real photographs.

Why: the Wireframe LSDNet knows real images but costs 3-4x our light network per frame; our light
network was trained on simulator frames only and misses real lines. Here the light network (the
student) learns the teacher's maps on unlabelled photographs (:mod:`.photo_corpus`), mixed with
simulator frames and their exact labels so it keeps what it knew.

Targets are made as at run time, so the student learns what it will be asked: a photograph is cut
into a frame of the student's input aspect; the teacher sees that frame resized to its fixed
288x288 input (as :class:`~lkd_perception.lines.runtime.LineDetector` feeds it), the student
the same frame at its own input size. The teacher's maps are then resampled onto the student's
map grid (1/stride of its input; :func:`resample_teacher`): heat by area averaging, direction as
the heat-weighted doubled-angle vector (cos 2θ, sin 2θ) averaged and renormalised, after moving
θ from the teacher's pixel grid to the student's (the teacher's square input squashes a 4:3 frame,
which changes every direction but the axes). Frames are made once (:func:`make_teacher_maps`,
cached) and training cuts random crops from them with flips and photometric changes.

Loss on photographs (:func:`distill_loss`): heat by the Bernoulli KL divergence to the teacher's
heat, weighted ``1 + pos_weight * heat`` (zero when the student gives the teacher's heat, unlike
BCE against a soft target); direction by the squared error of (cos 2θ, sin 2θ), weighted by the
teacher's heat, so 0 and 180 degrees agree and the direction counts only where there is a line.
Simulator crops use :func:`~lkd_perception.lines.train.line_loss` on their exact segments.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.lines.lsdnet import LSDNet
from lkd_perception.lines.runtime import resize_for_network
from lkd_perception.lines.synthetic import augment
from lkd_perception.lines.train import ImageSource, line_loss, make_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherMaps:
    """Frames at the student's input size and the teacher's maps on the student's map grid.

    ``rgb`` (N,H,W,3) uint8; ``heat`` (N,H/s,W/s) uint8 = heat*255; ``theta`` (N,H/s,W/s) uint8 =
    direction θ/π*256 (x right, y down; 0.7 degree steps). uint8 keeps a thousand frames in memory.
    """

    rgb: np.ndarray
    heat: np.ndarray
    theta: np.ndarray

    def __len__(self) -> int:
        return len(self.rgb)


def resample_teacher(heat: np.ndarray, theta: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher maps (heat in [0,1], θ in radians) covering a frame -> the same frame's maps on a
    ``width`` x ``height`` grid (pixel centres aligned as :func:`cv2.resize` aligns them).

    Direction: (cos θ, sin θ) in teacher map pixels becomes (cos θ * sx, sin θ * sy) in the
    target's, where sx, sy are target pixels per teacher pixel; then the heat-weighted doubled
    angle is area-averaged, so a direction is averaged with its 180-degree twin correctly."""
    th, tw = heat.shape
    sx, sy = width / tw, height / th
    direction = np.arctan2(np.sin(theta) * sy, np.cos(theta) * sx)
    weighted = np.stack([heat * np.cos(2 * direction), heat * np.sin(2 * direction)], -1).astype(np.float32)
    interp = cv2.INTER_AREA if sx <= 1 and sy <= 1 else cv2.INTER_LINEAR
    out_heat = cv2.resize(heat.astype(np.float32), (width, height), interpolation=interp)
    vec = cv2.resize(weighted, (width, height), interpolation=interp)
    out_theta = np.mod(0.5 * np.arctan2(vec[..., 1], vec[..., 0]), np.pi)
    return np.clip(out_heat, 0.0, 1.0), out_theta.astype(np.float32)


def make_teacher_maps(
    teacher_maps: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    photos: Sequence[np.ndarray],
    count: int,
    width: int,
    height: int,
    stride: int,
    rng: np.random.Generator,
    min_scale: float = 0.45,
) -> TeacherMaps:
    """``count`` frames cut from ``photos`` (uint8 RGB): each a random crop of the student input's
    aspect (side 45-100 % of the largest that fits), mirrored half the time, resized to ``width`` x
    ``height``; labelled by ``teacher_maps(frame) -> (heat, θ)`` (e.g.
    ``LineDetector.heat_and_angle`` of the teacher) resampled to the student's map grid."""
    if not photos:
        raise InputError("distillation needs at least one photograph")
    if width % (8 * stride) or height % (8 * stride):
        raise InputError(f"student input {width}x{height} must be a multiple of {8 * stride}")
    aspect = width / height
    rgbs, heats, thetas = [], [], []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        ph, pw = photo.shape[:2]
        ch_max = min(ph, pw / aspect)
        ch = ch_max * rng.uniform(min_scale, 1.0)
        cw = ch * aspect
        y0 = rng.uniform(0, ph - ch)
        x0 = rng.uniform(0, pw - cw)
        frame = photo[int(y0):int(y0 + ch), int(x0):int(x0 + cw)]
        if rng.random() < 0.5:
            frame = frame[:, ::-1]
        frame = np.ascontiguousarray(frame)
        heat_t, theta_t = teacher_maps(frame)
        heat, theta = resample_teacher(heat_t, theta_t, width // stride, height // stride)
        rgbs.append(resize_for_network(frame, width, height))
        heats.append(np.round(heat * 255).astype(np.uint8))
        thetas.append((np.round(theta / np.pi * 256) % 256).astype(np.uint8))
    return TeacherMaps(np.stack(rgbs), np.stack(heats), np.stack(thetas))


def save_teacher_maps(maps: TeacherMaps, path: str | Path, meta: dict) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, rgb=maps.rgb, heat=maps.heat, theta=maps.theta, meta=json.dumps(meta))


def load_teacher_maps(path: str | Path) -> tuple[TeacherMaps, dict]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"teacher map cache not found: {p}")
    data = np.load(p)
    return TeacherMaps(data["rgb"], data["heat"], data["theta"]), json.loads(str(data["meta"]))


def distill_loss(
    out: torch.Tensor,
    heat: torch.Tensor,
    cos2: torch.Tensor,
    sin2: torch.Tensor,
    pos_weight: float = 4.0,
    angle_weight: float = 1.0,
) -> torch.Tensor:
    """Student raw output (N,3,h,w) = (heat logit, cos 2θ, sin 2θ) against the teacher's heat and
    doubled-angle vector (N,h,w): weighted Bernoulli KL + heat-weighted direction error (module
    docstring). Zero exactly when the student reproduces the teacher."""
    z = out[:, 0]
    t = heat
    kl = (torch.xlogy(t, t) - t * F.logsigmoid(z) + torch.xlogy(1 - t, 1 - t) - (1 - t) * F.logsigmoid(-z))
    heat_loss = ((1.0 + pos_weight * t) * kl).mean()
    sq = (out[:, 1] - cos2) ** 2 + (out[:, 2] - sin2) ** 2
    angle_loss = (sq * t).sum() / t.sum().clamp(min=1.0)
    return heat_loss + angle_weight * angle_loss


@dataclass(frozen=True)
class DistillSettings:
    """Options of one distillation run (command line of ``lkd distill lines``)."""

    steps: int = 6000
    batch: int = 12
    crop: int = 160
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pos_weight: float = 4.0
    angle_weight: float = 1.0
    sim_fraction: float = 0.25
    augment_strength: float = 0.5
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100
    snapshot_every: int = 500
    log_every: int = 50


@dataclass(frozen=True)
class PhotoBatch:
    """Student input crops (N,3,H,W) in [0,1] and the teacher's targets (N,h,w)."""

    image: torch.Tensor
    heat: torch.Tensor
    cos2: torch.Tensor
    sin2: torch.Tensor


def photo_batch(maps: TeacherMaps, rng: np.random.Generator, size: int, crop: int, stride: int,
                augment_strength: float) -> PhotoBatch:
    """``size`` random crops (crop x crop input, crop/stride maps) of the teacher-labelled frames,
    flipped at random (the doubled angle's sine changes sign under a flip) and photometrically
    changed (the student only: the teacher saw the clean frame)."""
    imgs, heats, c2s, s2s = [], [], [], []
    m = crop // stride
    for _ in range(size):
        k = int(rng.integers(len(maps)))
        mh, mw = maps.heat.shape[1:]
        if mh < m or mw < m:
            raise InputError(f"crop {crop} is larger than the frames ({mw * stride}x{mh * stride})")
        my, mx = int(rng.integers(mh - m + 1)), int(rng.integers(mw - m + 1))
        rgb = maps.rgb[k, my * stride:my * stride + crop, mx * stride:mx * stride + crop]
        heat = maps.heat[k, my:my + m, mx:mx + m].astype(np.float32) / 255.0
        theta = maps.theta[k, my:my + m, mx:mx + m].astype(np.float32) * np.float32(np.pi / 256)
        c2, s2 = np.cos(2 * theta), np.sin(2 * theta)
        if rng.random() < 0.5:  # mirror left-right: θ -> π - θ
            rgb, heat, c2, s2 = rgb[:, ::-1], heat[:, ::-1], c2[:, ::-1], -s2[:, ::-1]
        if rng.random() < 0.5:  # mirror up-down: θ -> π - θ as well
            rgb, heat, c2, s2 = rgb[::-1], heat[::-1], c2[::-1], -s2[::-1]
        rgb = np.ascontiguousarray(rgb)
        if augment_strength > 0:
            rgb = augment(rgb, rng, augment_strength)
        imgs.append(rgb)
        heats.append(np.ascontiguousarray(heat))
        c2s.append(np.ascontiguousarray(c2))
        s2s.append(np.ascontiguousarray(s2))
    return PhotoBatch(
        image=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0,
        heat=torch.from_numpy(np.stack(heats)),
        cos2=torch.from_numpy(np.stack(c2s)),
        sin2=torch.from_numpy(np.stack(s2s)),
    )


@dataclass(frozen=True)
class DistillLog:
    """One record of the JSON-lines log (losses are means over the steps since the last record)."""

    step: int
    lr: float
    loss: float
    photo_loss: float
    sim_loss: float
    seconds: float


def _lr(settings: DistillSettings, step: int) -> float:
    """Linear warm-up of 100 steps, cosine decay to 2 % (as :func:`~lkd_perception.lines.train.train`)."""
    warm = min(1.0, (step + 1) / 100)
    return settings.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / max(settings.steps, 1))))


def save_state(path: Path, net: LSDNet, opt: torch.optim.Optimizer, step: int, rng: np.random.Generator,
               settings: DistillSettings, seconds: float) -> None:
    """Everything a resumed run needs, in a file ``lkd export lines --checkpoint`` also reads
    (written to a temporary name first, so an interrupted write leaves the previous one)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"widths": list(net.widths), "stride": net.stride, "decoder": net.decoder,
                "state_dict": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                "settings": json.dumps(asdict(settings)), "seconds": seconds}, tmp)
    os.replace(tmp, path)


def distill(
    settings: DistillSettings,
    net: LSDNet,
    maps: TeacherMaps,
    out: str | Path,
    sim_source: ImageSource | None = None,
    progress: bool = True,
    on_snapshot: Callable[[int, LSDNet], dict] | None = None,
) -> Iterator[DistillLog]:
    """Train ``net`` on ``maps`` (+ ``sim_source`` crops for ``sim_fraction`` of each batch), yielding
    a :class:`DistillLog` every ``log_every`` steps, also appended to ``out/log.jsonl``.

    Resumable: ``out/checkpoint.pt`` (every ``checkpoint_every`` steps and at the end) holds the
    network, optimiser, step and random states; if it exists the run continues from it (the
    network passed in is then replaced by the saved one) and gives the same weights as an
    uninterrupted run. Every ``snapshot_every`` steps the network alone goes to
    ``out/snapshots/step_NNNNNN.pt`` and ``on_snapshot(step, net)`` may add fields (validation
    scores) to that step's log record."""
    out = Path(out)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.threads)
    if settings.crop % (8 * net.stride):
        raise InputError(f"crop {settings.crop} must be a multiple of {8 * net.stride}")
    if settings.sim_fraction > 0 and sim_source is None:
        raise InputError("sim_fraction > 0 needs simulator frames")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    state_path = out / "checkpoint.pt"
    start, seconds0 = 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if (list(state["widths"]), state["stride"], state["decoder"]) != (list(net.widths), net.stride, net.decoder):
            raise ModelError(f"{state_path} holds another network ({state['widths']}, stride {state['stride']})")
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        start, seconds0 = int(state["step"]), float(state.get("seconds", 0.0))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.steps, initial=start, desc="distill lines", unit="step", dynamic_ncols=True)
    t0 = time.monotonic() - seconds0
    window: list[tuple[float, float, float]] = []
    with open(out / "log.jsonl", "a") as log_file:
        for step in range(start, settings.steps):
            lr = _lr(settings, step)
            for group in opt.param_groups:
                group["lr"] = lr
            n_sim = int(rng.binomial(settings.batch, settings.sim_fraction)) if settings.sim_fraction > 0 else 0
            n_photo = settings.batch - n_sim
            images, loss_p, loss_s = [], None, None
            pb = photo_batch(maps, rng, n_photo, settings.crop, net.stride,
                             settings.augment_strength) if n_photo else None
            sb = (
                make_batch(rng, n_sim, settings.crop, settings.augment_strength, sim_source, 1.0, net.stride)
                if n_sim
                else None
            )
            images = [b.image for b in (pb, sb) if b is not None]
            net.train()
            opt.zero_grad(set_to_none=True)
            pred = net(torch.cat(images))
            total = pred.new_zeros(())
            if pb is not None:
                loss_p = distill_loss(
                    pred[:n_photo], pb.heat, pb.cos2, pb.sin2, settings.pos_weight, settings.angle_weight
                )
                total = total + loss_p * n_photo / settings.batch
            if sb is not None:
                loss_s = line_loss(pred[n_photo:], sb, settings.pos_weight, settings.angle_weight)
                total = total + loss_s * n_sim / settings.batch
            total.backward()
            opt.step()
            window.append(
                (
                    float(total.detach()),
                    float(loss_p.detach()) if loss_p is not None else math.nan,
                    float(loss_s.detach()) if loss_s is not None else math.nan,
                )
            )
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{window[-1][0]:.4f}")
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                save_state(state_path, net, opt, done, rng, settings, time.monotonic() - t0)
            extra: dict = {}
            if done % settings.snapshot_every == 0 or done == settings.steps:
                from lkd_perception.lines.export import save_checkpoint

                save_checkpoint(net, out / "snapshots" / f"step_{done:06d}.pt", {"step": done})
                if on_snapshot is not None:
                    extra = on_snapshot(done, net)
            if done % settings.log_every == 0 or done == settings.steps or extra:
                arr = np.array(window, np.float64)
                entry = DistillLog(
                    done,
                    lr,
                    float(np.nanmean(arr[:, 0])),
                    _nanmean(arr[:, 1]),
                    _nanmean(arr[:, 2]),
                    round(time.monotonic() - t0, 1),
                )
                log_file.write(json.dumps(asdict(entry) | extra) + "\n")
                log_file.flush()
                window = []
                yield entry
    if bar is not None:
        bar.close()


def _nanmean(a: np.ndarray) -> float:
    """Mean of the finite values (NaN when none: e.g. no simulator crop since the last record)."""
    finite = a[np.isfinite(a)]
    return float(finite.mean()) if finite.size else math.nan


def net_from_onnx(path: str | Path) -> LSDNet:
    """Our own LSDNet export back as a torch network: the weights are the graph's initialisers
    (named ``net.<parameter>`` by :func:`~lkd_perception.lines.export.export_onnx`), the
    architecture is in its metadata. Lets distillation start from the shipped light model."""
    import onnx
    from onnx import numpy_helper

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"line model not found: {p}")
    model = onnx.load(str(p))
    meta = {m.key: m.value for m in model.metadata_props}
    if meta.get("model") != "lsdnet" or "widths" not in meta or meta.get("precision") == "int8":
        raise ModelError(f"{p} is not an FP32 LSDNet export of ours (metadata {meta})")
    net = LSDNet(tuple(int(w) for w in meta["widths"].split(",")), int(meta["output_stride"]), meta["decoder"])
    weights = {
        i.name[4:]: torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in model.graph.initializer
        if i.name.startswith("net.")
    }
    missing = set(net.state_dict()) - set(weights)
    if missing:
        raise ModelError(f"{p}: weights missing from the graph: {sorted(missing)[:5]}")
    net.load_state_dict({k: weights[k] for k in net.state_dict()})
    return net


def snapshot_validator(gt_path: str | Path, width: int, height: int,
                       tmp: str | Path) -> Callable[[int, LSDNet], dict]:
    """``on_snapshot`` for :func:`distill`: scores a snapshot on labelled photographs through the
    run-time detector and grouping, exported as it will ship."""
    from dataclasses import replace

    from lkd_perception.lines.bench import evaluate_detector
    from lkd_perception.lines.config import LineConfig
    from lkd_perception.lines.export import export_onnx
    from lkd_perception.lines.runtime import LineDetector
    from lkd_perception.lines.sim_source import labelled_images

    images = labelled_images(gt_path)

    def score(step: int, net: LSDNet) -> dict:
        # scored as it will be exported: without the endpoint refinement, which is calibrated to our
        # simulator targets; the teacher's heat (and so the student's) runs past the ends
        path = export_onnx(net.eval(), Path(tmp) / "val_student.onnx", width, height, {"endpoint_refinement": "none"})
        det = LineDetector(replace(LineConfig(), model_path=str(path), input_width=width, input_height=height))
        m = evaluate_detector(det, images)
        log.info("step %d validation sAP10 %.1f F^H %.1f", step, m.sap10, m.f_h)
        return {"val_sap10": round(m.sap10, 2), "val_f_h": round(m.f_h, 2)}

    return score
