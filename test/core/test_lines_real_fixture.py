"""The hand-labelled real-photograph line fixtures stay sound.

Why: ``test/fixtures/lines_real`` is the real-image half of the line-detector target (issue 5) and
``test/fixtures/lines_real_val`` the photographs the grouping settings are chosen on. A label that
was typed wrong, an image that was swapped, or a refinement rerun that went astray would silently
change sAP/F^H, so each segment must lie inside its image and on a strong edge.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lkd_perception.io.formats import read_ground_truth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: fixture folder -> fewest images it must hold
SETS = {"lines_real": 5, "lines_real_val": 4}
# grey levels per pixel after a sigma-1 blur; the faintest labelled line (a thin sudoku grid line)
# measures about 4.7, plain background about 1-3
MIN_EDGE_STRENGTH = 4.0
HALF_WINDOW = 2.0  # px either side of the segment where the edge (or a thin line's flanks) may lie


def _gradient_magnitude(grey: np.ndarray) -> np.ndarray:
    img = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return np.hypot(gx, gy)


def edge_strength(mag: np.ndarray, seg: np.ndarray, shift: float = 0.0) -> float:
    """Mean over 1 px steps along ``seg`` of the strongest gradient within +-HALF_WINDOW across it."""
    p, q = seg[:2], seg[2:]
    length = float(np.hypot(*(q - p)))
    u = (q - p) / length
    n = np.array([-u[1], u[0]])
    t = np.linspace(0.0, length, int(length) + 1)
    offsets = np.arange(-HALF_WINDOW, HALF_WINDOW + 1e-9, 0.5) + shift
    pts = p[None, None] + t[:, None, None] * u + offsets[None, :, None] * n
    vals = cv2.remap(mag, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(vals.max(axis=1).mean())


@pytest.fixture(scope="module", params=sorted(SETS))
def fixture_dir(request) -> Path:
    return FIXTURES / request.param


@pytest.fixture(scope="module")
def gt(fixture_dir):
    return read_ground_truth(fixture_dir / "gt.json")


@pytest.fixture(scope="module")
def magnitudes(gt, fixture_dir):
    out = {}
    for name in gt:
        grey = cv2.imread(str(fixture_dir / name), cv2.IMREAD_GRAYSCALE)
        assert grey is not None, name
        out[name] = _gradient_magnitude(grey)
    return out


def test_fixture_loads_with_its_images(gt, magnitudes, fixture_dir):
    assert len(gt) >= SETS[fixture_dir.name]
    for name, label in gt.items():
        h, w = magnitudes[name].shape
        assert (label.width, label.height) == (w, h), name
        assert len(label.lines) >= 5, name


def test_rough_and_refined_labels_correspond(gt, fixture_dir):
    rough = json.loads((fixture_dir / "rough.json").read_text(encoding="utf-8"))
    assert set(rough) == set(gt)
    for name, label in gt.items():
        r = np.asarray(rough[name]["lines"], np.float64)
        assert r.shape == label.lines.shape, name
        # refinement only snaps: each midpoint stays within a few pixels of the hand-placed one
        mid_r = (r[:, :2] + r[:, 2:]) / 2
        mid_g = (label.lines[:, :2] + label.lines[:, 2:]) / 2
        p, d = r[:, :2], r[:, 2:] - r[:, :2]
        n = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
        across = np.abs(np.sum((mid_g - p) * n, axis=1))
        assert across.max() < 6.0, (name, int(np.argmax(across)))
        assert np.all(np.linalg.norm(mid_g - mid_r, axis=1) < 0.5 * np.linalg.norm(d, axis=1) + 6), name


def test_every_segment_inside_its_image_and_long_enough(gt):
    for name, label in gt.items():
        seg = label.lines
        assert np.all(seg[:, 0::2] >= 0) and np.all(seg[:, 0::2] <= label.width - 1), name
        assert np.all(seg[:, 1::2] >= 0) and np.all(seg[:, 1::2] <= label.height - 1), name
        lengths = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
        assert lengths.min() >= 10.0, (name, int(np.argmin(lengths)))


def test_every_segment_lies_on_a_strong_edge(gt, magnitudes):
    for name, label in gt.items():
        weak = [(i, round(s, 1)) for i, seg in enumerate(label.lines)
                if (s := edge_strength(magnitudes[name], seg)) < MIN_EDGE_STRENGTH]
        assert not weak, f"{name}: segments off any edge (index, strength): {weak}"


def test_validation_and_test_photographs_are_distinct():
    """Settings chosen on the validation photographs say nothing about the test set if they overlap."""
    names = [set(read_ground_truth(FIXTURES / d / "gt.json")) for d in SETS]
    assert not set.intersection(*names)
    pixels = [cv2.imread(str(FIXTURES / d / n), cv2.IMREAD_GRAYSCALE).tobytes()
              for d in SETS for n in read_ground_truth(FIXTURES / d / "gt.json")]
    assert len(set(pixels)) == len(pixels)


def test_edge_check_rejects_displaced_labels(gt, magnitudes):
    """The same segments moved 8 px sideways must fail the check often, or it proves nothing."""
    failed = total = 0
    for name, label in gt.items():
        for seg in label.lines:
            total += 1
            failed += min(edge_strength(magnitudes[name], seg, s) for s in (-8.0, 8.0)) < MIN_EDGE_STRENGTH
    assert failed / total > 0.3, f"{failed}/{total}"
