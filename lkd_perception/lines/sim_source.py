"""Labelled line images beside the synthetic shapes: simulator renders and labelled photographs.

The drive simulator (:mod:`lkd_perception.sim`) projects the visible 3-D edges of its world into
each camera frame (``CameraFrame.lines``; pixel centres at integers, the same convention as the
synthetic shapes). Frames are rendered once per call, sparsely in time so that consecutive
frames differ, and can be cached in an ``.npz`` so training does not re-render them.
Photographs come with a line ground-truth file (:mod:`lkd_perception.io.formats`): the
frames of a user's own camera, labelled, are what the synthetic-only model lacks.
:class:`SimCrops` cuts training crops from either.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from lkd_perception.common.errors import ConfigError, InputError
from lkd_perception.io.formats import read_ground_truth, read_rgb
from lkd_perception.lines.synthetic import SyntheticImage
from lkd_perception.sim.clip import clip_segments


def parse_sim_runs(text: str) -> list[tuple[str, int]]:
    """Simulator drives as the command line gives them, ``scenario:seed,...``."""
    runs = []
    for item in text.split(","):
        scenario, sep, seed = item.strip().partition(":")
        if not sep or not seed.strip().isdigit():
            raise ConfigError(f"simulator run must be scenario:seed, got {item!r}")
        runs.append((scenario, int(seed)))
    return runs


def parse_size(text: str) -> tuple[int, int]:
    """A frame size ``WxH`` as (width, height)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ConfigError(f"size must be WxH, got {text!r}")
    return int(w), int(h)


def cached_sim_frames(runs: Sequence[tuple[str, int]], width: int, height: int, seconds: float,
                      cache: str | Path) -> list[SyntheticImage]:
    """Training frames of the drives (one per simulated second), rendered once and then read from
    ``cache`` (an existing cache is used as it is, whatever drives made it)."""
    if Path(cache).is_file():
        return load_frames(cache)
    frames = render_sim_frames(runs, width, height, seconds)
    save_frames(frames, cache)
    return frames


def render_sim_frames(
    runs: Sequence[tuple[str, int]],
    width: int,
    height: int,
    seconds: float = 60.0,
    rate_hz: float = 1.0,
) -> list[SyntheticImage]:
    """Frames of drives ``(scenario, seed)``: ``seconds`` long, one frame every 1/``rate_hz`` s."""
    from lkd_perception.sim.drive import DriveSimulator, make_config

    frames = []
    for scenario, seed in runs:
        cfg = make_config(scenario, seconds, seed, camera=True, camera_width=width, camera_height=height,
                          camera_rate_hz=rate_hz)
        sim = DriveSimulator(cfg)
        for k, t in enumerate(sim.frame_times()):
            f = sim.frame(k, float(t))
            frames.append(SyntheticImage(rgb=f.rgb, segments=np.asarray(f.lines, np.float32).reshape(-1, 4),
                                         crossings=np.zeros((0, 2), np.float32)))
    return frames


def save_frames(frames: Sequence[SyntheticImage], path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    counts = np.array([len(f.segments) for f in frames])
    segs = np.concatenate([f.segments for f in frames]) if frames else np.zeros((0, 4), np.float32)
    np.savez_compressed(p, rgb=np.stack([f.rgb for f in frames]), segments=segs, counts=counts)


def load_frames(path: str | Path) -> list[SyntheticImage]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"simulator frame cache not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            rgb, segments, counts = data["rgb"], data["segments"], data["counts"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: not a simulator frame cache (.npz with rgb, segments, counts): {exc}") from exc
    if rgb.ndim != 4 or counts.sum() != len(segments) or len(counts) != len(rgb):
        raise InputError(f"{p}: inconsistent frame cache ({len(rgb)} images, {len(counts)} counts, "
                         f"{len(segments)} segments)")
    splits = np.cumsum(counts)[:-1]
    empty = np.zeros((0, 2), np.float32)
    return [SyntheticImage(rgb=im, segments=seg, crossings=empty) for im, seg in zip(rgb, np.split(segments, splits))]


def labelled_images(gt_path: str | Path) -> list[SyntheticImage]:
    """Images named in a line ground-truth file (read from its folder), as RGB (grey ones
    repeated to 3 channels), with their labelled segments."""
    folder = Path(gt_path).parent
    out = []
    for name, gt in sorted(read_ground_truth(gt_path).items()):
        rgb = read_rgb(folder / name)
        if (rgb.shape[1], rgb.shape[0]) != (gt.width, gt.height):
            raise InputError(
                f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]}, ground truth says {gt.width}x{gt.height}"
            )
        out.append(SyntheticImage(rgb, gt.lines.astype(np.float32), np.zeros((0, 2), np.float32)))
    return out


class SimCrops:
    """An image source for training: a random crop of a random labelled frame (simulator render or
    labelled photograph), with its lines.

    Each frame is first shrunk by a random factor in ``scale_range`` (INTER_AREA), so that the
    network sees the scene at the scales that a camera image reduced to the network input has.
    """

    def __init__(self, frames: Sequence[SyntheticImage], scale_range: tuple[float, float] = (0.55, 1.0)) -> None:
        if not frames:
            raise InputError("no labelled frames to crop from")
        self.frames = list(frames)
        self.scale_range = scale_range

    def __call__(self, rng: np.random.Generator, height: int, width: int) -> SyntheticImage:
        f = self.frames[int(rng.integers(len(self.frames)))]
        H, W = f.rgb.shape[:2]
        s = max(rng.uniform(*self.scale_range), height / H, width / W)
        if s > 1.0:
            raise InputError(f"a labelled frame ({W}x{H}) is smaller than the crop ({width}x{height})")
        h2, w2 = max(int(round(H * s)), height), max(int(round(W * s)), width)
        rgb = cv2.resize(f.rgb, (w2, h2), interpolation=cv2.INTER_AREA) if (h2, w2) != (H, W) else f.rgb
        seg = f.segments.astype(np.float64).copy()
        seg[:, 0::2] = (seg[:, 0::2] + 0.5) * (w2 / W) - 0.5
        seg[:, 1::2] = (seg[:, 1::2] + 0.5) * (h2 / H) - 0.5
        y, x = int(rng.integers(0, h2 - height + 1)), int(rng.integers(0, w2 - width + 1))
        seg = clip_segments(seg, x - 0.5, y - 0.5, x + width - 0.5, y + height - 0.5)
        seg[:, 0::2] -= x
        seg[:, 1::2] -= y
        return SyntheticImage(
            rgb=np.ascontiguousarray(rgb[y : y + height, x : x + width]),
            segments=seg.astype(np.float32),
            crossings=np.zeros((0, 2), np.float32),
        )
