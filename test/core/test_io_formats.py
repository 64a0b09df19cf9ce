"""TUM, COCO and line-JSON helpers."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.io.formats import (
    coco_document,
    read_coco,
    read_lines,
    read_tum,
    write_json,
    write_lines,
    write_tum,
)


def test_tum_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    poses = np.array([make_pose(yaw_pitch_roll_matrix(*rng.uniform(-3, 3, 3)), rng.normal(size=3) * 50)
                      for _ in range(20)])
    stamps_ns = 1_700_000_000_000_000_000 + np.arange(20, dtype=np.int64) * 10_000_000 + 7
    write_tum(tmp_path / "t.tum", stamps_ns, poses)
    first = (tmp_path / "t.tum").read_text().splitlines()[0].split()[0]
    assert first == "1700000000.000000007"  # integer nanoseconds are written exactly
    got = read_tum(tmp_path / "t.tum")
    assert np.allclose(got.stamps_s, stamps_ns * 1e-9, atol=1e-6)
    assert np.allclose(got.poses, poses, atol=1e-6)


def test_tum_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.tum"
    p.write_text("# comment\n0 1 2 3 0 0 0 1\n1 2 3\n")
    with pytest.raises(InputError, match=r"bad.tum:3: expected 8 values"):
        read_tum(p)
    with pytest.raises(InputError, match="not found"):
        read_tum(tmp_path / "none.tum")


def test_coco_document_and_reader(tmp_path):
    doc = coco_document(
        [{"id": 1, "file_name": "a.png", "width": 4, "height": 3}],
        [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2], "area": 4}],
        {1: "car", 2: "pedestrian"},
    )
    assert doc["annotations"][0]["id"] == 1 and doc["annotations"][0]["iscrowd"] == 0
    write_json(tmp_path / "c.json", doc)
    assert read_coco(tmp_path / "c.json") == doc
    write_json(tmp_path / "bad.json", {"images": []})
    with pytest.raises(InputError, match="not a COCO"):
        read_coco(tmp_path / "bad.json")


def test_lines_round_trip_and_validation(tmp_path):
    lines = {"frame_000000.png": np.array([[1.234, 2.0, 30.5, 40.25]]), "frame_000001.png": np.zeros((0, 4))}
    write_lines(tmp_path / "l.json", lines)
    got = read_lines(tmp_path / "l.json")
    assert np.allclose(got["frame_000000.png"], [[1.23, 2.0, 30.5, 40.25]])
    assert got["frame_000001.png"].shape == (0, 4)
    write_json(tmp_path / "bad.json", {"x.png": [[1, 2, 3]]})
    with pytest.raises(InputError, match="x1, y1, x2, y2"):
        read_lines(tmp_path / "bad.json")
