"""Detection subcommands: ``detect``, ``evaluate detections``, ``train leyolo``, ``export leyolo``,
``bench detect``. Heavy imports (onnxruntime, torch) happen inside ``run``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lkd_perception.commands import Command, emit_json, progress
from lkd_perception.common.config import describe
from lkd_perception.common.providers import PROVIDER_CHOICES
from lkd_perception.detection.config import DetectorFamily


# -- lkd detect ---------------------------------------------------------------------------------
def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", choices=tuple(f.value for f in DetectorFamily), default="leyolo",
                   help="detector family")
    p.add_argument("--model-path", help="ONNX file (default: the config's path for the family)")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (low for mAP evaluation)")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (LeYOLO)")
    p.add_argument("--max-det", type=int, default=100, help="most detections per image")
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="cpu",
                   help="ONNX Runtime execution provider (tensorrt builds an engine on first use)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--gt", help="COCO annotations: image_id and category_id follow its file names and categories")
    p.add_argument("--out", help="COCO results JSON (default: stdout)")
    p.add_argument("--draw", metavar="DIR", help="also write each image with its detections drawn, as DIR/<name>.png")
    p.add_argument("--draw-conf", type=float, default=0.3,
                   help="score a detection needs to be drawn (--conf stays low for mAP; a picture wants few boxes)")


def _detector_config(args: argparse.Namespace):
    from lkd_perception.detection.config import detector_config

    return detector_config(DetectorFamily(args.model), args.model_path, conf_threshold=args.conf,
                           iou_threshold=args.iou, max_detections=args.max_det, provider=args.provider,
                           threads=args.threads)


def _run_detect(args: argparse.Namespace) -> int:
    from lkd_perception.common.errors import InputError
    from lkd_perception.detection.draw import draw_detections
    from lkd_perception.detection.postprocess import Detections, detections_to_coco
    from lkd_perception.detection.runtime import Detector
    from lkd_perception.io.coco import load_coco
    from lkd_perception.io.formats import read_rgb, write_rgb

    detector = Detector(_detector_config(args))
    ids: dict[str, int] | None = None
    cat_ids: tuple[int, ...] | None = None
    if args.gt:
        gt = load_coco(args.gt)
        ids = gt.id_by_file_name()
        if len(gt.class_names) != len(detector.class_names):
            raise InputError(f"{args.gt} has {len(gt.class_names)} categories, the model {len(detector.class_names)}")
        cat_ids = gt.category_ids
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    drawn: set[str] = set()
    results = []
    for index, path in enumerate(progress(args.images, "detect", "img")):
        name = Path(path).name
        if ids is not None and name not in ids:
            raise InputError(f"{path}: file name not in {args.gt}")
        image_id = ids[name] if ids is not None else index
        rgb = read_rgb(path)
        det = detector(rgb)
        results.extend(detections_to_coco(det, image_id, cat_ids))
        if draw_dir is not None:
            keep = det.scores > args.draw_conf
            shown = Detections(det.boxes_xyxy[keep], det.scores[keep], det.class_ids[keep], det.class_names)
            stem = Path(path).stem
            out_name = f"{stem}.png" if stem not in drawn else f"{stem}_{index}.png"  # same name, other folder
            drawn.add(stem)
            write_rgb(draw_dir / out_name, draw_detections(rgb, shown))
    emit_json(results, args.out)
    return 0


# -- lkd evaluate detections --------------------------------------------------------------------
def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="COCO results JSON (from 'lkd detect')")
    p.add_argument("--gt", required=True, help="COCO annotations JSON")
    p.add_argument("--out", help="metrics JSON (default: stdout)")


def _run_eval(args: argparse.Namespace) -> int:
    from lkd_perception.common.errors import InputError
    from lkd_perception.eval.detection import evaluate_detections
    from lkd_perception.io.formats import read_json

    preds = read_json(args.pred)
    if not isinstance(preds, list):
        raise InputError(f"{args.pred}: expected a JSON list of COCO results")
    emit_json(evaluate_detections(read_json(args.gt), preds).to_dict(), args.out)
    return 0


# -- lkd train leyolo ---------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    from lkd_perception.detection.config import LeyoloTrainConfig

    for spec in describe(LeyoloTrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        if spec.type is bool:
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=spec.default,
                           help=f"{spec.description} (default {spec.default})")
        else:
            p.add_argument(flag, type=spec.type, default=spec.default, choices=spec.choices,
                           help=f"{spec.description} (default {spec.default})")
    p.add_argument("--export", help="after training, export the best EMA weights to this ONNX file")


def _run_train(args: argparse.Namespace) -> int:
    import logging
    import os

    from lkd_perception.detection.config import LeyoloTrainConfig
    from lkd_perception.detection.train_leyolo import config_from_args, train

    log = logging.getLogger("lkd.train.leyolo")
    cfg = config_from_args({s.name: getattr(args, s.name) for s in describe(LeyoloTrainConfig)})
    result = train(cfg, progress=lambda rec: log.info("%s", rec))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports and exports
        return 0
    out: dict[str, Any] = {"last": result.last_checkpoint, "best": result.best_checkpoint,
                           "epochs_run": result.epochs_run, "best_val_mAP50-95": result.best_map50_95,
                           "final_loss": result.final_loss, "seconds": result.seconds}
    if args.export:
        out["onnx"] = str(_export(result.best_checkpoint, args.export, cfg.img_size))
    emit_json(out, None)
    return 0


# -- lkd export leyolo --------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt / last.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--img-size", type=int, default=0, help="input size (default: the training size)")


def _export(checkpoint: str, out: str, img_size: int) -> Path:
    from lkd_perception.detection.export import export_leyolo
    from lkd_perception.detection.train_leyolo import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    return export_leyolo(model_from_checkpoint(ckpt), out, img_size or ckpt["img_size"], ckpt["class_names"])


def _run_export(args: argparse.Namespace) -> int:
    emit_json({"onnx": str(_export(args.checkpoint, args.out, args.img_size))}, None)
    return 0


# -- lkd bench detect ---------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", help="held-out COCO annotations for mAP (images/ beside it)")
    p.add_argument("--max-images", type=int, default=0, help="evaluate on at most this many images (0 = all)")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640], help="LeYOLO latency input sizes")
    p.add_argument("--leyolo-sizes", nargs="+", default=["n", "s"], choices=("n", "s", "m"),
                   help="untrained LeYOLO sizes to time beside the shipped models (architecture cost only)")
    p.add_argument("--onnx", action="append", default=[], metavar="NAME=PATH",
                   help="extra ONNX detector to benchmark (repeatable)")
    p.add_argument("--runs", type=int, default=30, help="timed inferences per measurement (after 5 warm-up)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", help="results JSON (a table is printed to stderr)")
    p.add_argument("--photos", nargs="+", metavar="IMAGE",
                   help="real photographs: measure every shipped model on them side by side (interleaved latency, "
                        "detections, agreement with the official outputs) instead of the simulator benchmark; "
                        "e.g. test/fixtures/detection_real/*")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME=PATH",
                   help="--photos: an ONNX timed as the baseline (default: runs/baselines/yolov8n_320.onnx when "
                        "present, made by scripts/yolov8n_timing_baseline.sh)")


def _run_bench(args: argparse.Namespace) -> int:
    import sys

    if args.photos:
        from lkd_perception.detection.bench_real import real_targets, run_real_benchmark

        report = run_real_benchmark(real_targets(args.onnx, args.baseline), args.photos, args.runs, args.threads)
    else:
        from lkd_perception.detection.bench import bench_targets, run_benchmark

        report = run_benchmark(args.leyolo_sizes, args.sizes, bench_targets(args.onnx), args.gt, args.max_images,
                               args.runs, args.threads)
    emit_json(report.to_dict(), args.out)
    sys.stderr.write(report.table() + "\n")
    return 0


COMMANDS = [
    Command(
        ("detect",),
        "run a detector (LeYOLO or DETR ONNX) on images; COCO results JSON",
        _detect_args,
        _run_detect,
        example="lkd detect photos/*.jpg --model detr --out detections.json --draw runs/drawn",
    ),
    Command(
        ("evaluate", "detections"),
        "COCO mAP of detections against annotations",
        _eval_args,
        _run_eval,
        example="lkd evaluate detections --pred detections.json --gt annotations.json --out map.json",
    ),
    Command(
        ("train", "leyolo"),
        "train LeYOLO on a COCO-format dataset",
        _train_args,
        _run_train,
        example="lkd train leyolo --data data/train/annotations.json --val-data data/val/annotations.json --out "
                "runs/leyolo",
    ),
    Command(
        ("export", "leyolo"),
        "export a LeYOLO checkpoint to ONNX (detector contract)",
        _export_args,
        _run_export,
        example="lkd export leyolo --checkpoint runs/leyolo/best.pt --out models/leyolo_mine.onnx",
    ),
    Command(
        ("bench", "detect"),
        "params, GFLOPs, latency and held-out mAP of the detectors",
        _bench_args,
        _run_bench,
        example="lkd bench detect --photos test/fixtures/detection_real --out runs/bench/detect.json",
    ),
]
