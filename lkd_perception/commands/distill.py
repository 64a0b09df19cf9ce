"""``lkd distill lines``: the light line network distilled from the Wireframe LSDNet on photographs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lkd_perception.commands import Command, emit_json
from lkd_perception.commands.lines import add_sim_frame_args

log = logging.getLogger(__name__)


def _add(p: argparse.ArgumentParser) -> None:
    from lkd_perception.lines.config import LIGHT_MODEL_PATH, WIREFRAME_MODEL_PATH

    p.add_argument("--teacher", default=WIREFRAME_MODEL_PATH, help="teacher line model (the Wireframe LSDNet)")
    p.add_argument("--photos", required=True, help="photo corpus folder with manifest.json (scripts/photo_corpus.py)")
    p.add_argument("--out", default="runs/lines/distill", help="folder: teacher_maps.npz, checkpoint.pt, "
                   "snapshots/, log.jsonl; a run with a checkpoint there resumes")
    p.add_argument("--init", default=LIGHT_MODEL_PATH,
                   help="student to start from: our FP32 ONNX export or a checkpoint; 'none' = random weights")
    p.add_argument("--widths", default="16,32,64,160", help="channel widths when --init none")
    p.add_argument("--frames", type=int, default=1000, help="teacher-labelled frames cut from the photographs")
    p.add_argument("--frame-size", default="480x352", help="student input WxH the frames are made at (run-time size)")
    add_sim_frame_args(p, 0.25, "loop:11,urban:12,corridor:13,urban:14,loop:15,urban:16",  # the light model's drives
                       "the rest: teacher-labelled photographs")
    p.add_argument("--val", default=None, metavar="GT.json",
                   help="labelled validation photographs: each snapshot is scored (sAP10, F^H) into the log")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=12, help="crops per batch")
    p.add_argument("--crop", type=int, default=160, help="crop side in pixels")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--augment", type=float, default=0.5, help="photometric augmentation strength 0..1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between resumable checkpoints")
    p.add_argument(
        "--snapshot-every", type=int, default=500, help="steps between snapshots scored on the validation photographs"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from lkd_perception.commands.lines import sim_crops
    from lkd_perception.common.errors import ConfigError
    from lkd_perception.lines.config import LineConfig
    from lkd_perception.lines.distill import (
        DistillSettings,
        distill,
        load_teacher_maps,
        make_teacher_maps,
        net_from_onnx,
        save_teacher_maps,
        snapshot_validator,
    )
    from lkd_perception.lines.lsdnet import LSDNet, parse_widths
    from lkd_perception.lines.photo_corpus import read_corpus
    from lkd_perception.lines.runtime import LineDetector
    from lkd_perception.lines.sim_source import parse_size

    if not 0 <= args.sim_fraction <= 1:
        raise ConfigError(f"--sim-fraction must be in [0, 1], got {args.sim_fraction}")
    out = Path(args.out)
    width, height = parse_size(args.frame_size)
    if args.init == "none":
        net = LSDNet(parse_widths(args.widths), stride=2, decoder="add")
    elif args.init.endswith(".onnx"):
        from lkd_perception.common.paths import resolve_model_path

        net = net_from_onnx(resolve_model_path(args.init))
    else:
        from lkd_perception.lines.export import load_checkpoint

        net = load_checkpoint(args.init)
    cache = out / "teacher_maps.npz"
    wanted = {
        "teacher": str(args.teacher),
        "photos": str(args.photos),
        "frames": args.frames,
        "frame_size": [width, height],
        "stride": net.stride,
        "seed": args.seed,
    }
    if cache.is_file() and load_teacher_maps(cache)[1] == wanted:
        maps = load_teacher_maps(cache)[0]
        log.info("%d teacher-labelled frames from %s", len(maps), cache)
    else:
        photos = [rgb for _, rgb in read_corpus(args.photos)]
        teacher = LineDetector(LineConfig(model_path=args.teacher, threads=2))
        log.info("labelling %d frames of %d photographs with %s", args.frames, len(photos), args.teacher)
        maps = make_teacher_maps(
            teacher.heat_and_angle,
            photos,
            args.frames,
            width,
            height,
            net.stride,
            np.random.default_rng(args.seed + 7919),
        )
        save_teacher_maps(maps, cache, wanted)
    sim = sim_crops(args, out) if args.sim_fraction > 0 else None
    settings = DistillSettings(
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        sim_fraction=args.sim_fraction,
        augment_strength=args.augment,
        seed=args.seed,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        snapshot_every=args.snapshot_every,
    )
    validate = snapshot_validator(args.val, width, height, out) if args.val else None
    last = None
    for entry in distill(settings, net, maps, out, sim, progress=not args.no_progress, on_snapshot=validate):
        last = entry
    emit_json(
        {
            "out": str(out),
            "checkpoint": str(out / "checkpoint.pt"),
            "last": last.__dict__ if last else None,
            "log": str(out / "log.jsonl"),
        },
        None,
    )
    return 0


COMMANDS = [
    Command(
        ("distill", "lines"),
        "distil the light line network from the Wireframe LSDNet on real photographs",
        _add,
        _run,
        example="lkd distill lines --teacher models/lsdnet_wireframe.onnx --photos runs/photos --out runs/distill",
    ),
]
