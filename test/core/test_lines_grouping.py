"""LSD-style grouping on ideal heat/direction maps (no network): segments come back where drawn."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.grouping import GroupedSegments, group_lines, merge_collinear, support_mask
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


def test_crossing_lines_come_back_whole():
    # Region growing gives the crossing's pixels to one line and cuts the other there; joining the
    # collinear pieces (merge_gap) makes it whole again. Without joining it stays cut.
    gt = np.array([[20.0, 60.0, 140.0, 60.0], [80.0, 10.0, 80.0, 110.0]])
    heat, theta = _maps(gt)
    cut = group_lines(heat, theta, LineConfig(merge_gap=0.0))
    assert len(cut.segments) == 3
    whole = group_lines(heat, theta, LineConfig())
    assert len(whole.segments) == 2
    assert _endpoint_error(whole.segments, gt).max() < 1.5


def test_pieces_too_far_apart_or_offset_stay_apart():
    gt = np.array([[10.0, 30.0, 60.0, 30.0], [68.0, 30.0, 140.0, 30.0],  # gap of 8 px > merge_gap 4
                   [10.0, 80.0, 70.0, 80.0], [72.0, 84.0, 140.0, 84.0]])  # 4 px sideways > merge_offset 1.5
    found = merge_collinear(GroupedSegments(gt, np.full(4, 0.9), np.ones(4)), 4.0, 1.5, 10.0)
    assert len(found.segments) == 4
    joined = merge_collinear(GroupedSegments(gt, np.full(4, 0.9), np.ones(4)), 10.0, 1.5, 10.0)
    assert len(joined.segments) == 3
    np.testing.assert_allclose(sorted(joined.segments[:, [0, 2]].ravel()), [10, 10, 70, 72, 140, 140], atol=1e-9)


def test_pieces_along_a_curve_are_not_joined():
    # chords of a circle of radius 60 px, each turning 8 deg: neighbours pass the angle and offset
    # tests pairwise, but the chain bends far more than the offset allows
    a = np.deg2rad(np.arange(0.0, 81.0, 8.0))
    pts = np.stack([80 + 60 * np.cos(a), 80 + 60 * np.sin(a)], axis=1)
    pieces = np.concatenate([pts[:-1], pts[1:]], axis=1)
    found = merge_collinear(GroupedSegments(pieces, np.full(len(pieces), 0.9), np.ones(len(pieces))), 4.0, 1.5, 10.0)
    assert len(found.segments) == len(pieces)


def test_confidence_is_the_total_heat_along_the_segment():
    heat, theta = _maps(np.array([[10.0, 20.0, 150.0, 20.0], [10.0, 80.0, 22.0, 80.0]]))  # 140 px and 12 px
    mean = group_lines(heat, theta, LineConfig(confidence_length=0.0))
    conf = group_lines(heat, theta, LineConfig(confidence_length=20.0))
    assert len(mean.segments) == len(conf.segments) == 2
    np.testing.assert_array_equal(mean.segments, conf.segments)
    length = np.hypot(*(conf.segments[:, 2:] - conf.segments[:, :2]).T)
    np.testing.assert_allclose(conf.scores, 1 - np.exp(-mean.scores * length / 20.0))
    long, short = np.argmax(length), np.argmin(length)
    assert mean.scores[short] > 0.75 * mean.scores[long]  # mean heat hardly tells them apart
    assert conf.scores[long] > 0.99 and conf.scores[short] < 0.5


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
