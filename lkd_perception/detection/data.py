"""COCO-format detection data (what ``lkd_perception.sim.dataset`` writes) as numpy arrays.

Category ids are mapped to contiguous 0-based class indices in ascending id order; that order
is the model's ``class_names`` and is inverted again (index + 1 -> id) when results are written
in the COCO results format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkd_perception.common.errors import InputError


@dataclass(frozen=True)
class CocoImage:
    """One image's file and its boxes: ``boxes_xyxy`` [n,4] pixels, ``classes`` [n] 0-based."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes_xyxy: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class CocoSet:
    """A COCO annotation file resolved against its image folder."""

    annotation_file: Path
    images: tuple[CocoImage, ...]
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]

    def id_by_file_name(self) -> dict[str, int]:
        return {im.path.name: im.image_id for im in self.images}


def _image_dir(ann_file: Path) -> Path:
    for cand in (ann_file.parent / "images", ann_file.parent):
        if cand.is_dir():
            return cand
    return ann_file.parent


def load_coco(annotation_file: str | Path, image_dir: str | Path | None = None) -> CocoSet:
    """Read a COCO file; images are looked up in ``image_dir`` (default: ``images/`` beside it)."""
    ann = Path(annotation_file)
    if not ann.is_file():
        raise InputError(f"annotation file not found: {ann}")
    try:
        data = json.loads(ann.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        raw_images = data["images"]
        raw_anns = data.get("annotations", [])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{ann}: not a COCO detection file ({exc})") from exc
    root = Path(image_dir) if image_dir is not None else _image_dir(ann)
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    per_image: dict[int, list] = {im["id"]: [] for im in raw_images}
    for a in raw_anns:
        if a.get("iscrowd", 0) or a["category_id"] not in cat_index or a["image_id"] not in per_image:
            continue
        x, y, w, h = a["bbox"]
        if w <= 0 or h <= 0:
            continue
        per_image[a["image_id"]].append((x, y, x + w, y + h, cat_index[a["category_id"]]))
    images = []
    for im in raw_images:
        rows = np.asarray(per_image[im["id"]], dtype=np.float32).reshape(-1, 5)
        name = Path(im["file_name"])
        path = root / name if (root / name).exists() else root / name.name
        images.append(CocoImage(int(im["id"]), path, int(im["width"]), int(im["height"]),
                                rows[:, :4].copy(), rows[:, 4].astype(np.int64)))
    return CocoSet(ann, tuple(images), tuple(c["name"] for c in cats), tuple(int(c["id"]) for c in cats))
