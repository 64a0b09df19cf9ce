"""Task-aligned assigner on hand-made cases."""

from __future__ import annotations

import torch

from lkd_perception.detection.assigner import TaskAlignedAssigner


def _grid(n: int = 10, stride: float = 10.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    return torch.stack((xs, ys), -1).view(-1, 2) * stride


def _run(gt_boxes, gt_labels, pred_boxes=None, pred_scores=None, top_k=10, nc=2, mask=None):
    anchors = _grid()
    a = anchors.shape[0]
    if pred_boxes is None:  # every anchor predicts a 20x20 box around itself
        pred_boxes = torch.cat((anchors - 10, anchors + 10), -1)
    if pred_scores is None:
        pred_scores = torch.full((a, nc), 0.5)
    gtb = torch.tensor(gt_boxes, dtype=torch.float32).view(1, -1, 4)
    gtl = torch.tensor(gt_labels).view(1, -1)
    m = torch.ones(gtl.shape, dtype=torch.bool) if mask is None else torch.tensor(mask).view(1, -1)
    return anchors, TaskAlignedAssigner(nc, top_k=top_k)(pred_scores[None], pred_boxes[None], anchors, gtl, gtb, m)


def test_only_anchors_inside_the_box_are_positive():
    anchors, out = _run([[20, 20, 60, 60]], [1])
    fg = out.foreground[0]
    inside = (anchors[:, 0] > 20) & (anchors[:, 0] < 60) & (anchors[:, 1] > 20) & (anchors[:, 1] < 60)
    assert fg.sum() == 10 and not (fg & ~inside).any()  # 16 inside, top-10 kept
    assert torch.equal(out.boxes[0, fg], torch.tensor([[20.0, 20, 60, 60]]).expand(10, 4))
    assert (out.scores[0, fg, 0] == 0).all() and (out.scores[0, fg, 1] > 0).all()
    assert (out.scores[0, ~fg] == 0).all()


def test_top_k_limits_positives_and_prefers_aligned_predictions():
    anchors = _grid()
    pred = torch.cat((anchors - 10, anchors + 10), -1)
    best = 5 * 10 + 5  # anchor at (55, 55); make it predict the gt box exactly
    pred[best] = torch.tensor([40.0, 40, 70, 70])
    _, out = _run([[40, 40, 70, 70]], [0], pred_boxes=pred, top_k=3)
    fg = out.foreground[0]
    assert fg.sum() == 3 and fg[best]
    # normalised target: the best-aligned anchor gets the box's best IoU (exact prediction -> 1)
    assert torch.isclose(out.scores[0, best, 0], torch.tensor(1.0), atol=1e-4)
    assert (out.scores[0, fg, 0] <= out.scores[0, best, 0] + 1e-6).all()


def test_anchor_claimed_by_two_boxes_goes_to_larger_overlap():
    anchors = _grid()
    pred = torch.cat((anchors - 10, anchors + 10), -1)
    # both boxes contain anchor (45, 45); its 20x20 prediction overlaps box B far more than box A
    _, out = _run([[0, 0, 100, 100], [35, 35, 55, 55]], [0, 1], pred_boxes=pred, top_k=100)
    i = 4 * 10 + 4
    assert out.foreground[0, i] and out.gt_index[0, i] == 1
    assert out.scores[0, i, 1] > 0 and out.scores[0, i, 0] == 0


def test_padding_and_empty_ground_truth():
    _, out = _run([[20, 20, 60, 60], [0, 0, 0, 0]], [1, 0], mask=[True, False])
    assert out.foreground[0].sum() == 10 and (out.gt_index[0, out.foreground[0]] == 0).all()
    anchors = _grid()
    empty = TaskAlignedAssigner(2)(torch.rand(1, 100, 2), torch.rand(1, 100, 4), anchors,
                                    torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, 4),
                                    torch.zeros(1, 0, dtype=torch.bool))
    assert not empty.foreground.any() and empty.scores.sum() == 0
