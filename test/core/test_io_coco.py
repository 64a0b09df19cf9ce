"""The one COCO reader: which boxes are trained on (one rule for every detector family), image
lookup, the evaluation document, and the in-memory sets of DETR and DEIMv2 built on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.toy_coco import write_toy_coco

from lkd_perception.common.errors import InputError
from lkd_perception.detection.preprocess import deimv2_resize
from lkd_perception.detection.train_data import load_detection_data
from lkd_perception.io.coco import MIN_BOX_PX, load_coco


def _write(tmp_path, annotations, images=None):
    images = images or [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}]
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 3, "name": "cyclist"}, {"id": 1, "name": "car"}]}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def test_one_box_rule(tmp_path):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 10, 5]},                  # kept
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, MIN_BOX_PX, MIN_BOX_PX]},  # kept: exactly 1 px
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0.5, 8]},                 # sub-pixel width
        {"id": 4, "image_id": 7, "category_id": 1, "bbox": [5, 5, 8, 0.0]},                 # zero height
        {"id": 5, "image_id": 7, "category_id": 1, "bbox": [5, 5, 8, 8], "iscrowd": 1},     # crowd
        {"id": 6, "image_id": 7, "category_id": 9, "bbox": [5, 5, 8, 8]},                   # unknown category
        {"id": 7, "image_id": 99, "category_id": 1, "bbox": [5, 5, 8, 8]},                  # unknown image
    ]
    cs = load_coco(_write(tmp_path, anns))
    assert cs.class_names == ("car", "cyclist") and cs.category_ids == (1, 3)
    (im,) = cs.images
    np.testing.assert_allclose(im.boxes_xyxy, [[1, 2, 11, 7], [0, 0, 1, 1]])
    assert im.classes.tolist() == [0, 1]
    # evaluation sees the file's own annotations of the image, crowd and small ones included
    assert [a["id"] for a in cs.ground_truth()["annotations"]] == [1, 2, 3, 4, 5, 6]


def test_folder_head_and_image_list_only(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 4, "height": 4} for i in (3, 1, 2)]
    path = _write(tmp_path, [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]}], images)
    cs = load_coco(tmp_path)  # a folder means its annotations.json
    assert [im.image_id for im in cs.head(2).images] == [3, 1]  # file order
    assert [i["id"] for i in cs.head(2).ground_truth()["images"]] == [3, 1]
    assert cs.head(2).ground_truth()["annotations"] == []
    assert cs.head(0) is cs
    doc = json.loads(path.read_text())
    del doc["annotations"]
    path.write_text(json.dumps(doc))
    assert all(len(im.boxes_xyxy) == 0 for im in load_coco(path).images)


def test_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a COCO"):
        load_coco(tmp_path / "list.json")
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(InputError, match="no images"):
        load_detection_data(tmp_path / "empty.json", 32, deimv2_resize)


def test_the_deimv2_set_holds_the_readers_boxes_and_the_runtimes_pixels(tmp_path):
    """DEIMv2 trains on the objects the COCO reader keeps, resized as its runtime resizes."""
    write_toy_coco(tmp_path, frames=3, seed=2, width=64, height=48)
    deim = load_detection_data(tmp_path, 32, deimv2_resize)
    cs = load_coco(tmp_path)
    assert deim.image_ids == [im.image_id for im in cs.images]
    for a, im in zip(deim.boxes, cs.images):
        assert len(a) == len(im.boxes_xyxy) > 0
        np.testing.assert_allclose(a[:, 0] * 64, (im.boxes_xyxy[:, 0] + im.boxes_xyxy[:, 2]) / 2, atol=1e-4)
        np.testing.assert_allclose(a[:, 3] * 48, im.boxes_xyxy[:, 3] - im.boxes_xyxy[:, 1], atol=1e-4)
    np.testing.assert_array_equal(deim.images[0], deimv2_resize(np.asarray(_rgb(cs.images[0].path)), 32)[0])


def _rgb(path):
    from lkd_perception.io.formats import read_rgb

    return read_rgb(path)
