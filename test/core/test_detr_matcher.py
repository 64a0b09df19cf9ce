"""Hungarian matching and box geometry on hand-made cases."""

from __future__ import annotations

import numpy as np
import torch

from lkd_perception.detection.matcher import (
    Targets,
    cxcywh_to_xyxy,
    generalized_box_iou,
    hungarian_match,
)


def _logits(probs):
    p = torch.tensor(probs, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


def test_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    g = generalized_box_iou(a, b)[0]
    assert np.allclose(g.numpy(), [1.0, 1 / 3, -1 / 3], atol=1e-6)
    box = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(cxcywh_to_xyxy(box), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))


def test_each_target_gets_the_query_on_it():
    # Query 0 sits on target 1, query 2 on target 0, query 1 is elsewhere.
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.9, 0.05, 0.05], [0.3, 0.3, 0.2, 0.2]]])
    logits = _logits([[[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]]])
    tgt = Targets(torch.tensor([0, 1]), torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]))
    (rows, cols), = hungarian_match(logits, boxes, [tgt])
    assert dict(zip(rows.tolist(), cols.tolist())) == {2: 0, 0: 1}


def test_class_cost_breaks_a_geometric_tie():
    # Two queries with the same box; the one confident in the target's class must win.
    boxes = torch.tensor([[[0.5, 0.5, 0.3, 0.3], [0.5, 0.5, 0.3, 0.3]]])
    logits = _logits([[[0.05, 0.95], [0.95, 0.05]]])
    tgt = Targets(torch.tensor([0]), torch.tensor([[0.5, 0.5, 0.3, 0.3]]))
    (rows, cols), = hungarian_match(logits, boxes, [tgt])
    assert rows.tolist() == [1] and cols.tolist() == [0]


def test_one_to_one_even_when_one_query_is_best_for_both():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]])
    logits = _logits([[[0.9], [0.1]]])
    tgt = Targets(torch.tensor([0, 0]), torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2]]))
    (rows, cols), = hungarian_match(logits, boxes, [tgt])
    assert sorted(rows.tolist()) == [0, 1] and sorted(cols.tolist()) == [0, 1]


def test_images_without_objects_and_batches():
    boxes = torch.rand(2, 3, 4) * 0.5 + 0.25
    logits = torch.zeros(2, 3, 2)
    empty = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    one = Targets(torch.tensor([1]), boxes[1, 2:3].clone())
    res = hungarian_match(logits, boxes, [empty, one])
    assert len(res[0][0]) == 0
    assert res[1][0].tolist() == [2] and res[1][1].tolist() == [0]
