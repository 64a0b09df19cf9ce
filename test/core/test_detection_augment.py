"""Augmentation keeps boxes on their objects (letterbox, scale/translate, flip)."""

from __future__ import annotations

import numpy as np

from lkd_perception.detection.augment import AugmentSettings, prepare_sample


def test_boxes_follow_the_pixels():
    img = np.zeros((60, 120, 3), np.uint8)
    img[10:40, 70:100] = (255, 0, 0)
    box = np.array([[70, 10, 100, 40]], np.float32)
    s = AugmentSettings(hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0.5, scale=0.4, translate=0.2)
    seen_flip = False
    for seed in range(12):
        out, b, c = prepare_sample(img, box, np.array([2]), 96, s, np.random.default_rng(seed))
        assert out.shape == (96, 96, 3)
        if len(b) == 0:
            continue
        assert c.tolist() == [2]
        x1, y1, x2, y2 = np.round(b[0]).astype(int)
        inner = out[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
        assert inner.size and (inner[..., 0] > 200).mean() > 0.95
        seen_flip |= x1 < 48
    assert seen_flip


def test_boxes_pushed_out_of_view_are_dropped():
    img = np.zeros((64, 64, 3), np.uint8)
    box = np.array([[0, 0, 6, 6]], np.float32)
    s = AugmentSettings(0, 0, 0, 0, scale=0.0, translate=0.5)
    counts = [len(prepare_sample(img, box, np.array([0]), 64, s, np.random.default_rng(i))[1]) for i in range(20)]
    assert 0 in counts and 1 in counts
