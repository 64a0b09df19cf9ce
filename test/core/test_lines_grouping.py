"""LSD-style grouping on ideal heat/direction maps (no network): segments come back where drawn."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.grouping import group_lines, support_mask
from lkd_perception.lines.synthetic import line_targets


def _maps(segments: np.ndarray, h: int = 120, w: int = 160):
    t = line_targets(segments, h, w)
    return t.heat, np.mod(0.5 * np.arctan2(t.sin2, t.cos2), np.pi)


def _endpoint_error(found: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """For every GT segment, the max endpoint error of its best-matching found segment."""
    errs = []
    for g in gt:
        fwd = np.abs(found - g).max(1)
        rev = np.abs(found - g[[2, 3, 0, 1]]).max(1)
        errs.append(np.minimum(fwd, rev).min())
    return np.array(errs)


def test_one_segment_per_octant_is_recovered():
    # one segment per direction octant: angle conventions (x right, y down, mod π) must all work
    centre = np.array([[40.0, 40.0], [120.0, 40.0], [40.0, 90.0], [120.0, 90.0]])
    angles = np.deg2rad([0.0, 22.5, 45.0, 67.5, 90.0, 112.5, 135.0, 157.5])
    for offset in (0, 4):
        gt = np.array([
            np.r_[c - 18 * np.array([np.cos(a), np.sin(a)]), c + 18 * np.array([np.cos(a), np.sin(a)])]
            for c, a in zip(centre, angles[offset:offset + 4])
        ])
        heat, theta = _maps(gt)
        found = group_lines(heat, theta, LineConfig())
        assert len(found.segments) == len(gt), found.segments
        assert _endpoint_error(found.segments, gt).max() < 1.0
        assert np.all(found.scores > 0.5) and np.all(found.scores <= 1.0)
        assert np.all(found.widths >= 1.0)


def test_corner_gives_two_segments():
    gt = np.array([[30.0, 30.0, 110.0, 30.0], [110.0, 30.0, 110.0, 100.0]])
    heat, theta = _maps(gt)
    found = group_lines(heat, theta, LineConfig())
    assert len(found.segments) == 2
    assert _endpoint_error(found.segments, gt).max() < 1.5


def test_nothing_in_an_empty_map_and_short_regions_dropped():
    heat = np.zeros((60, 80), np.float32)
    assert len(group_lines(heat, heat, LineConfig()).segments) == 0
    heat, theta = _maps(np.array([[10.0, 10.0, 13.0, 10.0]]), 60, 80)  # about 4 px long
    assert len(group_lines(heat, theta, LineConfig(min_region_size=30)).segments) == 0


def test_score_threshold_filters():
    heat, theta = _maps(np.array([[20.0, 20.0, 120.0, 80.0]]))
    assert len(group_lines(heat, theta, LineConfig()).segments) == 1
    assert len(group_lines(0.6 * heat, theta, LineConfig(score_threshold=0.9, heat_threshold=0.2)).segments) == 0


def test_length_scale_lowers_the_confidence_of_short_segments():
    heat, theta = _maps(np.array([[10.0, 20.0, 150.0, 20.0], [10.0, 80.0, 22.0, 80.0]]))  # 140 px and 12 px
    plain = group_lines(heat, theta, LineConfig())
    scaled = group_lines(heat, theta, LineConfig(score_length_scale=10.0))
    assert len(plain.segments) == len(scaled.segments) == 2
    long_first = np.argsort(-np.hypot(*(plain.segments[:, 2:] - plain.segments[:, :2]).T))
    s_plain, s_scaled = plain.scores[long_first], scaled.scores[long_first]
    length = np.hypot(*(scaled.segments[long_first, 2:] - scaled.segments[long_first, :2]).T)
    np.testing.assert_allclose(s_scaled, s_plain * (1 - np.exp(-length / 10.0)))
    assert s_scaled[0] > s_plain[0] * 0.99 and s_scaled[1] < 0.8 * s_plain[1]


def test_adaptive_threshold_keeps_the_ridge():
    heat, _ = _maps(np.array([[20.0, 60.5, 140.0, 60.5]]))
    plain = support_mask(heat, LineConfig(adaptive_block=0))
    ridge = support_mask(heat, LineConfig())
    assert ridge.sum() <= plain.sum() and ridge[60:62, 30:130].all()


def test_bad_maps_are_input_errors():
    with pytest.raises(InputError):
        group_lines(np.zeros((10, 10)), np.zeros((10, 11)), LineConfig())
    with pytest.raises(InputError):
        group_lines(np.zeros((0, 10)), np.zeros((0, 10)), LineConfig())
