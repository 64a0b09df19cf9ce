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

# Dark strokes (their centre lines are the segments) on a light background, one direction per
# octant (0, 22.5, ..., 157.5 deg), each in its own 40x60 cell: the clean, high-contrast case.
_ANGLES = np.deg2rad(np.arange(8) * 22.5)
_CENTRES = np.array([[20.0 + 40.0 * (k % 4), 30.0 + 60.0 * (k // 4)] for k in range(8)])
_HALF = 14.0 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
STROKES = np.concatenate([_CENTRES - _HALF, _CENTRES + _HALF], axis=1) + 0.3  # off the pixel grid


def _draw(segments: np.ndarray, h: int, w: int, scale: int = 1) -> np.ndarray:
    """Anti-aliased 2 px strokes (8x supersampled polygons), drawn ``scale`` times larger."""
    s = 8 * scale
    hi = np.full((h * s, w * s), 235, np.uint8)
    for x1, y1, x2, y2 in segments:
        p, q = np.array([x1, y1]), np.array([x2, y2])
        u = (q - p) / np.linalg.norm(q - p)
        n = np.array([-u[1], u[0]])
        quad = np.array([p - n, q - n, q + n, p + n])
        pts = np.round(((quad + 0.5) * s - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(hi, [pts], 25, cv2.LINE_8, 4)
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
    return LineDetector(LineConfig(model_path=str(SHIPPED), input_width=160, input_height=120, threads=1))


def test_clean_segments_come_back_within_1_5_px(detector):
    found = detector.detect(_draw(STROKES, 120, 160))
    err = _errors(found.segments, STROKES)
    assert np.all(err <= 1.5), (err, found.segments)
    assert len(found) == len(STROKES), found.segments  # nothing spurious on a clean image
    assert np.all((found.scores > 0.5) & (found.scores <= 1.0))


def test_coordinates_are_in_input_pixels(detector):
    # the same strokes drawn at twice the size: the network sees them at 160x120 and the
    # result is scaled back, so errors are at most twice as large
    found = detector.detect(_draw(STROKES, 120, 160, scale=2))
    gt2 = (STROKES + 0.5) * 2 - 0.5
    assert np.all(_errors(found.segments, gt2) <= 3.0)


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
