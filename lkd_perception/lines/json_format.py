"""The line-JSON files of ``lkd lines`` and ``lkd evaluate lines``.

Predictions (DESIGN contract): ``{"<image file name>": [[x1, y1, x2, y2, score], ...]}``.

Ground truth: ``{"<image file name>": {"width": W, "height": H, "lines": [[x1, y1, x2, y2], ...]}}``.
The plain list form ``{"<image file name>": [[x1, y1, x2, y2], ...]}`` is accepted too; its image
sizes (needed for the 128x128 rescale of sAP) are then read from the image files, looked up
beside the ground-truth file or in an explicit folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.io.formats import read_json


@dataclass(frozen=True)
class LineGroundTruth:
    """Labelled segments (N,4) of one image and its size in pixels."""

    lines: np.ndarray
    width: int
    height: int


def _rows(value: Any, columns: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: segments must be lists of numbers") from exc
    if arr.size == 0:
        return np.zeros((0, columns))
    if arr.ndim != 2 or arr.shape[1] != columns or not np.all(np.isfinite(arr)):
        raise InputError(f"{where}: expected finite rows of {columns} numbers, got shape {arr.shape}")
    return arr


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """``{image name: (N,5) x1,y1,x2,y2,score}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be an object keyed by image file name")
    return {name: _rows(v, 5, f"{path}[{name!r}]") for name, v in data.items()}


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read image {path} (needed for its size)")
    return int(img.shape[1]), int(img.shape[0])


def read_ground_truth(path: str | Path, image_dir: str | Path | None = None) -> dict[str, LineGroundTruth]:
    """Ground truth in either form (module docstring); sizes from the file or the images."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be an object keyed by image file name")
    folder = Path(image_dir) if image_dir is not None else Path(path).parent
    out = {}
    for name, v in data.items():
        where = f"{path}[{name!r}]"
        if isinstance(v, dict):
            if "width" not in v or "height" not in v or "lines" not in v:
                raise InputError(f"{where}: needs 'width', 'height' and 'lines'")
            w, h = int(v["width"]), int(v["height"])
            lines = _rows(v["lines"], 4, where)
        else:
            lines = _rows(v, 4, where)
            w, h = image_size(folder / name)
        if w <= 0 or h <= 0:
            raise InputError(f"{where}: image size must be positive, got {w}x{h}")
        out[name] = LineGroundTruth(lines=lines, width=w, height=h)
    return out


def predictions_to_json(segments: np.ndarray, scores: np.ndarray, decimals: int = 2) -> list[list[float]]:
    """Rows ``[x1, y1, x2, y2, score]`` for one image."""
    rows = np.concatenate([np.asarray(segments, np.float64).reshape(-1, 4),
                           np.asarray(scores, np.float64).reshape(-1, 1)], axis=1)
    return [[round(float(x), decimals) for x in row[:4]] + [round(float(row[4]), 4)] for row in rows]
