"""File formats of ground truth and results: TUM trajectories, COCO detections, line JSON.

* TUM: one pose per line, ``t x y z qx qy qz qw`` (seconds, metres, quaternion x y z w);
  ``#`` comments allowed.
* COCO: the standard ``images`` / ``annotations`` / ``categories`` document; boxes ``[x, y, w, h]``.
* Line JSON: ``{"<image file name>": [[x1, y1, x2, y2(, score)], ...]}``: the predictions of
  ``lkd lines`` (DESIGN contract, with scores) and the simulator's line ground truth. Labelled
  ground truth may also give each image's size, which the 128x128 rescale of sAP needs:
  ``{"<image file name>": {"width": W, "height": H, "lines": [[x1, y1, x2, y2], ...]}}``; in the
  plain list form the sizes are read from the image files (beside the file or in a given folder).
  One row parser serves every reader, so all of them accept and refuse the same rows.
* Image files (any format OpenCV reads) as RGB arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.paths import read_text
from lkd_perception.common.se3 import make_pose, matrix_from_quat, quat_from_matrix


@dataclass(frozen=True)
class PoseSeries:
    """Timed poses: ``stamps_s`` (N,) float64 seconds and ``poses`` (N, 4, 4) ``T_parent_child``."""

    stamps_s: np.ndarray
    poses: np.ndarray

    def __post_init__(self) -> None:
        if self.stamps_s.ndim != 1 or self.poses.shape != (self.stamps_s.shape[0], 4, 4):
            raise InputError(f"pose series shapes disagree: {self.stamps_s.shape} vs {self.poses.shape}")

    def __len__(self) -> int:
        return int(self.stamps_s.shape[0])


def _format_time(t: Any) -> str:
    if isinstance(t, (int, np.integer)):  # nanoseconds: exact decimal seconds
        ns = int(t)
        return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
    return f"{float(t):.9f}"


def write_tum(path: str | Path, stamps: np.ndarray, poses: np.ndarray) -> None:
    """Write poses (N, 4, 4) as a TUM file. ``stamps`` (N,) are float seconds, or integer
    nanoseconds (written exactly: epoch-sized float seconds lose the last digits)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for t, T in zip(np.asarray(stamps), np.asarray(poses, float)):
        q = quat_from_matrix(T[:3, :3])
        x, y, z = T[:3, 3]
        lines.append(f"{_format_time(t)} {x:.6f} {y:.6f} {z:.6f} {q[0]:.9f} {q[1]:.9f} {q[2]:.9f} {q[3]:.9f}")
    p.write_text("\n".join(lines) + ("\n" if lines else ""))


def read_tum(path: str | Path) -> PoseSeries:
    """Read a TUM file; a malformed line is an :class:`InputError` naming the line."""
    p = Path(path)
    stamps, poses = [], []
    for no, line in enumerate(read_text(p, "trajectory file").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 8:
            raise InputError(f"{p}:{no}: expected 8 values 't x y z qx qy qz qw', got {len(parts)}")
        try:
            v = [float(x) for x in parts]
        except ValueError as exc:
            raise InputError(f"{p}:{no}: not a number: {exc}") from exc
        q = np.array(v[4:8])
        if not np.isfinite(v).all() or np.linalg.norm(q) < 1e-9:
            raise InputError(f"{p}:{no}: non-finite value or zero quaternion")
        stamps.append(v[0])
        poses.append(make_pose(matrix_from_quat(q), v[1:4]))
    return PoseSeries(np.asarray(stamps, float), np.asarray(poses, float).reshape(-1, 4, 4))


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (compact separators, key order kept) creating parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON; a missing or malformed file is an :class:`InputError`."""
    p = Path(path)
    text = read_text(p, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}") from exc


def coco_document(images: Sequence[Mapping[str, Any]], annotations: Sequence[Mapping[str, Any]],
                  categories: Mapping[int, str]) -> dict[str, Any]:
    """A COCO ground-truth document; annotation ids are assigned 1.. in order when absent."""
    anns = []
    for k, a in enumerate(annotations, 1):
        ann = {"id": k, "iscrowd": 0, **a}
        anns.append(ann)
    return {
        "info": {"description": "lkd_perception synthetic ground truth"},
        "images": list(images),
        "annotations": anns,
        "categories": [{"id": int(i), "name": n, "supercategory": "object"} for i, n in sorted(categories.items())],
    }


def read_coco(path: str | Path) -> dict[str, Any]:
    """Read a COCO ground-truth document and check its top-level keys; ``annotations`` may be
    absent (an image list alone, as COCO's test sets come) and is then an empty list."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not all(k in doc for k in ("images", "categories")):
        raise InputError(f"{path}: not a COCO document (needs images, categories and annotations)")
    return doc if "annotations" in doc else {**doc, "annotations": []}


def write_lines(path: str | Path, lines: Mapping[str, np.ndarray | Sequence[Sequence[float]]],
                decimals: int = 2) -> None:
    """Write the line JSON ``{"<image file name>": [[x1, y1, x2, y2(, score)], ...]}``."""
    out: dict[str, list[list[float]]] = {}
    for name, segs in lines.items():
        arr = np.asarray(segs, float)
        out[name] = [[round(float(v), decimals) for v in row] for row in arr.reshape(len(arr), -1)] if arr.size else []
    write_json(path, out)


def _segment_rows(value: Any, columns: tuple[int, ...], where: str) -> np.ndarray:
    """One image's segments as (L, C) float64, C in ``columns``; empty lists give (0, columns[0])."""
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: segments must be lists of numbers") from exc
    if arr.size == 0:
        return np.zeros((0, columns[0]))
    if arr.ndim != 2 or arr.shape[1] not in columns or not np.all(np.isfinite(arr)):
        counts = " or ".join(map(str, columns))
        raise InputError(f"{where}: expected finite rows of {counts} numbers (x1, y1, x2, y2(, score)), "
                         f"got shape {arr.shape}")
    return arr


def _line_document(path: str | Path) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: line JSON must map image file names to segment lists")
    return doc


def read_lines(path: str | Path) -> dict[str, np.ndarray]:
    """Read the line JSON into (L, 4) or (L, 5) arrays per image file name."""
    return {name: _segment_rows(v, (4, 5), f"{path}[{name!r}]") for name, v in _line_document(path).items()}


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """Line predictions: ``{image name: (N,5) x1,y1,x2,y2,score}``."""
    return {name: _segment_rows(v, (5,), f"{path}[{name!r}]") for name, v in _line_document(path).items()}


@dataclass(frozen=True)
class LineGroundTruth:
    """Labelled segments (N,4) of one image and its size in pixels."""

    lines: np.ndarray
    width: int
    height: int


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read image {path} (needed for its size)")
    return int(img.shape[1]), int(img.shape[0])


def read_ground_truth(path: str | Path, image_dir: str | Path | None = None) -> dict[str, LineGroundTruth]:
    """Line ground truth in either form (module docstring); sizes from the file or the images."""
    folder = Path(image_dir) if image_dir is not None else Path(path).parent
    out = {}
    for name, v in _line_document(path).items():
        where = f"{path}[{name!r}]"
        if isinstance(v, dict):
            if "width" not in v or "height" not in v or "lines" not in v:
                raise InputError(f"{where}: needs 'width', 'height' and 'lines'")
            w, h = int(v["width"]), int(v["height"])
            lines = _segment_rows(v["lines"], (4,), where)
        else:
            lines = _segment_rows(v, (4,), where)
            w, h = image_size(folder / name)
        if w <= 0 or h <= 0:
            raise InputError(f"{where}: image size must be positive, got {w}x{h}")
        out[name] = LineGroundTruth(lines=lines, width=w, height=h)
    return out


def write_ground_truth(path: str | Path, truth: Mapping[str, LineGroundTruth], decimals: int = 3) -> None:
    """Write line ground truth in the form with image sizes (what :func:`read_ground_truth` reads)."""
    write_json(path, {name: {"width": int(g.width), "height": int(g.height),
                             "lines": [[round(float(v), decimals) for v in row] for row in np.asarray(g.lines)]}
                      for name, g in truth.items()})


def predictions_to_json(segments: np.ndarray, scores: np.ndarray, decimals: int = 2) -> list[list[float]]:
    """Rows ``[x1, y1, x2, y2, score]`` of one image (scores keep 4 decimals)."""
    rows = np.concatenate([np.asarray(segments, np.float64).reshape(-1, 4),
                           np.asarray(scores, np.float64).reshape(-1, 1)], axis=1)
    return [[round(float(x), decimals) for x in row[:4]] + [round(float(row[4]), 4)] for row in rows]


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; unreadable files are an :class:`InputError`.

    The file is read here and decoded from memory, so OpenCV never prints its own warning
    beside our one-line error.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image not found: {p}")
    data = np.fromfile(p, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"cannot read image: {path} (not an image format OpenCV decodes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image (format from the suffix); a failed write is an
    :class:`InputError` (OpenCV only returns False)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise InputError(f"cannot write image: {path}")
