"""The shipped LSDNet model with the grouping: known segments of a clean image come back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lkd_perception.common.errors import InputError, ModelError
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.runtime import LineDetector, resolve_model_path

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "lsdnet.onnx"

# Dark convex polygons on a light background, well apart, vertices off the pixel grid: the
# clean, high-contrast case. Their edges (region boundaries) are the segments.
POLYGONS = [
    np.array([[15.3, 20.2], [62.7, 12.4], [70.1, 55.6], [22.8, 60.3]]),
    np.array([[95.2, 15.7], [148.6, 40.3], [101.9, 62.2]]),
    np.array([[30.4, 75.1], [140.2, 82.6], [128.7, 108.3], [40.6, 104.9]]),
]
EDGES = np.concatenate([np.concatenate([p, np.roll(p, -1, axis=0)], axis=1) for p in POLYGONS])


def _draw(polygons: list[np.ndarray], h: int, w: int, scale: int = 1) -> np.ndarray:
    """8x supersampled, INTER_AREA-reduced polygons (REFERENCE 2.6), ``scale`` times larger."""
    s = 8 * scale
    hi = np.full((h * s, w * s), 225, np.uint8)
    for poly in polygons:
        pts = np.round(((poly + 0.5) * s - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(hi, [pts], 30, cv2.LINE_8, 4)
    grey = cv2.resize(hi, (w * scale, h * scale), interpolation=cv2.INTER_AREA)
    return np.dstack([grey] * 3)


def _errors(found: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per GT segment: the max endpoint error of the closest detection (either endpoint order)."""
    out = []
    for g in gt:
        fwd = np.abs(found - g).reshape(-1, 2, 2)
        rev = np.abs(found - g[[2, 3, 0, 1]]).reshape(-1, 2, 2)
        e = np.minimum(np.linalg.norm(fwd, axis=2).max(1), np.linalg.norm(rev, axis=2).max(1))
        out.append(e.min() if len(e) else np.inf)
    return np.array(out)


@pytest.fixture(scope="module")
def detector() -> LineDetector:
    det = LineDetector(LineConfig(model_path=str(SHIPPED), threads=1))  # default input 480x352
    assert det.output_stride == 2  # maps of 240x176
    return det


def test_clean_segments_come_back_within_1_5_px(detector):
    # the polygons drawn at 320x240: the size the network input is closest to
    found = detector.detect(_draw(POLYGONS, 120, 160, scale=2))
    edges = (EDGES + 0.5) * 2 - 0.5
    err = _errors(found.segments, edges)
    assert np.all(err <= 1.5), (err, found.segments)
    # nothing spurious ranks among the edges: the most confident len(EDGES) detections are the edges
    # (an extra, if any, is a weak flank beside an edge and scores below all of them)
    strong = found.segments[np.argsort(-found.scores)[:len(EDGES)]]
    assert np.all(_errors(edges, strong) <= 1.5), (found.segments, found.scores)
    assert np.all((found.scores > 0.0) & (found.scores < 1.0))


def test_coordinates_are_in_input_pixels(detector):
    # the same polygons drawn at 640x480: the maps are 240x176 and the result is scaled back to
    # the 640x480 image, so errors are larger in its pixels but still small
    found = detector.detect(_draw(POLYGONS, 120, 160, scale=4))
    err = _errors(found.segments, (EDGES + 0.5) * 4 - 0.5)
    assert np.median(err) <= 2.0 and np.sum(err <= 3.0) >= len(EDGES) - 1, err


def test_bad_images_are_input_errors(detector):
    for bad in (np.zeros((120, 160), np.uint8), np.zeros((120, 160, 3), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(InputError):
            detector.detect(bad)


def test_missing_or_foreign_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LineDetector(LineConfig(model_path=str(tmp_path / "nope.onnx")))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError):
        LineDetector(LineConfig(model_path=str(junk)))


def test_relative_model_path_resolves_to_the_repository():
    assert resolve_model_path("models/lsdnet.onnx").resolve() == SHIPPED.resolve()
