"""The CLoCKDistill ablation for DEIMv2: the student fine-tuned alone vs with CLoCKDistill from a
fine-tuned teacher, same data, steps, batches and augmentation, over several seeds, scored on
held-out frames with faster-coco-eval; plus what fine-tuning costs on real photographs for the
COCO classes the new classes keep (agreement with the official model).

Every arm is a resumable run folder under ``out_dir`` (``teacher``, ``plain_s<seed>``,
``clock_s<seed>``); running the ablation again continues what is unfinished and re-scores what is
done, so a long CPU run can be stopped at any time.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lkd_perception.common.config import to_dict
from lkd_perception.detection.clockdistill import ClockWeights, distill
from lkd_perception.detection.deimv2_model import DEIMv2, postprocess
from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig, fine_tune, load_init, parse_aliases
from lkd_perception.detection.preprocess import deimv2_resize, to_tensor


def _stats(values: list[float]) -> dict[str, Any]:
    return {"values": values, "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


@torch.no_grad()
def _detect(model: DEIMv2, image: np.ndarray, threshold: float) -> list[tuple[int, np.ndarray, float]]:
    square, geom = deimv2_resize(image, model.spec.input_size)
    logits, boxes = model.eval()(torch.from_numpy(to_tensor(square)))
    labels, xyxy, scores = postprocess(logits, boxes, torch.tensor([[geom.width, geom.height]]), 100)
    return [(int(lab), b.numpy(), float(s)) for lab, b, s in zip(labels[0], xyxy[0], scores[0]) if s >= threshold]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


def coco_agreement(model: DEIMv2, names: Sequence[str], official: DEIMv2, official_names: Sequence[str],
                   images: Sequence[np.ndarray], aliases: dict[str, str], threshold: float = 0.5) -> dict[str, Any]:
    """On real photographs, for the model's classes that are COCO classes (by name or alias): the
    share of the official model's detections (>= threshold) the model also makes (same class,
    IoU >= 0.5: recall of agreement) and the share of the model's detections the official model
    makes (precision of agreement)."""
    kept = {i: official_names.index(aliases.get(n, n)) for i, n in enumerate(names)
            if aliases.get(n, n) in official_names}
    back = {c: i for i, c in kept.items()}
    n_off = n_ours = hit_off = hit_ours = 0
    for img in images:
        off = [(back[c], b) for c, b, _ in _detect(official, img, threshold) if c in back]
        ours = [(c, b) for c, b, _ in _detect(model, img, threshold) if c in kept]
        n_off, n_ours = n_off + len(off), n_ours + len(ours)
        hit_off += sum(any(c == d and _iou(b, e) >= 0.5 for d, e in ours) for c, b in off)
        hit_ours += sum(any(c == d and _iou(b, e) >= 0.5 for d, e in off) for c, b in ours)
    return {"classes": {names[i]: official_names[c] for i, c in kept.items()}, "official_detections": n_off,
            "model_detections": n_ours, "official_found_by_model": hit_off / n_off if n_off else None,
            "model_confirmed_by_official": hit_ours / n_ours if n_ours else None}


def run_ablation(teacher_init: str | Path, student_init: str | Path, data: str | Path, val: str | Path,
                 out_dir: str | Path, cfg: DEIMv2TrainConfig, teacher_steps: int, seeds: Sequence[int],
                 weights: ClockWeights = ClockWeights(), photos: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """Teacher fine-tuning, then per seed the plain and the distilled student; the summary with
    mean and spread of val mAP50-95 per arm, the gain, and the real-photograph agreement."""
    out = Path(out_dir)
    teacher = fine_tune(teacher_init, data, out / "teacher", replace(cfg, steps=teacher_steps), val)
    arms: dict[str, dict[int, Any]] = {"plain": {}, "clock": {}}
    for s in seeds:
        c = replace(cfg, seed=int(s))
        arms["plain"][s] = fine_tune(student_init, data, out / f"plain_s{s}", c, val)
        arms["clock"][s] = distill(
            out / "teacher" / "model.pt", student_init, data, out / f"clock_s{s}", c, weights, val
        )
    maps = {k: [v[s]["val"]["mAP50-95"] for s in seeds if "val" in v[s]] for k, v in arms.items()}
    summary: dict[str, Any] = {
        "config": to_dict(cfg),
        "teacher_steps": teacher_steps,
        "weights": to_dict(weights),
        "seeds": list(seeds),
        "teacher_val": teacher.get("val"),
        "plain": _stats(maps["plain"]),
        "clock": _stats(maps["clock"]),
        "per_seed": {k: {str(s): v[s].get("val") for s in seeds} for k, v in arms.items()},
    }
    if maps["plain"] and maps["clock"]:
        summary["gain_mAP50-95"] = summary["clock"]["mean"] - summary["plain"]["mean"]
    if photos:
        from lkd_perception.detection.deimv2_import import load_deimv2
        from lkd_perception.detection.deimv2_train import prepare_student
        from lkd_perception.detection.preprocess import deimv2_resize
        from lkd_perception.detection.train_data import load_detection_data

        official, off_names = load_init(student_init)
        aliases = parse_aliases(cfg.aliases)
        one = load_detection_data(val, cfg.input_size, deimv2_resize, max_frames=1)
        start, _ = prepare_student(student_init, one, cfg)
        names = list(one.class_names)
        agree = {"before (student start)": coco_agreement(start, names, official, off_names, photos, aliases)}
        for s in seeds:
            for arm in ("plain", "clock"):
                model, names, _ = load_deimv2(out / f"{arm}_s{s}" / "model.pt")
                agree[f"{arm}_s{s}"] = coco_agreement(model, names, official, off_names, photos, aliases)
        summary["real_photo_agreement"] = agree
    (out / "ablation.json").write_text(json.dumps(summary, indent=2))
    return summary
