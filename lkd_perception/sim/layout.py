"""Street layouts of the scenarios: a grid of intersections, the roads between them and the
closed tour the vehicle drives.

Tours are closed so a drive longer than one tour simply goes round again (more revisits for
loop closure) and the trajectory spline can be periodic. Tours never make U-turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.errors import ConfigError

SCENARIOS: tuple[str, ...] = ("loop", "urban", "corridor")

ROAD_HALF_WIDTH = 5.0  # m, centre line to kerb: a lane and a parking strip
SIDEWALK_WIDTH = 4.0  # m, kerb to building line
LANE_OFFSET = 1.75  # m, right of the centre line: where the vehicle drives


@dataclass(frozen=True)
class Layout:
    """Intersections ``nodes`` (N, 2) metres, ``roads`` (R, 2) node index pairs, the closed
    ``tour`` (node indices, first not repeated at the end) and which roads are ``corridor``
    roads (lined with long featureless walls instead of buildings)."""

    nodes: np.ndarray
    roads: np.ndarray
    tour: tuple[int, ...]
    corridor: np.ndarray  # (R,) bool

    def road_segments(self) -> np.ndarray:
        """(R, 2, 2) end points of every road centre line."""
        return self.nodes[self.roads]

    def tour_roads(self) -> set[int]:
        """Indices of the roads the tour uses."""
        lookup = {tuple(sorted(map(int, r))): k for k, r in enumerate(self.roads)}
        n = len(self.tour)
        return {lookup[tuple(sorted((self.tour[i], self.tour[(i + 1) % n])))] for i in range(n)}


def _grid(nx: int, ny: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nodes = np.array([[xs[i], ys[j]] for j in range(ny) for i in range(nx)], dtype=float)
    roads = []
    for j in range(ny):
        for i in range(nx):
            k = j * nx + i
            if i + 1 < nx:
                roads.append((k, k + 1))
            if j + 1 < ny:
                roads.append((k, k + nx))
    return nodes, np.array(roads, dtype=np.int32)


def _cells(rng: np.random.Generator, n: int, block: float) -> np.ndarray:
    """Cumulative street positions with seeded block lengths (block +- 15 %)."""
    return np.concatenate([[0.0], np.cumsum(block * rng.uniform(0.85, 1.15, n - 1))])


def make_layout(scenario: str, rng: np.random.Generator) -> Layout:
    """The street grid and tour of a scenario, with seeded block sizes."""
    if scenario == "loop":
        # 3x3 intersections, tour round the outside of the 2x2 blocks.
        xs, ys = _cells(rng, 3, 62.0), _cells(rng, 3, 62.0)
        nodes, roads = _grid(3, 3, xs, ys)
        tour = (0, 1, 2, 5, 8, 7, 6, 3)
        corridor = np.zeros(len(roads), bool)
    elif scenario == "urban":
        # 4x3 intersections; a figure-of-eight-like tour that crosses the middle twice and drives
        # two streets in both directions (revisits from different headings).
        xs, ys = _cells(rng, 4, 48.0), _cells(rng, 3, 48.0)
        nodes, roads = _grid(4, 3, xs, ys)
        a, b, c, d, e, f = 0, 1, 2, 6, 5, 4  # (0,0) (1,0) (2,0) (2,1) (1,1) (0,1)
        h, i = 9, 10  # (1,2) (2,2)
        tour = (a, b, c, d, e, h, i, d, c, b, e, f)
        corridor = np.zeros(len(roads), bool)
    elif scenario == "corridor":
        # One long straight between walls, back along an ordinary street.
        xs = np.array([0.0, 280.0 * rng.uniform(0.95, 1.05)])
        ys = np.array([0.0, 60.0 * rng.uniform(0.9, 1.1)])
        nodes, roads = _grid(2, 2, xs, ys)
        tour = (0, 1, 3, 2)
        corridor = np.array([tuple(r) == (0, 1) for r in roads.tolist()])
    else:
        raise ConfigError(f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
    return Layout(nodes, roads, tour, corridor)


def tour_polyline(layout: Layout) -> np.ndarray:
    """Closed polyline (K, 2) of the driven lane: the tour offset to the right-hand lane.

    Each corner is where the two offset lane lines meet, so the polyline keeps to its lane
    through turns; the trajectory module rounds the corners.
    """
    pts = layout.nodes[list(layout.tour)]
    n = len(pts)
    out = []
    for k in range(n):
        p_prev, p, p_next = pts[k - 1], pts[k], pts[(k + 1) % n]
        d_in = (p - p_prev) / np.linalg.norm(p - p_prev)
        d_out = (p_next - p) / np.linalg.norm(p_next - p)
        n_in = np.array([d_in[1], -d_in[0]])  # right-hand normal
        n_out = np.array([d_out[1], -d_out[0]])
        out.append(p + LANE_OFFSET * (n_in + n_out) / (1.0 + float(n_in @ n_out)))
    return np.array(out)


def distance_to_roads(layout: Layout, xy: np.ndarray) -> np.ndarray:
    """Distance (N,) from points (N, 2) to the nearest road centre line."""
    seg = layout.road_segments()
    a, b = seg[:, 0], seg[:, 1]
    ab = b - a
    rel = xy[:, None, :] - a[None]
    s = np.clip(np.einsum("nrk,rk->nr", rel, ab) / np.einsum("rk,rk->r", ab, ab), 0.0, 1.0)
    closest = a[None] + s[..., None] * ab[None]
    return np.sqrt(((xy[:, None, :] - closest) ** 2).sum(-1)).min(axis=1)
