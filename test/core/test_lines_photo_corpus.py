"""The photo corpus for line distillation: every image it takes has a recorded source and licence,
and the scenes of the labelled test/validation photographs are never taken."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.lines.photo_corpus import (
    OPENCV_DOC_DATA,
    OPENCV_PHOTOS,
    OPENCV_VIDEOS,
    SKIMAGE_PHOTOS,
    build_corpus,
    read_corpus,
)


def _fake_packages(root: Path) -> tuple[Path, Path]:
    """Unpacked-package layouts with small images under the real names, plus files that must not
    be taken (test/validation scenes, an unlisted file)."""
    rng = np.random.default_rng(0)
    ocv, sk = root / "ocv", root / "sk"
    data = ocv / OPENCV_DOC_DATA
    data.mkdir(parents=True)
    for name in (*OPENCV_PHOTOS, "box.png", "sudoku.png", "left01.jpg", "left05.jpg", "unlisted.png"):
        cv2.imwrite(str(data / name), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    video, every = OPENCV_VIDEOS[0]
    writer = cv2.VideoWriter(str(data / video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(2 * every + 1):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    for rel in (*SKIMAGE_PHOTOS, "skimage/data/camera.png", "skimage/data/rocket.jpg"):
        (sk / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sk / rel), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return ocv, sk


def test_every_image_taken_has_a_licence_and_no_fixture_scene_is_taken(tmp_path):
    ocv, sk = _fake_packages(tmp_path)
    images = build_corpus(tmp_path / "out", ocv, "4.6.0+dfsg-12", sk, "0.26.0")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["images"]
    assert len(manifest) == len(images) == len(OPENCV_PHOTOS) + 3 + len(SKIMAGE_PHOTOS)  # 3 video frames
    for rec in manifest:
        assert rec["licence"].strip() and rec["package"] and rec["version"] and rec["source_path"]
        assert (tmp_path / "out" / rec["file"]).is_file()
    taken = " ".join(r["source_path"] for r in manifest)
    for name in ("box.png", "sudoku.png", "left01.jpg", "left05.jpg", "unlisted.png", "camera.png", "rocket.jpg"):
        assert name not in taken
    files = {p.name for p in (tmp_path / "out").iterdir()} - {"manifest.json"}
    assert files == {r["file"] for r in manifest}  # nothing written without a record
    loaded = read_corpus(tmp_path / "out")
    assert len(loaded) == len(manifest) and loaded[0][1].shape == (24, 32, 3)


def test_missing_sources_are_clear_errors(tmp_path):
    ocv, sk = _fake_packages(tmp_path)
    (ocv / OPENCV_DOC_DATA / OPENCV_PHOTOS[0]).unlink()
    with pytest.raises(InputError, match="missing"):
        build_corpus(tmp_path / "out", ocv, "v", None, "")
    with pytest.raises(InputError, match="no source"):
        build_corpus(tmp_path / "out2")
    with pytest.raises(InputError, match="manifest"):
        read_corpus(tmp_path / "nothing")
