"""``lkd train deimv2``, ``lkd distill deimv2``, ``lkd export deimv2``, ``lkd ablate deimv2``.

Settings come from :class:`lkd_perception.detection.deimv2_train.DEIMv2TrainConfig` (and, for
distillation, :class:`lkd_perception.detection.clockdistill.ClockWeights`): an optional YAML file
(flat, or under ``deimv2_train`` / ``clockdistill``) overridden by ``--set key=value``. Runs are
resumable: started again with the same ``--out`` they continue from ``OUT/last.pt``.
"""

from __future__ import annotations

import argparse
from typing import Any

from lkd_perception.commands import Command, comma_list, emit_json, parse_sets


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="COCO folder (annotations.json + images/) or annotation file")
    p.add_argument("--val", help="held-out COCO folder to evaluate on when training is done")
    p.add_argument("--out", required=True, help="run folder: last.pt (resumable), model.pt (the result)")
    p.add_argument("--config", help="YAML with DEIMv2TrainConfig keys (flat or under 'deimv2_train')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--fresh", action="store_true", help="ignore an existing OUT/last.pt instead of resuming it")
    p.add_argument("--json-out", help="write the summary JSON here (default stdout)")


def _values(args: argparse.Namespace, section: str, fields: set[str]) -> dict[str, Any]:

    from lkd_perception.common.config import load_yaml

    values: dict[str, Any] = {}
    if args.config:
        raw = load_yaml(args.config)
        values.update({k: v for k, v in raw.get(section, raw).items() if k in fields})
    values.update({k: v for k, v in parse_sets(args.set).items() if k in fields})
    return values


def _known(args: argparse.Namespace, *classes) -> None:
    """Every --set key must belong to one of the settings classes (a typo is an error, not ignored)."""
    from dataclasses import fields

    from lkd_perception.common.errors import ConfigError

    names = {f.name for c in classes for f in fields(c)}
    bad = [s.partition("=")[0].strip() for s in args.set if s.partition("=")[0].strip() not in names]
    if bad:
        raise ConfigError(f"unknown setting(s) {bad}; known: {sorted(names)}")


def _train_cfg(args: argparse.Namespace):
    from dataclasses import fields

    from lkd_perception.common.config import from_dict
    from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig

    return from_dict(DEIMv2TrainConfig, _values(args, "deimv2_train", {f.name for f in fields(DEIMv2TrainConfig)}))


def _add_train(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--init", required=True, help="starting weights: a published DEIMv2 ONNX or our checkpoint (.pt)")


def _run_train(args: argparse.Namespace) -> int:
    from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig, fine_tune

    _known(args, DEIMv2TrainConfig)
    from lkd_perception.common.paths import resolve_model_path

    emit_json(
        fine_tune(
            resolve_model_path(args.init), args.data, args.out, _train_cfg(args), args.val, resume=not args.fresh
        ),
        args.json_out,
    )
    return 0


def _add_distill(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument(
        "--teacher", required=True, help="teacher checkpoint (.pt), e.g. Femto fine-tuned on the same classes"
    )
    p.add_argument("--student", required=True, help="student start: a published DEIMv2 ONNX or our checkpoint (.pt)")


def _run_distill(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from lkd_perception.common.config import from_dict
    from lkd_perception.detection.clockdistill import ClockWeights, distill
    from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig

    _known(args, DEIMv2TrainConfig, ClockWeights)
    weights = from_dict(ClockWeights, _values(args, "clockdistill", {f.name for f in fields(ClockWeights)}))
    from lkd_perception.common.paths import resolve_model_path

    emit_json(
        distill(
            args.teacher,
            resolve_model_path(args.student),
            args.data,
            args.out,
            _train_cfg(args),
            weights,
            args.val,
            resume=not args.fresh,
        ),
        args.json_out,
    )
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="our DEIMv2 checkpoint (.pt, e.g. RUN/model.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write (the published DEIMv2 contract)")
    p.add_argument("--input-size", type=int, default=0, help="export size (multiple of 32; default: the checkpoint's)")


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lkd_perception.common.paths import sha256_of
    from lkd_perception.detection.deimv2_export import export_deimv2
    from lkd_perception.detection.deimv2_import import load_deimv2
    from lkd_perception.detection.deimv2_train import with_input_size

    model, names, _ = load_deimv2(args.ckpt)
    if args.input_size:
        model = with_input_size(model, args.input_size)
    out = export_deimv2(model, args.out, names, extra={"trained_checkpoint": Path(args.ckpt).name})
    emit_json(
        {
            "onnx": str(out),
            "sha256": sha256_of(out),
            "variant": model.spec.name,
            "input_size": model.spec.input_size,
            "class_names": names,
        },
        None,
    )
    return 0


def _add_ablate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="COCO training folder (e.g. lkd simulate --dataset detection)")
    p.add_argument("--val", required=True, help="held-out COCO folder scored with faster-coco-eval")
    p.add_argument("--out", required=True, help="folder of the run folders and ablation.json (resumable)")
    p.add_argument("--teacher-init", default="models/deimv2_femto_coco.onnx", help="teacher start (Femto)")
    p.add_argument("--student-init", default="models/deimv2_atto_coco.onnx", help="student start (Atto)")
    p.add_argument("--teacher-steps", type=int, default=400, help="fine-tuning steps of the teacher")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (>= 3 for a spread)")
    p.add_argument("--photos", nargs="*", default=[], help="real photographs for the COCO-class agreement")
    p.add_argument("--config", help="YAML with DEIMv2TrainConfig / ClockWeights keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--json-out", help="also write the summary here (default stdout)")


def _run_ablate(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from lkd_perception.common.config import from_dict
    from lkd_perception.common.paths import resolve_model_path
    from lkd_perception.detection.clockdistill import ClockWeights
    from lkd_perception.detection.deimv2_ablation import run_ablation
    from lkd_perception.detection.deimv2_train import DEIMv2TrainConfig
    from lkd_perception.io.formats import read_rgb

    _known(args, DEIMv2TrainConfig, ClockWeights)
    weights = from_dict(ClockWeights, _values(args, "clockdistill", {f.name for f in fields(ClockWeights)}))
    seeds = list(comma_list(args.seeds, int, "--seeds"))
    summary = run_ablation(
        resolve_model_path(args.teacher_init),
        resolve_model_path(args.student_init),
        args.data,
        args.val,
        args.out,
        _train_cfg(args),
        args.teacher_steps,
        seeds,
        weights,
        [read_rgb(p) for p in args.photos],
    )
    emit_json(summary, args.json_out)
    return 0


COMMANDS = [
    Command(
        ("train", "deimv2"),
        "fine-tune DEIMv2 (published ONNX or our checkpoint) on COCO-format data",
        _add_train,
        _run_train,
        example="lkd train deimv2 --init models/deimv2_atto_coco.onnx --data data/train/annotations.json --val "
                "data/val/annotations.json --out runs/deimv2_atto",
    ),
    Command(
        ("distill", "deimv2"),
        "CLoCKDistill a DEIMv2 teacher into a DEIMv2 student",
        _add_distill,
        _run_distill,
        example="lkd distill deimv2 --teacher runs/deimv2_femto/last.pt --student models/deimv2_atto_coco.onnx --data "
                "data/train/annotations.json --out runs/deimv2_clock",
    ),
    Command(
        ("ablate", "deimv2"),
        "student alone vs with CLoCKDistill over seeds, scored on held-out frames",
        _add_ablate,
        _run_ablate,
        example="lkd ablate deimv2 --data data/train/annotations.json --val data/val/annotations.json --out "
                "runs/deimv2_ablation --seeds 0,1,2",
    ),
    Command(
        ("export", "deimv2"),
        "our DEIMv2 checkpoint -> ONNX with the published contract",
        _add_export,
        _run_export,
        example="lkd export deimv2 runs/deimv2_atto/last.pt --out models/deimv2_atto_sim.onnx",
    ),
]
