"""``lkd simulate``: a synthetic drive (bag + ground truth) or a training data set."""

from __future__ import annotations

import argparse

from lkd_perception.commands import Command, emit_json, progress

_SCENARIOS = ("loop", "urban", "corridor")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (drive: DIR/drive.mcap + DIR/gt/)")
    # None = not given: the --config file or the SimConfig default applies
    p.add_argument("--scenario", choices=_SCENARIOS, help="street layout and tour (default loop)")
    p.add_argument("--seconds", type=float, help="length of the drive in seconds (default 60)")
    p.add_argument("--seed", type=int, help="seed of world and noise (default 0)")
    p.add_argument("--width", type=int, help="image width (default 640)")
    p.add_argument("--height", type=int, help="image height (default 480)")
    p.add_argument("--no-camera", action="store_true", help="LiDAR and IMU only (much faster)")
    p.add_argument("--image-format", choices=("raw", "jpeg", "png"),
                   help="camera messages: raw Image (default) or CompressedImage on /camera/image_raw/compressed "
                        "(a 10-minute drive is about 8.7 GB raw)")
    p.add_argument("--save-frames", action="store_true", help="also write the images as PNGs to DIR/gt/frames/")
    p.add_argument("--config", help="YAML file of SimConfig fields (command-line options win)")
    p.add_argument("--dataset", choices=("detection", "lines"),
                   help="write a training set of random views instead of a drive")
    p.add_argument("--frames", type=int, default=1000, help="images in a --dataset (default 1000)")
    p.add_argument("--summary", help="write the JSON summary here instead of stdout")


def _run(args: argparse.Namespace) -> int:
    from lkd_perception.common.config import from_dict, load_yaml, to_dict
    from lkd_perception.sim.config import SimConfig

    values = to_dict(SimConfig())
    if args.config:
        values.update(load_yaml(args.config))
    given = {"scenario": args.scenario, "seconds": args.seconds, "seed": args.seed,
             "camera_width": args.width, "camera_height": args.height, "camera_format": args.image_format}
    values.update({k: v for k, v in given.items() if v is not None})
    if args.no_camera:
        values["camera"] = False
    cfg = from_dict(SimConfig, values)
    if args.dataset:
        from lkd_perception.sim.dataset import write_detection_dataset, write_lines_dataset

        writer = write_detection_dataset if args.dataset == "detection" else write_lines_dataset
        summary = writer(args.out, args.frames, cfg.seed, width=cfg.camera_width, height=cfg.camera_height)
    else:
        from lkd_perception.sim.recording import write_drive

        summary = write_drive(args.out, cfg, save_frames=args.save_frames,
                              wrap_events=lambda events: progress(events, "simulate", "msg"))
    emit_json(summary.to_dict(), args.summary)
    return 0


COMMANDS = [Command(("simulate",), "simulate a drive (bag + ground truth) or a training data set",
                    _add_arguments, _run,
            example='lkd simulate --out runs/sim --scenario urban --seconds 60 --image-format jpeg')]
