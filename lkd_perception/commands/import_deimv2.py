"""``lkd import deimv2``: a published DEIMv2 ONNX export into our PyTorch DEIMv2 (a checkpoint for
fine-tuning and distillation) and, optionally, back to ONNX through our own exporter."""

from __future__ import annotations

import argparse

from lkd_perception.commands import Command, emit_json


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="published DEIMv2 HGNetv2 Atto/Femto export (e.g. models/deimv2_atto_coco.onnx)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt: spec, class names, state dict)")
    p.add_argument("--export", default=None, help="also write our own ONNX export of the imported model here")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.common.paths import resolve_model_path
    from lkd_perception.detection.deimv2_import import import_deimv2

    emit_json(import_deimv2(resolve_model_path(args.onnx), args.out, args.export), None)
    return 0


COMMANDS = [
    Command(("import", "deimv2"), "import a published DEIMv2 ONNX into our PyTorch DEIMv2 (checkpoint, optional ONNX)",
            _args, _run,
            example='lkd import deimv2 models/deimv2_atto_coco.onnx --out runs/deimv2_atto.pt'),
]
