"""``lkd lines``, ``lkd evaluate lines``, ``lkd train lines``, ``lkd export lines``, ``lkd bench lines``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lkd_perception.commands import Command, comma_list, emit_json, parse_sets, progress

log = logging.getLogger(__name__)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="YAML with LineConfig keys (flat, or a ROS 2 parameter file with a line_node section)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one LineConfig setting (repeatable), e.g. --set input_width=160")


def _line_config(args: argparse.Namespace):
    """LineConfig from defaults, then ``--config``, then ``--set`` (later wins)."""
    from dataclasses import fields

    from lkd_perception.common.config import from_dict, load_yaml, node_parameters
    from lkd_perception.lines.config import LineConfig

    values: dict = {}
    if args.config:
        data = load_yaml(args.config)
        if any(isinstance(v, dict) and "ros__parameters" in v for v in data.values()):
            # a ROS 2 parameter file: the line_node settings (and /** ones) that are LineConfig's
            known = {f.name for f in fields(LineConfig)}
            values.update({k: v for k, v in node_parameters(data, "line_node").items() if k in known})
        else:
            values.update(data)
    values.update(parse_sets(args.set))
    return from_dict(LineConfig, values)


def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    p.add_argument("--out", default=None, help="JSON file (default: stdout)")
    p.add_argument("--draw", default=None, metavar="DIR",
                   help="also write each image with its segments drawn to DIR/<image stem>.png")
    _add_config_args(p)


def _run_detect(args: argparse.Namespace) -> int:
    from lkd_perception.common.errors import InputError
    from lkd_perception.io.formats import predictions_to_json, read_rgb
    from lkd_perception.lines.runtime import LineDetector

    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir is not None:
        stems = [Path(p).stem for p in args.images]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:
            # one PNG per input, named by its stem: two inputs with one stem would overwrite each other
            raise InputError(f"--draw: several images share the file stem(s) {clash}")
        draw_dir.mkdir(parents=True, exist_ok=True)
    det = LineDetector(_line_config(args))
    result = {}
    for path in progress(args.images, "lines", "img"):
        rgb = read_rgb(path)
        found = det.detect(rgb)
        result[Path(path).name] = predictions_to_json(found.segments, found.scores)
        log.info("%s: %d segments", path, len(found))
        if draw_dir is not None:
            _write_drawing(rgb, found.segments, draw_dir / f"{Path(path).stem}.png")
    emit_json(result, args.out)
    return 0


def _write_drawing(rgb, segments, out: Path) -> None:
    """The image with its segments; lines 2 px wide on images over 800 px."""
    from lkd_perception.io.formats import write_rgb
    from lkd_perception.lines.draw import draw_segments

    write_rgb(out, draw_segments(rgb, segments, thickness=2 if max(rgb.shape[:2]) > 800 else 1))


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="predictions JSON ({image: [[x1,y1,x2,y2,score], ...]})")
    p.add_argument("--gt", required=True, help="ground-truth JSON (see lkd_perception.io.formats)")
    p.add_argument("--images", default=None,
                   help="folder of the images, for sizes the ground truth does not give (default: beside --gt)")
    p.add_argument("--out", default=None, help="JSON file (default: stdout)")


def _run_evaluate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import numpy as np

    from lkd_perception.eval.lines import evaluate_lines
    from lkd_perception.io.formats import read_ground_truth, read_predictions

    gt = read_ground_truth(args.gt, args.images)
    pred = read_predictions(args.pred)
    extra = sorted(set(pred) - set(gt))
    if extra:
        log.warning("%d predicted image(s) have no ground truth and are ignored: %s", len(extra), extra[:5])
    names = sorted(gt)
    missing = [n for n in names if n not in pred]
    metrics = evaluate_lines(
        [pred.get(n, np.zeros((0, 5))) for n in names],
        [gt[n].lines for n in names],
        [(gt[n].width, gt[n].height) for n in names],
    )
    emit_json(asdict(metrics) | {"images_without_predictions": len(missing)}, args.out)
    return 0


def _add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="JSON file (default: stdout; the table goes to stderr)")
    p.add_argument("--source", default="sim", choices=("sim", "synthetic", "labelled"),
                   help="held-out images: simulator frames, synthetic shapes, or the images of --gt")
    p.add_argument("--gt", default="", help="labelled: line ground-truth JSON, images in its folder "
                   "(e.g. test/fixtures/lines_real/gt.json, hand-labelled photographs)")
    p.add_argument("--width", type=int, default=640, help="frame width the methods are timed at")
    p.add_argument("--height", type=int, default=480, help="frame height the methods are timed at")
    p.add_argument("--sim-runs", default="urban:1001,loop:1002", help="held-out drives scenario:seed,...")
    p.add_argument("--sim-seconds", type=float, default=60.0, help="length of each held-out drive, s")
    p.add_argument("--sim-rate", type=float, default=0.25, help="held-out frames per simulated second")
    p.add_argument("--count", type=int, default=30, help="synthetic held-out images")
    p.add_argument("--seed", type=int, default=1000, help="synthetic held-out seed (training uses others)")
    p.add_argument("--augment", type=float, default=1.0, help="synthetic: photometric degradation 0..1")
    p.add_argument("--repeats", type=int, default=1, help="timing passes over the images per size")
    p.add_argument("--methods",
                   default="lsdnet_cpu,lsdnet_int8,lsdnet_wireframe,lsdnet_cuda,lsdnet_cpu@320x240,"
                           "opencv_lsd,opencv_fld",
                   help="comma list: lsdnet_cpu (models/lsdnet.onnx), lsdnet_int8 (models/lsdnet_int8.onnx), "
                        "lsdnet_wireframe (models/lsdnet_wireframe.onnx), lsdnet_cuda, lsdnet_wireframe_cuda, "
                        "opencv_lsd, opencv_fld; lsdnet_cpu@WxH / lsdnet_int8@WxH run at another input size; "
                        "model:PATH any LSDNet ONNX file of ours (a candidate beside the shipped models)")
    p.add_argument("--save-data", default=None,
                   help="also write the held-out images and gt.json here (for lkd evaluate lines)")
    _add_config_args(p)


def _run_bench(args: argparse.Namespace) -> int:
    import sys

    from lkd_perception.lines.bench import (
        HeldOut,
        format_table,
        heldout_images,
        results_to_dict,
        run_benchmark,
        save_heldout,
    )

    cfg = _line_config(args)
    spec = HeldOut(source=args.source, width=args.width, height=args.height, sim_runs=args.sim_runs,
                   sim_seconds=args.sim_seconds, sim_rate_hz=args.sim_rate, seed=args.seed, count=args.count,
                   augment_strength=args.augment, gt=args.gt)
    images = heldout_images(spec)
    log.info("%d held-out images (%s)", len(images), spec.source)
    if args.save_data:
        save_heldout(images, args.save_data)
    methods = comma_list(args.methods, str, "--methods")
    results = run_benchmark(cfg, images, methods, args.repeats)
    sys.stderr.write(format_table(results) + "\n")
    emit_json(results_to_dict(results, cfg, spec, len(images)), args.out)
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/lines/train", help="folder for checkpoint.pt and log.json")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=12, help="crops per batch")
    p.add_argument("--crop", type=int, default=128, help="square training image size (multiple of 8 x the stride)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--stride", type=int, default=2, choices=(1, 2),
                   help="output stride: 2 = maps at half the input size (the shipped model), 1 = the reference U-Net")
    p.add_argument("--decoder", default="add", choices=("add", "concat"),
                   help="decoder stages: add = the light one (the shipped model), concat = the reference U-Net's")
    p.add_argument("--widths", default="16,32,64,160", help="channel widths of the four levels")
    add_sim_frame_args(p, 0.0, "loop:11,urban:12,corridor:13,urban:14", "0 = synthetic shapes only")
    p.add_argument("--labelled", action="append", default=[], metavar="GT.json",
                   help="line ground truth of your own images (format of lkd evaluate lines; images beside it); "
                        "repeatable. Crops of them make up --labelled-fraction of each batch")
    p.add_argument("--labelled-fraction", type=float, default=0.3,
                   help="share of each batch cut from the --labelled images")
    p.add_argument("--init", default=None, help="checkpoint to start from (fine-tuning)")


def _run_train(args: argparse.Namespace) -> int:
    from lkd_perception.lines.export import load_checkpoint, save_checkpoint
    from lkd_perception.lines.lsdnet import parse_widths
    from lkd_perception.lines.train import TrainSettings, train

    settings = TrainSettings(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                             seed=args.seed, threads=args.threads, stride=args.stride,
                             decoder=args.decoder, widths=parse_widths(args.widths))
    out = Path(args.out)
    extra, fraction = _extra_source(args, out)
    net = load_checkpoint(args.init) if args.init else None
    history = []
    window: list[float] = []
    for net, entry in train(settings, net, extra, fraction):
        window.append(entry.train_loss)
        if (entry.step + 1) % 50 == 0 or entry.step + 1 == settings.steps:
            history.append({"step": entry.step + 1, "lr": entry.lr, "loss": sum(window) / len(window),
                            "seconds": round(entry.seconds, 1)})
            window = []
            log.info("step %d loss %.4f lr %.2e %.0fs", entry.step + 1, history[-1]["loss"], entry.lr, entry.seconds)
        if (entry.step + 1) % 500 == 0:
            save_checkpoint(net, out / "checkpoint.pt", {"step": entry.step + 1})
    save_checkpoint(net, out / "checkpoint.pt", {"step": settings.steps})
    settings_used = {k: v for k, v in vars(args).items() if not k.startswith(("_", "cmd"))}
    emit_json({"settings": settings_used, "history": history}, out / "log.json")
    return 0


def _extra_source(args: argparse.Namespace, out: Path):
    """(source, share of each batch) beside the synthetic shapes: simulator frames and/or labelled
    images, or (None, 0.0)."""
    from lkd_perception.common.errors import ConfigError
    from lkd_perception.lines.sim_source import SimCrops, labelled_images
    from lkd_perception.lines.train import SourceMix

    total = args.sim_fraction + (args.labelled_fraction if args.labelled else 0.0)
    if total > 1.0 + 1e-9:
        raise ConfigError(f"--sim-fraction plus --labelled-fraction must not exceed 1, got {total}")
    parts = []
    if args.sim_fraction > 0:
        parts.append((sim_crops(args, out), args.sim_fraction))
    if args.labelled:
        if not 0 < args.labelled_fraction <= 1:
            raise ConfigError(f"--labelled-fraction must be in (0, 1], got {args.labelled_fraction}")
        frames = [f for path in args.labelled for f in labelled_images(path)]
        crop = args.crop
        small = [f"{f.rgb.shape[1]}x{f.rgb.shape[0]}" for f in frames if min(f.rgb.shape[:2]) < crop]
        if small:
            raise ConfigError(f"labelled images smaller than the crop ({crop}): {', '.join(small)}")
        log.info("%d labelled images, %d segments", len(frames), sum(len(f.segments) for f in frames))
        parts.append((SimCrops(frames), args.labelled_fraction))
    if not parts:
        return None, 0.0
    return (parts[0][0] if len(parts) == 1 else SourceMix(parts)), total


def add_sim_frame_args(p: argparse.ArgumentParser, fraction: float, runs: str, fraction_note: str) -> None:
    """The simulator-frame source of ``lkd train lines`` and ``lkd distill lines`` (read by :func:`sim_crops`)."""
    p.add_argument("--sim-fraction", type=float, default=fraction,
                   help=f"share of each batch cropped from simulator frames with exact labels ({fraction_note})")
    p.add_argument("--sim-runs", default=runs, help="simulator drives scenario:seed,... rendered for training "
                   "(1 frame/s)")
    p.add_argument("--sim-seconds", type=float, default=60.0, help="length of each simulator drive, s")
    p.add_argument("--sim-size", default="480x360", help="simulator frame size WxH")
    p.add_argument("--sim-cache", default=None,
                   help="npz of rendered simulator frames (default OUT/sim_frames.npz; rendered once, then reused)")


def sim_crops(args: argparse.Namespace, out: Path):
    """Simulator frames for training, rendered once and cached."""
    from lkd_perception.lines.sim_source import SimCrops, cached_sim_frames, parse_sim_runs, parse_size

    cache = Path(args.sim_cache) if args.sim_cache else out / "sim_frames.npz"
    w, h = parse_size(args.sim_size)
    log.info("simulator frames %s at %dx%d (cache %s)", args.sim_runs, w, h, cache)
    frames = cached_sim_frames(parse_sim_runs(args.sim_runs), w, h, args.sim_seconds, cache)
    log.info("%d simulator frames", len(frames))
    return SimCrops(frames)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="runs/lines/train/checkpoint.pt", help="training checkpoint (lkd train "
                                                                                  "lines)")
    p.add_argument("--out", default="models/lsdnet.onnx", help="ONNX file to write")
    p.add_argument("--input-width", type=int, default=None, help="default: LineConfig.input_width")
    p.add_argument("--input-height", type=int, default=None, help="default: LineConfig.input_height")
    p.add_argument(
        "--endpoint-refinement",
        default="heat_half",
        choices=("heat_half", "none"),
        help="none for a model distilled from the Wireframe LSDNet (its heat runs past the line ends, "
        "like the teacher's; the grouping then keeps the extreme projections)",
    )


def _run_export(args: argparse.Namespace) -> int:
    from lkd_perception.lines.config import LineConfig
    from lkd_perception.lines.export import export_onnx, load_checkpoint

    cfg = LineConfig()
    extra = {"endpoint_refinement": "none"} if args.endpoint_refinement == "none" else None
    path = export_onnx(
        load_checkpoint(args.checkpoint),
        args.out,
        args.input_width or cfg.input_width,
        args.input_height or cfg.input_height,
        extra,
    )
    emit_json({"onnx": str(path), "bytes": path.stat().st_size}, None)
    return 0


def _add_quantize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="models/lsdnet.onnx", help="FP32 LSDNet export")
    from lkd_perception.lines.config import INT8_MODEL_PATH

    p.add_argument("--out", default=INT8_MODEL_PATH, help="INT8 ONNX file to write")
    p.add_argument(
        "--calibration",
        nargs="+",
        required=True,
        help="training images: an .npz of simulator frames (lkd train lines caches one) or image files",
    )
    p.add_argument("--count", type=int, default=64, help="calibration images drawn from them")
    p.add_argument("--seed", type=int, default=0)


def _run_quantize(args: argparse.Namespace) -> int:
    import numpy as np

    from lkd_perception.io.formats import read_rgb
    from lkd_perception.lines.quantize import quantize_int8
    from lkd_perception.lines.sim_source import load_frames

    images = []
    for item in args.calibration:
        if item.endswith(".npz"):
            images += [f.rgb for f in load_frames(item)]
        else:
            images.append(read_rgb(item))
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(images), min(args.count, len(images)), replace=False)
    path = quantize_int8(args.model, args.out, [images[i] for i in sorted(pick)])
    emit_json({"onnx": str(path), "bytes": path.stat().st_size, "calibration_images": len(pick)}, None)
    return 0


COMMANDS = [
    Command(
        ("lines",),
        "detect line segments in images (LSDNet)",
        _add_detect,
        _run_detect,
        example="lkd lines photos/*.png --out lines.json --draw runs/drawn",
    ),
    Command(
        ("evaluate", "lines"),
        "sAP5/10/15 and F^H of line predictions against ground truth",
        _add_evaluate,
        _run_evaluate,
        example="lkd evaluate lines --pred lines.json --gt test/fixtures/lines_real/gt.json",
    ),
    Command(
        ("bench", "lines"),
        "every shipped line model vs OpenCV LSD and FLD: accuracy, latency, memory",
        _add_bench,
        _run_bench,
        example="lkd bench lines --out runs/bench/lines.json",
    ),
    Command(
        ("quantize", "lines"),
        "INT8 line model for CPUs (static, calibrated on training images)",
        _add_quantize,
        _run_quantize,
        example="lkd quantize lines --model models/lsdnet.onnx --out models/lsdnet_int8.onnx --calibration "
                "runs/lines/frames.npz",
    ),
    Command(
        ("train", "lines"),
        "train the LSDNet line detector on synthetic scenes",
        _add_train,
        _run_train,
        example="lkd train lines --out runs/lines",
    ),
    Command(
        ("export", "lines"),
        "export a trained LSDNet checkpoint to ONNX",
        _add_export,
        _run_export,
        example="lkd export lines --checkpoint runs/lines/last.pt --out models/lsdnet_mine.onnx",
    ),
]
