"""The oriented-box encoding of line segments round-trips endpoints (DESIGN: 'recovered exactly')."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lkd_perception.common.errors import InputError
from lkd_perception.io.line_encoding import boxes_to_segments, segments_to_boxes

coords = st.floats(min_value=-5000.0, max_value=5000.0, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 20), st.just(4)), elements=coords))
def test_round_trip_recovers_endpoints_in_order(seg):
    boxes = segments_to_boxes(seg, 2.0)
    back = boxes_to_segments(boxes.centers, boxes.thetas, boxes.lengths)
    assert back.shape == seg.shape
    # exact up to float64 rounding of values up to 5000 px
    np.testing.assert_allclose(back, seg, rtol=0, atol=1e-9)
    # and the box itself is the segment's (a scale or offset undone on decoding would still round-trip)
    p, q = seg[:, :2], seg[:, 2:]
    np.testing.assert_allclose(boxes.centers, (p + q) / 2, rtol=0, atol=1e-9)
    np.testing.assert_allclose(boxes.lengths, np.linalg.norm(q - p, axis=1), rtol=1e-12, atol=1e-9)
    assert np.all(np.abs(boxes.thetas) <= np.pi)
    assert np.all(boxes.widths == 2.0)


def test_known_box():
    boxes = segments_to_boxes(np.array([[10.0, 20.0, 10.0, 30.0]]), np.array([1.5]))
    np.testing.assert_allclose(boxes.centers, [[10.0, 25.0]])
    np.testing.assert_allclose(boxes.thetas, [np.pi / 2])  # y down: pointing down the image
    np.testing.assert_allclose(boxes.lengths, [10.0])
    np.testing.assert_allclose(boxes.widths, [1.5])


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError):
        segments_to_boxes(np.zeros((3, 5)))
    with pytest.raises(InputError):
        boxes_to_segments(np.zeros((2, 2)), np.zeros(3), np.zeros(2))
