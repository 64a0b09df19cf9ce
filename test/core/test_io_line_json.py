"""The line-JSON readers (simulator ground truth, predictions, labelled ground truth) share one
row parser: they accept and refuse the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.io.formats import read_ground_truth, read_lines, read_predictions, write_json


@pytest.mark.parametrize("rows", [[[1, 2, float("nan"), 4, 0.5]], [[1, 2, 3]], [["a", 2, 3, 4, 0.5]], [1, 2, 3, 4]])
def test_every_reader_refuses_the_same_rows(tmp_path, rows):
    path = tmp_path / "l.json"
    write_json(path, {"a.png": rows})
    for reader in (read_lines, read_predictions):
        with pytest.raises(InputError, match=r"a\.png"):
            reader(path)
    write_json(path, {"a.png": {"width": 10, "height": 10, "lines": [r[:4] if isinstance(r, list) else r
                                                                       for r in rows]}})
    with pytest.raises(InputError, match=r"a\.png"):
        read_ground_truth(path)


def test_columns_and_empty_images(tmp_path):
    path = tmp_path / "l.json"
    write_json(path, {"a.png": [[1, 2, 3, 4, 0.5]], "b.png": []})
    assert read_lines(path)["a.png"].shape == (1, 5) and read_predictions(path)["b.png"].shape == (0, 5)
    write_json(path, {"a.png": [[1, 2, 3, 4]], "b.png": []})
    assert read_lines(path)["b.png"].shape == (0, 4)
    with pytest.raises(InputError, match="5 numbers"):
        read_predictions(path)  # a prediction without a score
    write_json(path, {"a.png": {"width": 64, "height": 48, "lines": [[1, 2, 3, 4]]}})
    gt = read_ground_truth(path)["a.png"]
    assert (gt.width, gt.height) == (64, 48)
    np.testing.assert_array_equal(gt.lines, [[1, 2, 3, 4]])
