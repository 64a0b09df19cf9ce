"""sAP and F^H: perfect on ground truth against itself, right values on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.eval.lines import evaluate_lines, heatmap_scores, rescale, structural_ap, voc_ap
from lkd_perception.lines.synthetic import render_scene


def test_ground_truth_against_itself_is_perfect():
    rng = np.random.default_rng(7)
    scenes = [render_scene(rng, 120, 160) for _ in range(3)]
    gts = [s.segments for s in scenes]
    preds = [np.c_[g, rng.uniform(0.5, 1.0, len(g))] for g in gts]
    m = evaluate_lines(preds, gts, [(160, 120)] * 3)
    assert m.sap5 == pytest.approx(100.0) and m.sap10 == pytest.approx(100.0) and m.sap15 == pytest.approx(100.0)
    assert m.f_h == pytest.approx(100.0)
    assert m.ground_truth == m.predictions == sum(len(g) for g in gts)


def test_structural_ap_hand_computed():
    # 128x128 image, so no rescale. Scores descending: p1 hits g1 (d = 1 + 1 = 2); p2 is g1 reversed
    # (d = 0) but g1 is taken -> FP; p3 is 2 px off g2 (d = 4 + 4 = 8): FP at 5, TP at 10 and 15.
    gt = np.array([[0, 0, 10, 0], [0, 20, 10, 20]], float)
    pred = np.array([[0, 22, 10, 22, 0.7], [0, 1, 10, 1, 0.9], [10, 0, 0, 0, 0.8]], float)
    sap = structural_ap([pred], [gt], [(128, 128)])
    assert sap[5.0] == pytest.approx(50.0)  # P=1 up to R=0.5, never reaches R=1
    assert sap[10.0] == pytest.approx(100.0 * (0.5 * 1.0 + 0.5 * 2 / 3))
    assert sap[15.0] == pytest.approx(sap[10.0])


def test_structural_ap_rescales_each_image_to_128():
    # In a 256x256 image a 2 px offset on both endpoints is 1 px at 128: d = 2 < 5
    gt = np.array([[0, 0, 100, 0]], float)
    pred = np.array([[0, 2, 100, 2, 1.0]])
    assert structural_ap([pred], [gt], [(256, 256)], (5.0,))[5.0] == pytest.approx(100.0)
    # ...while at 128x128 the same offset is d = 8 > 5
    assert structural_ap([pred], [gt], [(128, 128)], (5.0,))[5.0] == pytest.approx(0.0)
    scaled = rescale(np.array([[64, 32, 640, 480]]), 640, 480)
    np.testing.assert_allclose(scaled, [[12.8, 8.533333, 128, 128]], rtol=1e-5)


def test_voc_ap_of_an_all_wrong_detector_is_zero():
    assert voc_ap(np.zeros(5, bool), np.arange(5.0), 3) == 0.0


def test_heatmap_f_hand_computed():
    # One 11-px ground-truth line; the prediction has it plus an equally long line far away:
    # precision = 11/22, recall = 1 -> F = 2 * 0.5 / 1.5.
    gt = np.array([[10, 50, 20, 50]], float)
    pred = np.array([[10, 50, 20, 50, 0.9], [10, 90, 20, 90, 0.9]])
    f, _ = heatmap_scores([pred], [gt], [(100, 100)])
    assert f == pytest.approx(100 * 2 / 3)
    # A 1 px shift is within the tolerance (1 % of the diagonal = 1.41 px), a 3 px shift is not
    assert heatmap_scores([np.array([[10, 51, 20, 51, 1.0]])], [gt], [(100, 100)])[0] == pytest.approx(100.0)
    assert heatmap_scores([np.array([[10, 53, 20, 53, 1.0]])], [gt], [(100, 100)])[0] == pytest.approx(0.0)


def test_score_threshold_sweep_picks_the_best_f():
    # The low-score prediction is wrong: dropping it (a higher threshold) gives F = 1.
    gt = np.array([[10, 50, 20, 50]], float)
    pred = np.array([[10, 50, 20, 50, 0.9], [10, 90, 20, 90, 0.1]])
    assert heatmap_scores([pred], [gt], [(100, 100)])[0] == pytest.approx(100.0)


def test_bad_input_is_reported():
    with pytest.raises(InputError):
        structural_ap([np.zeros((1, 5))], [], [(10, 10)])
    with pytest.raises(InputError):
        evaluate_lines([np.array([[0, 0, np.nan, 1, 1]])], [np.zeros((1, 4))], [(10, 10)])
    with pytest.raises(InputError):
        rescale(np.zeros((1, 4)), 0, 10)
