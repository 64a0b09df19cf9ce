"""Hand-made simulator worlds for unit tests and small fixtures, where a generated town would
hide what is being checked."""

from __future__ import annotations

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.sim.layout import make_layout
from lkd_perception.sim.mesh import EdgeSet, Mesh, mesh_edges, quad
from lkd_perception.sim.world import KINDS, GroundModel, World, WorldObject


def scene_world(parts: list[tuple[str, Mesh, tuple[float, float, float]]], extent: float = 100.0,
                seed: int = 0) -> World:
    """Flat ground (z = 0, road material) of half-size ``extent`` plus the given static
    ``(kind, mesh, colour)`` parts in map coordinates."""
    rng = np.random.default_rng(seed)
    layout = make_layout("loop", rng)
    res = 1.0
    n = int(2 * extent / res)
    ground = GroundModel(np.zeros(1), np.zeros((1, 2)), np.zeros(1), np.array([-extent, -extent]), res,
                         np.zeros((n, n), np.uint8))
    e = extent
    flat = quad(np.array([[-e, -e, 0.0], [e, -e, 0.0], [e, e, 0.0], [-e, e, 0.0]]))
    no_edges = EdgeSet(*(np.zeros((0, 2), np.int32),) * 3)
    objects = [WorldObject(0, "ground", flat, np.array([0.3, 0.3, 0.3]), no_edges)]
    for kind, mesh, color in parts:
        if kind not in KINDS:
            raise InputError(f"unknown object kind {kind!r}; known: {list(KINDS)}")
        objects.append(WorldObject(len(objects), kind, mesh, np.asarray(color, float), mesh_edges(mesh)))
    sun = np.array([0.3, 0.2, 0.93])
    return World("custom", seed, layout, ground, tuple(objects), sun / np.linalg.norm(sun))
