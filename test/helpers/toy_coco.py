"""A tiny COCO detection set of coloured rectangles on noise.

Used by tests and smoke runs that need real files in the real format but must not depend on the
simulator: each class has its own colour and aspect, so a small model can learn it in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

TOY_CLASSES = ("car", "pedestrian", "cyclist", "traffic_sign")
_COLOURS = ((220, 40, 40), (40, 200, 40), (40, 80, 230), (230, 210, 30))
_ASPECT = (0.5, 2.5, 1.5, 1.0)  # height / width


def write_toy_coco(out_dir: str | Path, frames: int, seed: int, width: int = 160, height: int = 120,
                   max_objects: int = 3) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json``; returns the annotation path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(frames):
        img = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, max_objects + 1))):
            c = int(rng.integers(0, len(TOY_CLASSES)))
            w = float(rng.uniform(0.15, 0.35) * width)
            h = min(w * _ASPECT[c], 0.8 * height)
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            x1, y1, x2, y2 = int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), _COLOURS[c], thickness=-1)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0})
        name = f"{i:06d}.png"
        cv2.imwrite(str(out / "images" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(TOY_CLASSES)]
    path = out / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def gt_as_predictions(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """The ground truth rewritten as perfect predictions (score 1); a self-check of the evaluator."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
            for a in gt["annotations"] if not a.get("iscrowd", 0)]
