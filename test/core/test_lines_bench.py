"""Pieces of ``lkd bench lines`` / ``lkd train lines`` that live in the core: the held-out set
written for ``lkd evaluate lines``, the simulator frame cache, and the command-line forms."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.common.errors import ConfigError
from lkd_perception.io.formats import read_ground_truth, read_rgb
from lkd_perception.lines.bench import HeldOut, heldout_images, save_heldout
from lkd_perception.lines.sim_source import cached_sim_frames, parse_sim_runs, parse_size


def test_saved_heldout_set_reads_back(tmp_path):
    images = heldout_images(HeldOut(source="synthetic", count=2, seed=3, width=96, height=64))
    save_heldout(images, tmp_path / "held")
    gt = read_ground_truth(tmp_path / "held" / "gt.json")
    assert sorted(gt) == ["heldout_0000.png", "heldout_0001.png"]
    for name, scene in zip(sorted(gt), images):
        assert (gt[name].width, gt[name].height) == (96, 64) and len(scene.segments) > 0
        np.testing.assert_allclose(gt[name].lines, scene.segments, atol=5e-4)
        np.testing.assert_array_equal(read_rgb(tmp_path / "held" / name), scene.rgb)


@pytest.mark.slow
def test_simulator_frames_are_rendered_once(tmp_path):
    cache = tmp_path / "frames.npz"
    first = cached_sim_frames([("loop", 3)], 64, 48, 2.0, cache)
    assert cache.is_file() and len(first) == 3  # t = 0, 1, 2 s
    again = cached_sim_frames([("urban", 99)], 64, 48, 2.0, cache)  # the cache wins, whatever the runs
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.segments, b.segments)


def test_command_line_forms():
    assert parse_sim_runs("urban:1001, loop:2") == [("urban", 1001), ("loop", 2)]
    assert parse_size("640X480") == (640, 480)
    for bad in ("urban", "urban:x", "urban:1,loop"):
        with pytest.raises(ConfigError, match="scenario:seed"):
            parse_sim_runs(bad)
    with pytest.raises(ConfigError, match="WxH"):
        parse_size("640")
