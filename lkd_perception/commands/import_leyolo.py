"""``lkd import leyolo``: the official LeYOLO COCO checkpoint into our code and our ONNX contract."""

from __future__ import annotations

import argparse

from lkd_perception.commands import Command, emit_json


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="official checkpoint as named tensors (.npz; its .json with the layer list "
                                   "and class names beside it)")
    p.add_argument("--json", default=None, help="the checkpoint's JSON (default: WEIGHTS with .json)")
    p.add_argument("--out", required=True, help="ONNX file to write (e.g. models/leyolo_n_coco.onnx)")
    p.add_argument("--img-size", type=int, default=320, help="square input size (multiple of 32; 320 or 480 "
                                                             "are the published evaluation sizes)")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.detection.leyolo_import import import_leyolo

    emit_json(import_leyolo(args.weights, args.out, args.img_size, args.json), None)
    return 0


COMMANDS = [
    Command(
        ("import", "leyolo"),
        "import the official LeYOLO weights (npz + json) and write our ONNX",
        _args,
        _run,
        example="lkd import leyolo ../shared/pretrained/leyolo_nano_coco.npz --out models/leyolo_n_coco.onnx "
                "--img-size 320",
    ),
]
