"""``lkd train detr``, ``lkd distill detr``, ``lkd export detr``, ``lkd ablate detr``.

Settings come from :class:`lkd_perception.detection.train_detr.DetrTrainConfig`: an optional YAML
file (flat, or under a ``detr_train`` key) overridden by ``--set key=value`` pairs.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from lkd_perception.commands import Command, emit_json, parse_sets

_log = logging.getLogger(__name__)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="COCO folder: annotations.json + images/")
    p.add_argument("--val", help="held-out COCO folder to evaluate on after training")
    p.add_argument("--config", help="YAML with DetrTrainConfig keys (flat or under 'detr_train')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--json-out", help="write the summary JSON here (default stdout)")


def _config(args: argparse.Namespace, **forced: Any):
    from lkd_perception.common.config import from_dict, load_yaml
    from lkd_perception.detection.train_detr import DetrTrainConfig

    values: dict[str, Any] = {}
    if args.config:
        raw = load_yaml(args.config)
        values.update(raw.get("detr_train", raw))
    values.update(parse_sets(args.set))
    values.update(forced)
    return from_dict(DetrTrainConfig, values)


def _train(args: argparse.Namespace, teacher_path: str | None) -> int:
    from lkd_perception.detection.train_detr import train_run

    forced = {"arch": args.arch} if getattr(args, "arch", None) else {}
    emit_json(train_run(_config(args, **forced), args.data, args.out, args.val, teacher_path), args.json_out)
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--arch", choices=("teacher", "student"), help="model size (overrides the config)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")


def _add_distill(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--teacher", required=True, help="trained teacher checkpoint (from 'lkd train detr')")
    p.add_argument("--out", required=True, help="student checkpoint to write (.pt)")


def _run_train(args: argparse.Namespace) -> int:
    return _train(args, None)


def _run_distill(args: argparse.Namespace) -> int:
    args.arch = "student"
    return _train(args, args.teacher)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="DETR checkpoint (.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--json-out", help="write the parity report JSON here (default stdout)")


def _run_export(args: argparse.Namespace) -> int:
    from lkd_perception.detection.detr_export import check_parity, export_detr
    from lkd_perception.detection.train_detr import load_checkpoint

    ck = load_checkpoint(args.ckpt)
    path = export_detr(ck.model, args.out, ck.input_size, ck.class_names)
    rep = check_parity(ck.model, path, ck.input_size)
    emit_json({"onnx": str(path), "bytes": path.stat().st_size, "input_size": ck.input_size,
               "class_names": ck.class_names, "max_abs_diff_boxes": rep.max_abs_boxes,
               "max_abs_diff_scores": rep.max_abs_scores, "parity_samples": rep.samples}, args.json_out)
    return 0


def _add_ablate(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--teacher", required=True, help="trained teacher checkpoint")
    p.add_argument("--out-dir", required=True, help="folder for the two student checkpoints")


def _run_ablate(args: argparse.Namespace) -> int:
    """Student alone vs student + CLoCKDistill: same data, schedule and seed; mAP on --val."""
    from lkd_perception.common.errors import ConfigError
    from lkd_perception.detection.train_detr import ablate_clockdistill

    if not args.val:
        raise ConfigError("lkd ablate detr needs --val (held-out frames)")
    emit_json(ablate_clockdistill(_config(args, arch="student"), args.data, args.val, args.teacher, args.out_dir),
              args.json_out)
    return 0


COMMANDS = [
    Command(
        ("train", "detr"),
        "train a DETR teacher or student on a COCO folder",
        _add_train,
        _run_train,
        example="lkd train detr --data data/train --out runs/detr",
    ),
    Command(
        ("distill", "detr"),
        "train the DETR student with CLoCKDistill from a trained teacher",
        _add_distill,
        _run_distill,
        example="lkd distill detr --data data/train --teacher runs/detr_teacher/last.pt --out runs/detr_student",
    ),
    Command(
        ("export", "detr"),
        "export a DETR checkpoint to ONNX (opset 17) and check it against PyTorch",
        _add_export,
        _run_export,
        example="lkd export detr --ckpt runs/detr_student/last.pt --out models/detr_mine.onnx",
    ),
    Command(
        ("ablate", "detr"),
        "student alone vs student + CLoCKDistill on held-out frames",
        _add_ablate,
        _run_ablate,
        example="lkd ablate detr --data data --teacher runs/detr_teacher/last.pt --out-dir runs/ablation",
    ),
]
