"""Training sets of varied single images: random camera poses in random worlds.

A drive gives correlated frames; training wants variety. Each world (scenario, density, sun,
seed) is used for ``frames_per_world`` random views: a camera somewhere on a road, looking
mostly along it, at a random height, pitch, roll and time (moving objects, lighting). Same
arguments, same images and labels.

``iter_frames`` is the in-memory generator (no disk); ``write_detection_dataset`` /
``write_lines_dataset`` write ``images/*.png`` plus ``annotations.json`` (COCO) or
``lines.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.common.se3 import make_pose
from lkd_perception.common.timing import Stopwatch, peak_rss_mb
from lkd_perception.io.formats import coco_document, write_json, write_lines
from lkd_perception.sim.annotations import BoxAnnotation, LineAnnotator, box_annotations
from lkd_perception.sim.camera import Camera
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.raycast import WorldCaster
from lkd_perception.sim.sensors import R_BASE_OPTICAL, make_rig
from lkd_perception.sim.trajectory import rotation_zyx
from lkd_perception.sim.world import CATEGORIES, World, build_world


@dataclass(frozen=True)
class DatasetFrame:
    """One training image with its labels (boxes and/or lines, see ``sim/annotations.py``)."""

    index: int
    file_name: str
    rgb: np.ndarray
    boxes: tuple[BoxAnnotation, ...]
    lines: np.ndarray
    T_map_cam: np.ndarray
    K: np.ndarray


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset writer produced."""

    out_dir: str
    kind: str
    frames: int
    seed: int
    width: int
    height: int
    boxes: int
    lines: int
    worlds: int
    wall_s: float
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _random_view(world: World, rng: np.random.Generator) -> np.ndarray:
    """T_map_cam of a random camera on a random (non-corridor) road."""
    lay = world.layout
    roads = np.flatnonzero(~lay.corridor) if (~lay.corridor).any() else np.arange(len(lay.roads))
    k = int(rng.choice(roads))
    a, b = lay.nodes[lay.roads[k]]
    d = (b - a) / np.linalg.norm(b - a)
    n = np.array([-d[1], d[0]])
    s = rng.uniform(0.05, 0.95) * np.linalg.norm(b - a)
    xy = a + d * s + n * rng.uniform(-3.0, 3.0)
    heading = np.arctan2(d[1], d[0]) + (np.pi if rng.random() < 0.5 else 0.0)
    heading += rng.normal(0.0, 0.25) if rng.random() < 0.85 else rng.uniform(-np.pi, np.pi)
    z = float(world.ground.height(xy[None])[0]) + rng.uniform(1.1, 2.2)
    R_map_base = rotation_zyx(np.array(heading), np.array(np.radians(rng.uniform(-3.0, 8.0))),
                              np.array(np.radians(rng.normal(0.0, 1.5))))
    return make_pose(R_map_base @ R_BASE_OPTICAL, [xy[0], xy[1], z])


def iter_frames(frames: int, seed: int, width: int = 640, height: int = 480, boxes: bool = True,
                lines: bool = True, frames_per_world: int = 40, density: tuple[float, float] = (1.0, 2.2),
                ) -> Iterator[DatasetFrame]:
    """Yield ``frames`` labelled random views (deterministic for a seed)."""
    if frames < 0:
        raise InputError(f"frames must be >= 0, got {frames}")
    cfg = make_config("loop", 1.0, seed, True, camera_width=width, camera_height=height)
    rig = make_rig(cfg)
    world_idx = -1
    camera: Camera | None = None
    world: World | None = None
    annotator: LineAnnotator | None = None
    for i in range(frames):
        if i % frames_per_world == 0:
            world_idx += 1
            wrng = np.random.default_rng([seed, 1000 + world_idx])
            scenario = str(wrng.choice(["loop", "urban", "corridor"], p=[0.45, 0.45, 0.1]))
            world = build_world(scenario, int(wrng.integers(2**31)), float(wrng.uniform(*density)))
            camera = Camera(WorldCaster(world), rig, cfg)
            annotator = LineAnnotator(world)
        assert world is not None and camera is not None and annotator is not None
        rng = np.random.default_rng([seed, 7, i])
        T = _random_view(world, rng)
        t = float(rng.uniform(0.0, 200.0))
        r = camera.render(T, t, rng)
        bx = tuple(box_annotations(world, r.object_ids, T, rig.K, t)) if boxes else ()
        ln = annotator.segments(r.depth, T, rig.K, t) if lines else np.zeros((0, 4))
        yield DatasetFrame(i, f"frame_{i:06d}.png", r.rgb, bx, ln, T, rig.K)


def _write(out_dir: str | Path, kind: str, frames: int, seed: int, width: int, height: int) -> DatasetSummary:
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns, lines = [], [], {}
    n_lines = 0
    fpw = 40
    with Stopwatch() as sw:
        for f in iter_frames(frames, seed, width, height, boxes=kind == "detection", lines=kind == "lines",
                             frames_per_world=fpw):
            cv2.imwrite(str(img_dir / f.file_name), f.rgb[:, :, ::-1])
            if kind == "detection":
                images.append({"id": f.index + 1, "file_name": f.file_name, "width": width, "height": height})
                for b in f.boxes:
                    anns.append({"image_id": f.index + 1, "category_id": b.category_id,
                                 "bbox": [round(v, 2) for v in b.bbox], "area": b.area, "visibility": b.visibility})
            else:
                lines[f.file_name] = f.lines
                n_lines += len(f.lines)
        if kind == "detection":
            write_json(out / "annotations.json", coco_document(images, anns, CATEGORIES))
        else:
            write_lines(out / "lines.json", lines)
    return DatasetSummary(str(out), kind, frames, seed, width, height, len(anns), n_lines,
                          (frames + fpw - 1) // fpw, round(sw.elapsed, 3), round(peak_rss_mb(), 1))


def write_detection_dataset(out_dir: str | Path, frames: int, seed: int, width: int = 640,
                            height: int = 480) -> DatasetSummary:
    """``out_dir/images/*.png`` + ``out_dir/annotations.json`` (COCO, categories car,
    pedestrian, cyclist, traffic_sign; each annotation has ``visibility``)."""
    return _write(out_dir, "detection", frames, seed, width, height)


def write_lines_dataset(out_dir: str | Path, frames: int, seed: int, width: int = 640,
                        height: int = 480) -> DatasetSummary:
    """``out_dir/images/*.png`` + ``out_dir/lines.json`` (``{"frame_000000.png": [[x1, y1, x2, y2], ...]}``)."""
    return _write(out_dir, "lines", frames, seed, width, height)
