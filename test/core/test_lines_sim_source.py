"""Labelled line images as training data (simulator frames, labelled photographs): loading,
clipping, cropping, caching."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.io.formats import read_ground_truth
from lkd_perception.lines.sim_source import (
    SimCrops,
    labelled_images,
    load_frames,
    render_sim_frames,
    save_frames,
)
from lkd_perception.lines.synthetic import SyntheticImage
from lkd_perception.sim.clip import clip_segments


def test_clip_segments_hand_cases():
    seg = np.array([
        [-10.0, 5.0, 30.0, 5.0],   # crosses the left border -> starts at x = 0
        [2.0, 2.0, 8.0, 8.0],      # inside -> unchanged
        [50.0, 50.0, 60.0, 60.0],  # outside -> dropped
        [0.0, 1.0, 3.0, 1.0],      # inside but shorter than min_length -> dropped
    ])
    out = clip_segments(seg, 0.0, 0.0, 20.0, 20.0, min_length=6.0)
    np.testing.assert_allclose(out, [[0.0, 5.0, 20.0, 5.0], [2.0, 2.0, 8.0, 8.0]])


def test_crops_carry_their_segments():
    # one frame with one horizontal segment across it at y = 30.25
    frame = SyntheticImage(rgb=np.zeros((120, 160, 3), np.uint8),
                           segments=np.array([[-0.5, 30.25, 159.5, 30.25]], np.float32),
                           crossings=np.zeros((0, 2), np.float32))
    crops = SimCrops([frame], scale_range=(1.0, 1.0))
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(20):
        c = crops(rng, 64, 64)
        assert c.rgb.shape == (64, 64, 3)
        for x1, y1, x2, y2 in c.segments:
            seen += 1
            # clipped to the crop's full width, shifted by a whole-pixel offset
            assert sorted([x1, x2]) == pytest.approx([-0.5, 63.5])
            assert y1 == pytest.approx(y2) and -0.5 <= y1 <= 63.5
            assert (30.25 - y1) == pytest.approx(round(30.25 - y1))
    assert seen > 0
    # a half-size shrink of the 160x120 frame is the whole 80x60 crop; pixel centres map as
    # (x + 0.5) * 0.5 - 0.5, so y = 30.25 -> 14.875 and the ends stay on the borders
    half = SimCrops([frame], scale_range=(0.5, 0.5))(rng, 60, 80)
    np.testing.assert_allclose(half.segments, [[-0.5, 14.875, 79.5, 14.875]], atol=1e-5)
    with pytest.raises(InputError):
        SimCrops([])
    with pytest.raises(InputError):
        crops(rng, 200, 200)


@pytest.mark.slow
def test_render_and_cache_round_trip(tmp_path):
    frames = render_sim_frames([("loop", 3)], 96, 72, seconds=1.0, rate_hz=1.0)
    assert len(frames) == 2 and frames[0].rgb.shape == (72, 96, 3)
    for f in frames:
        assert f.segments.shape[1] == 4
        assert np.all(f.segments[:, 0::2] >= -0.5 - 1e-6) and np.all(f.segments[:, 0::2] <= 95.5 + 1e-6)
    save_frames(frames, tmp_path / "f.npz")
    back = load_frames(tmp_path / "f.npz")
    assert len(back) == 2
    for a, b in zip(frames, back):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.segments, b.segments)
    with pytest.raises(InputError):
        load_frames(tmp_path / "none.npz")


def test_labelled_photographs_load_with_their_segments(tmp_path):
    gt_path = Path(__file__).resolve().parents[1] / "fixtures" / "lines_real_val" / "gt.json"
    frames = labelled_images(gt_path)
    gt = read_ground_truth(gt_path)
    assert len(frames) == len(gt) == 4
    for f, name in zip(frames, sorted(gt)):
        assert f.rgb.shape == (gt[name].height, gt[name].width, 3) and f.rgb.dtype == np.uint8
        np.testing.assert_allclose(f.segments, gt[name].lines, atol=1e-4)
    # an image whose size disagrees with its label is refused, not stretched
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 50), np.uint8))
    (tmp_path / "gt.json").write_text(json.dumps({"a.png": {"width": 60, "height": 40, "lines": [[1, 1, 20, 1]]}}))
    with pytest.raises(InputError, match="50x40"):
        labelled_images(tmp_path / "gt.json")
