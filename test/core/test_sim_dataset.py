"""Training-set generation: labels, determinism, the CLI entry."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lkd_perception.cli import main
from lkd_perception.io.formats import read_coco, read_lines
from lkd_perception.sim.dataset import iter_frames, write_detection_dataset


@pytest.mark.slow
def test_iter_frames_gives_labelled_varied_views():
    frames = list(iter_frames(6, seed=11, width=160, height=120, frames_per_world=3))
    assert [f.file_name for f in frames] == [f"frame_{i:06d}.png" for i in range(6)]
    assert all(f.rgb.shape == (120, 160, 3) for f in frames)
    assert sum(len(f.boxes) for f in frames) > 0
    assert sum(len(f.lines) for f in frames) > 0
    # views differ (random poses and worlds)
    assert len({hashlib.sha256(f.rgb.tobytes()).hexdigest() for f in frames}) == 6
    for f in frames:
        for b in f.boxes:
            x, y, w, h = b.bbox
            assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 120 and 0 < b.visibility <= 1
            assert b.category_id in (1, 2, 3, 4)
        if len(f.lines):
            assert f.lines[:, [0, 2]].min() >= -0.5 and f.lines[:, [0, 2]].max() <= 159.5


@pytest.mark.slow
def test_same_seed_same_images_and_labels():
    a = list(iter_frames(2, seed=5, width=96, height=72, frames_per_world=2))
    b = list(iter_frames(2, seed=5, width=96, height=72, frames_per_world=2))
    c = list(iter_frames(2, seed=6, width=96, height=72, frames_per_world=2))
    assert all(np.array_equal(x.rgb, y.rgb) and x.boxes == y.boxes and np.array_equal(x.lines, y.lines)
               for x, y in zip(a, b))
    assert not np.array_equal(a[0].rgb, c[0].rgb)


@pytest.mark.slow
def test_detection_dataset_files(tmp_path):
    s = write_detection_dataset(tmp_path / "det", frames=3, seed=2, width=128, height=96)
    doc = read_coco(tmp_path / "det" / "annotations.json")
    assert len(doc["images"]) == 3 == s.frames
    assert len(doc["annotations"]) == s.boxes
    for im in doc["images"]:
        assert (tmp_path / "det" / "images" / im["file_name"]).is_file()


@pytest.mark.slow
def test_cli_writes_a_lines_dataset(tmp_path, capsys):
    rc = main(["simulate", "--dataset", "lines", "--frames", "2", "--out", str(tmp_path / "ln"),
               "--width", "128", "--height", "96", "--seed", "3"])
    assert rc == 0
    lines = read_lines(tmp_path / "ln" / "lines.json")
    assert set(lines) == {"frame_000000.png", "frame_000001.png"}
    assert '"kind": "lines"' in capsys.readouterr().out


def test_cli_rejects_a_bad_scenario_cleanly(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path / "x"), "--scenario", "moon"])
    assert "invalid choice" in capsys.readouterr().err
