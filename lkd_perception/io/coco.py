"""COCO detection ground truth (what ``lkd_perception.sim.dataset`` writes) resolved against its
images: the one reader that training, evaluation, benchmarks and ``lkd detect --gt`` share.

Category ids are mapped to contiguous 0-based class indices in ascending id order; that order
is the model's ``class_names`` and is inverted again (index + 1 -> id) when results are written
in the COCO results format.

Which boxes a model learns from (one rule for every detector family, so that LeYOLO, DETR and
DEIMv2 trained on the same folder see the same objects): an annotation is kept unless it is a
crowd region (``iscrowd``: COCO's evaluator ignores those instead of matching them), names a
category or image the file does not list, or its box is narrower or lower than
:data:`MIN_BOX_PX` (a sub-pixel box covers no pixel to learn from, and its IoU with any
prediction is ~0, which only adds noise to the assigners and matchers). Evaluation is not
filtered: :meth:`CocoSet.ground_truth` is the file's own document, so mAP follows COCO's rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.io.formats import read_coco

#: smallest width and height (pixels) of a box that is trained on
MIN_BOX_PX = 1.0


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
    """A COCO annotation file resolved against its image folder; ``document`` is the file as read."""

    annotation_file: Path
    images: tuple[CocoImage, ...]
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    document: dict[str, Any] = field(repr=False, compare=False)

    def id_by_file_name(self) -> dict[str, int]:
        return {im.path.name: im.image_id for im in self.images}

    def head(self, count: int) -> CocoSet:
        """The first ``count`` images in file order (0 = all)."""
        return replace(self, images=self.images[:count]) if count else self

    def ground_truth(self) -> dict[str, Any]:
        """The COCO document restricted to this set's images (all their annotations, crowd ones
        included: the evaluator applies COCO's own rules), for mAP of predictions on them."""
        ids = {im.image_id for im in self.images}
        doc = self.document
        return {**doc, "images": [i for i in doc["images"] if i["id"] in ids],
                "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}


def _image_dir(ann_file: Path) -> Path:
    for cand in (ann_file.parent / "images", ann_file.parent):
        if cand.is_dir():
            return cand
    return ann_file.parent


def _trained_boxes(doc: dict[str, Any], cat_index: dict[int, int]) -> dict[int, list[tuple]]:
    """{image id: [(x1, y1, x2, y2, class index), ...]} of the annotations the module rule keeps."""
    per_image: dict[int, list[tuple]] = {im["id"]: [] for im in doc["images"]}
    for a in doc["annotations"]:
        if a.get("iscrowd", 0) or a["category_id"] not in cat_index or a["image_id"] not in per_image:
            continue
        x, y, w, h = a["bbox"]
        if w < MIN_BOX_PX or h < MIN_BOX_PX:
            continue
        per_image[a["image_id"]].append((x, y, x + w, y + h, cat_index[a["category_id"]]))
    return per_image


def load_coco(annotation_file: str | Path, image_dir: str | Path | None = None) -> CocoSet:
    """Read a COCO file (or the ``annotations.json`` of a folder); images are looked up in
    ``image_dir`` (default: ``images/`` beside the file, else its own folder)."""
    ann = Path(annotation_file)
    if ann.is_dir():
        ann = ann / "annotations.json"
    if not ann.is_file():
        raise InputError(f"annotation file not found: {ann}")
    doc = read_coco(ann)
    try:
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        cat_index = {c["id"]: i for i, c in enumerate(cats)}
        per_image = _trained_boxes(doc, cat_index)
        root = Path(image_dir) if image_dir is not None else _image_dir(ann)
        images = []
        for im in doc["images"]:
            rows = np.asarray(per_image[im["id"]], dtype=np.float32).reshape(-1, 5)
            name = Path(im["file_name"])
            path = root / name if (root / name).exists() else root / name.name
            images.append(CocoImage(int(im["id"]), path, int(im["width"]), int(im["height"]),
                                    rows[:, :4].copy(), rows[:, 4].astype(np.int64)))
        names = tuple(c["name"] for c in cats)
        ids = tuple(int(c["id"]) for c in cats)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{ann}: not a COCO detection file ({exc})") from exc
    return CocoSet(ann, tuple(images), names, ids, doc)
