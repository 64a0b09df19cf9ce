"""``lkd import lsdnet``: the published Wireframe-trained LSDNet ONNX as one of our line models."""

from __future__ import annotations

import argparse

from lkd_perception.commands import Command, emit_json


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="the published ONNX (iitpvisionlab/LSDNet lsd/models_onnx/model.onnx)")
    p.add_argument("--out", default="models/lsdnet_wireframe.onnx", help="where to write our model")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.lines.published import import_wireframe_lsdnet

    done = import_wireframe_lsdnet(args.source, args.out)
    emit_json({"onnx": str(done.out), "source_sha256": done.source_sha256, "sha256": done.out_sha256,
               "metadata": done.metadata}, None)
    return 0


COMMANDS = [Command(("import", "lsdnet"), "the published Wireframe LSDNet ONNX into a line model of ours "
                    "(metadata and provenance added, graph unchanged)", _add, _run,
            example='lkd import lsdnet ../shared/pretrained/lsdnet_wireframe.onnx --out models/lsdnet_wireframe.onnx')]
