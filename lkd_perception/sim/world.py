"""The synthetic world: rough ground with roads, kerbs and markings, buildings with windows,
poles, traffic signs, parked and moving cars, pedestrians and cyclists.

Everything is a triangle mesh tagged with an object index, so one ray cast tells the renderer
the surface (shading), the object (detection ground truth from the id buffer) and the material
(LiDAR intensity). Static objects are merged into one mesh, built into a ray-casting scene once
per world; moving objects keep a local mesh and a straight-line motion and are placed per
timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lkd_perception.common.se3 import make_pose, yaw_pitch_roll_matrix
from lkd_perception.sim.layout import (
    ROAD_HALF_WIDTH,
    SIDEWALK_WIDTH,
    Layout,
    distance_to_roads,
    make_layout,
)
from lkd_perception.sim.mesh import EdgeSet, Mesh, box, cylinder, merge, mesh_edges, quad

# COCO categories of the detection ground truth (0 = not an annotated object).
CATEGORIES: dict[int, str] = {1: "car", 2: "pedestrian", 3: "cyclist", 4: "traffic_sign"}

# Object kinds and their LiDAR reflectivity (0..1) and whether they carry line ground truth.
KINDS: dict[str, tuple[float, bool]] = {
    "ground": (0.12, False),
    "marking": (0.7, True),
    "kerb": (0.3, True),
    "building": (0.35, True),
    "window": (0.15, True),
    "wall": (0.35, True),
    "pole": (0.4, True),
    "sign": (0.95, True),
    "car": (0.5, True),
    "pedestrian": (0.3, True),
    "cyclist": (0.3, True),
}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)
KIND_CATEGORY = {"car": 1, "pedestrian": 2, "cyclist": 3, "sign": 4}


@dataclass(frozen=True)
class Motion:
    """Straight-line motion: ``start + dir * ((phase + speed t) mod length)``,
    heading ``yaw``; the object jumps back to ``start`` after ``length`` metres."""

    start: np.ndarray  # (3,)
    direction: np.ndarray  # (3,) unit
    speed: float
    length: float
    phase: float

    def pose(self, t: float) -> np.ndarray:
        """4x4 pose of the object at time ``t`` (seconds)."""
        s = (self.phase + self.speed * t) % self.length
        yaw = float(np.arctan2(self.direction[1], self.direction[0]))
        return make_pose(yaw_pitch_roll_matrix(yaw), self.start + s * self.direction)


class ObjectMotion(Protocol):
    """What a moving object needs: its 4x4 pose at any time (:class:`Motion`, or the tour
    traffic's :class:`~lkd_perception.sim.traffic.TrackMotion`)."""

    def pose(self, t: float) -> np.ndarray: ...


@dataclass(frozen=True)
class WorldObject:
    """One object: its mesh (world frame if static, object frame if moving), kind, colour and
    the edges used for the line ground truth."""

    index: int
    kind: str
    mesh: Mesh
    color: np.ndarray  # (3,) RGB 0..1
    edges: EdgeSet
    motion: ObjectMotion | None = None

    @property
    def category_id(self) -> int:
        """COCO category (0 = not annotated)."""
        return KIND_CATEGORY.get(self.kind, 0)

    def mesh_at(self, t: float) -> Mesh:
        """The mesh in the world frame at time ``t``."""
        return self.mesh if self.motion is None else self.mesh.transformed(self.motion.pose(t))


@dataclass(frozen=True)
class GroundModel:
    """Smooth ground height (sum of sines: the vehicle drives on it) plus a seeded material map
    (road, sidewalk, verge) for texturing, on a raster covering the world."""

    amplitudes: np.ndarray  # (K,)
    wavevectors: np.ndarray  # (K, 2) rad/m
    phases: np.ndarray  # (K,)
    origin: np.ndarray  # (2,) raster corner
    resolution: float
    material: np.ndarray  # (H, W) uint8: 0 road, 1 sidewalk, 2 verge

    def height(self, xy: np.ndarray) -> np.ndarray:
        """Smooth height (N,) at (N, 2) points."""
        arg = np.einsum("...j,kj->...k", np.asarray(xy, float), self.wavevectors) + self.phases
        return (self.amplitudes * np.sin(arg)).sum(axis=-1)

    def gradient(self, xy: np.ndarray) -> np.ndarray:
        """Gradient (N, 2) of :meth:`height`."""
        arg = np.einsum("...j,kj->...k", np.asarray(xy, float), self.wavevectors) + self.phases
        return np.einsum("...k,kj->...j", self.amplitudes * np.cos(arg), self.wavevectors)

    def material_at(self, xy: np.ndarray) -> np.ndarray:
        """Material code (N,) at (N, 2) points (verge outside the raster)."""
        ij = np.floor((xy - self.origin) / self.resolution).astype(np.int64)
        h, w = self.material.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        out = np.full(xy.shape[0], 2, np.uint8)
        out[inside] = self.material[ij[inside, 1], ij[inside, 0]]
        return out


@dataclass(frozen=True)
class World:
    """A generated world: layout, ground model and objects (static first, then moving)."""

    scenario: str
    seed: int
    layout: Layout
    ground: GroundModel
    objects: tuple[WorldObject, ...]
    sun_direction: np.ndarray  # (3,) unit, towards the sun

    @property
    def static_objects(self) -> list[WorldObject]:
        return [o for o in self.objects if o.motion is None]

    @property
    def moving_objects(self) -> list[WorldObject]:
        return [o for o in self.objects if o.motion is not None]


class _Builder:
    """Collects objects while a world is generated."""

    def __init__(self) -> None:
        self.objects: list[WorldObject] = []

    def add_footed(self, kind: str, mesh: Mesh, color, ground: "GroundModel") -> None:
        """Add a box sunk into the ground, with the line where it meets the ground as edges.

        The box bottom is buried (the ground undulates under it); the visible foot is where the
        walls cut the ground: a polyline at the smooth ground height, a vertex every <= 4 m so
        long walls follow the undulation (collinear pieces are joined again in the image).
        """
        corners = mesh.vertices[[0, 1, 3, 2]]  # bottom corners (bit 2 clear) in order round the box
        foot, edges = [], []
        base = mesh.vertices.shape[0]
        for k in range(4):
            a, b = corners[k], corners[(k + 1) % 4]
            n = max(1, int(np.ceil(np.linalg.norm(b - a) / 4.0)))
            pts = a + (b - a) * (np.arange(n + 1) / n)[:, None]
            start = base + sum(len(f) for f in foot)
            foot.append(pts)
            edges.extend([[start + i, start + i + 1] for i in range(n)])
        foot_v = np.concatenate(foot)
        foot_v[:, 2] = ground.height(foot_v[:, :2])
        m = Mesh(np.concatenate([mesh.vertices, foot_v]), mesh.triangles)
        e = mesh_edges(mesh)
        self.add(kind, m, color, edges=EdgeSet(np.concatenate([e.creases, np.array(edges, np.int32)]),
                                               e.smooth, e.smooth_faces))

    def add(self, kind: str, mesh: Mesh, color, motion: Motion | None = None,
            edges: EdgeSet | None = None) -> None:
        self.objects.append(
            WorldObject(len(self.objects), kind, mesh, np.asarray(color, float),
                        edges if edges is not None else mesh_edges(mesh), motion)
        )


def _ground_model(layout: Layout, rng: np.random.Generator, margin: float = 60.0) -> GroundModel:
    k = 4
    wavelengths = rng.uniform(90.0, 260.0, k)
    angles = rng.uniform(0, np.pi, k)
    wavevectors = (2 * np.pi / wavelengths)[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    amplitudes = rng.uniform(0.15, 0.45, k)
    phases = rng.uniform(0, 2 * np.pi, k)
    lo = layout.nodes.min(axis=0) - margin
    hi = layout.nodes.max(axis=0) + margin
    res = 0.25
    w, h = (np.ceil((hi - lo) / res)).astype(int)
    gx = lo[0] + (np.arange(w) + 0.5) * res
    gy = lo[1] + (np.arange(h) + 0.5) * res
    mat = np.full((h, w), 2, np.uint8)
    # Roads are axis-aligned in our layouts but the distance computation does not rely on it.
    rows = np.array_split(np.arange(h), max(1, h // 64))
    for r in rows:
        xy = np.stack(np.meshgrid(gx, gy[r]), axis=-1).reshape(-1, 2)
        d = distance_to_roads(layout, xy).reshape(len(r), w)
        mat[r] = np.where(d < ROAD_HALF_WIDTH, 0, np.where(d < ROAD_HALF_WIDTH + SIDEWALK_WIDTH, 1, 2))
    return GroundModel(amplitudes, wavevectors, phases, lo, res, mat)


def _ground_mesh(ground: GroundModel, rng: np.random.Generator, cell: float = 2.0,
                 roughness: float = 0.03) -> Mesh:
    h, w = ground.material.shape
    size = np.array([w, h]) * ground.resolution
    nx, ny = (np.ceil(size / cell)).astype(int) + 1
    gx = ground.origin[0] + np.arange(nx) * cell
    gy = ground.origin[1] + np.arange(ny) * cell
    X, Y = np.meshgrid(gx, gy)
    xy = np.stack([X.ravel(), Y.ravel()], 1)
    z = ground.height(xy) + rng.normal(0.0, roughness, xy.shape[0])
    verts = np.column_stack([xy, z])
    idx = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int32)
    return Mesh(verts, tris)


def _no_edges() -> EdgeSet:
    z = np.zeros((0, 2), np.int32)
    return EdgeSet(z, z, z)


def _car_mesh(rng: np.random.Generator) -> Mesh:
    length, width = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.95)
    body_h = rng.uniform(0.65, 0.9)
    cab_l, cab_h = length * rng.uniform(0.45, 0.6), rng.uniform(0.5, 0.7)
    parts = [
        box((length, width, body_h), (0, 0, 0.3 + body_h / 2)),
        box((cab_l, width * 0.9, cab_h), (-length * 0.05, 0, 0.3 + body_h + cab_h / 2)),
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box((0.6, 0.22, 0.6), (sx * length * 0.32, sy * (width / 2 - 0.1), 0.3)))
    return merge(parts)


def _pedestrian_mesh(rng: np.random.Generator) -> Mesh:
    s = rng.uniform(0.9, 1.1)
    return merge([
        box((0.25 * s, 0.4 * s, 0.85 * s), (0, 0, 0.425 * s)),
        box((0.28 * s, 0.45 * s, 0.62 * s), (0, 0, (0.85 + 0.31) * s)),
        box((0.2 * s, 0.18 * s, 0.22 * s), (0, 0, (1.47 + 0.12) * s)),
    ])


def _cyclist_mesh(rng: np.random.Generator) -> Mesh:
    return merge([
        cylinder(0.34, 0.05, (0.55, 0.025, 0.34), sides=12, roll=np.pi / 2),
        cylinder(0.34, 0.05, (-0.55, 0.025, 0.34), sides=12, roll=np.pi / 2),
        box((1.1, 0.06, 0.08), (0, 0, 0.6)),
        box((0.06, 0.06, 0.5), (-0.15, 0, 0.6)),
        box((0.5, 0.4, 0.25), (-0.05, 0, 0.95)),
        box((0.3, 0.4, 0.6), (0.0, 0, 1.35)),
        box((0.2, 0.18, 0.22), (0.1, 0, 1.78)),
    ])


def _random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def _road_frames(layout: Layout):
    """Per road: start point, unit direction, left normal, length (between intersection mouths)."""
    for k, (i, j) in enumerate(layout.roads):
        a, b = layout.nodes[i], layout.nodes[j]
        d = (b - a) / np.linalg.norm(b - a)
        n = np.array([-d[1], d[0]])
        yield k, a, d, n, float(np.linalg.norm(b - a))


def _buildings_for_block(b: _Builder, ground: GroundModel, rng: np.random.Generator,
                         lo: np.ndarray, hi: np.ndarray) -> None:
    """Fill the block interior [lo, hi] with a grid of buildings whose street faces have windows."""
    inset = ROAD_HALF_WIDTH + SIDEWALK_WIDTH
    x0, y0 = lo + inset
    x1, y1 = hi - inset
    if x1 - x0 < 8 or y1 - y0 < 8:
        return
    nx = max(1, int((x1 - x0) // rng.uniform(11, 20)))
    ny = max(1, int((y1 - y0) // rng.uniform(11, 20)))
    xs = np.linspace(x0, x1, nx + 1)
    ys = np.linspace(y0, y1, ny + 1)
    for i in range(nx):
        for j in range(ny):
            if rng.random() < 0.12:
                continue  # an empty lot: lets the LiDAR see further, varies the skyline
            gap = rng.uniform(0.5, 3.0, 4)
            bx0, bx1 = xs[i] + (gap[0] if i > 0 else 0), xs[i + 1] - (gap[1] if i < nx - 1 else 0)
            by0, by1 = ys[j] + (gap[2] if j > 0 else 0), ys[j + 1] - (gap[3] if j < ny - 1 else 0)
            height = rng.uniform(6.0, 24.0)
            cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
            corner_h = ground.height(np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]]))
            zb = float(corner_h.min()) - 0.5  # buried: the ground undulates under the footprint
            ztop = float(corner_h.mean()) + height
            b.add_footed("building", box((bx1 - bx0, by1 - by0, ztop - zb), (cx, cy, (zb + ztop) / 2)),
                         _random_color(rng, 0.3, 0.85), ground)
            z_first = float(corner_h.max()) + 1.2
            # windows on the faces that look onto a street (the outer faces of the block)
            faces = []
            if i == 0:
                faces.append((np.array([bx0, by0]), np.array([0.0, 1.0]), by1 - by0, np.array([-1.0, 0.0])))
            if i == nx - 1:
                faces.append((np.array([bx1, by0]), np.array([0.0, 1.0]), by1 - by0, np.array([1.0, 0.0])))
            if j == 0:
                faces.append((np.array([bx0, by0]), np.array([1.0, 0.0]), bx1 - bx0, np.array([0.0, -1.0])))
            if j == ny - 1:
                faces.append((np.array([bx0, by1]), np.array([1.0, 0.0]), bx1 - bx0, np.array([0.0, 1.0])))
            glass = np.array([0.12, 0.16, 0.22]) + rng.uniform(-0.05, 0.08, 3)
            win_w, win_h = rng.uniform(0.9, 1.6), rng.uniform(1.1, 1.7)
            pitch_x, pitch_z = rng.uniform(2.4, 3.6), rng.uniform(3.0, 3.6)
            for origin, along, length, out in faces:
                ncol = int((length - 1.5) // pitch_x)
                nrow = int((height - 2.0) // pitch_z)
                if ncol < 1 or nrow < 1:
                    continue
                margin = (length - ncol * pitch_x) / 2
                for c in range(ncol):
                    for r in range(nrow):
                        p = origin + along * (margin + (c + 0.5) * pitch_x) + out * 0.02
                        z = z_first + r * pitch_z
                        e = along * win_w / 2
                        corners = [[*(p - e), z], [*(p + e), z], [*(p + e), z + win_h], [*(p - e), z + win_h]]
                        b.add("window", quad(np.array(corners)), glass)


def _street_furniture(b: _Builder, layout: Layout, ground: GroundModel, rng: np.random.Generator,
                      density: float) -> None:
    """Kerbs, lane markings, poles, signs and parked cars along every road."""
    for k, a, d, n, length in _road_frames(layout):
        yaw = float(np.arctan2(d[1], d[0]))
        mouth = ROAD_HALF_WIDTH + SIDEWALK_WIDTH  # keep clear of intersections
        # centre-line dashes: 3 m dash, 6 m gap, 0.15 m wide, 4 cm above the smooth ground
        s = mouth
        while s + 3.0 < length - mouth:
            p0, p1 = a + d * s, a + d * (s + 3.0)
            z0, z1 = ground.height(np.stack([p0, p1])) + 0.04
            w = n * 0.075
            corners = np.array([[*(p0 - w), z0], [*(p1 - w), z1], [*(p1 + w), z1], [*(p0 + w), z0]])
            centre = np.array([[*p0, z0], [*p1, z1]])
            # a painted stripe is one line (its centre line): the convention for LSDNet-style GT
            b.add("marking", Mesh(np.concatenate([corners, centre]), np.array([[0, 1, 2], [0, 2, 3]], np.int32)),
                  (0.92, 0.92, 0.88), edges=EdgeSet(np.array([[4, 5]], np.int32), np.zeros((0, 2), np.int32),
                                                    np.zeros((0, 2), np.int32)))
            s += 9.0
        if layout.corridor[k]:
            for side in (-1, 1):
                off = side * (ROAD_HALF_WIDTH + 2.0)
                p = a + d * (length / 2) + n * off
                zb = float(ground.height(p[None])[0]) - 1.0
                b.add_footed("wall", box((length - 2 * mouth, 0.5, 5.0), (p[0], p[1], zb + 2.5), yaw=yaw),
                             (0.62, 0.6, 0.57), ground)
            continue
        for side in (-1, 1):
            # kerb pieces (10 m) along both road edges
            s = mouth
            while s < length - mouth - 1.0:
                seg = min(10.0, length - mouth - s)
                p = a + d * (s + seg / 2) + n * side * (ROAD_HALF_WIDTH + 0.15)
                z = float(ground.height(p[None])[0])
                b.add("kerb", box((seg - 0.02, 0.3, 0.17), (p[0], p[1], z + 0.065), yaw=yaw), (0.6, 0.6, 0.6))
                s += seg
            # street lights
            s = mouth + rng.uniform(2, 10)
            while s < length - mouth:
                p = a + d * s + n * side * (ROAD_HALF_WIDTH + 0.8)
                z = float(ground.height(p[None])[0]) - 0.3
                b.add("pole", cylinder(0.09, 6.5, (p[0], p[1], z)), (0.35, 0.37, 0.4))
                s += rng.uniform(20, 32) / max(density, 0.1)
            # a traffic sign near each road end, on the right-hand side of traffic
            for end in (0, 1):
                if rng.random() > 0.7 * density:
                    continue
                s = mouth + 1.0 if end == 0 else length - mouth - 1.0
                p = a + d * s + n * side * (ROAD_HALF_WIDTH + 1.4)
                z = float(ground.height(p[None])[0])
                b.add("pole", cylinder(0.04, 2.4, (p[0], p[1], z - 0.2)), (0.55, 0.55, 0.58))
                facing = yaw  # the plate faces along the road, towards approaching traffic
                shape = rng.integers(3)
                color = [(0.85, 0.1, 0.1), (0.1, 0.25, 0.8), (0.95, 0.8, 0.1)][shape]
                # flat plates (one outline, no near-duplicate front/back edges), just off the pole
                sides = (8, 4, 3)[shape]
                ang = np.arange(sides) * 2 * np.pi / sides + (np.pi / sides if sides != 3 else np.pi / 2)
                radius = (0.36, 0.46, 0.45)[shape]
                side_dir = np.array([-np.sin(facing), np.cos(facing)])
                centre = p - np.array([np.cos(facing), np.sin(facing)]) * 0.06
                ring = [[*(centre + side_dir * radius * np.cos(a_)), z + 2.3 + radius * np.sin(a_)] for a_ in ang]
                verts = np.array([[*centre, z + 2.3]] + ring)
                tris = np.array([[0, 1 + i, 1 + (i + 1) % sides] for i in range(sides)], np.int32)
                b.add("sign", Mesh(verts, tris), color)
            # parked cars
            s = mouth + rng.uniform(0, 8)
            while s < length - mouth - 5:
                if rng.random() < 0.45 * density:
                    p = a + d * s + n * side * (ROAD_HALF_WIDTH - 1.1)
                    z = float(ground.height(p[None])[0])
                    car_yaw = yaw if side < 0 else yaw + np.pi
                    T = make_pose(yaw_pitch_roll_matrix(car_yaw), [p[0], p[1], z])
                    b.add("car", _car_mesh(rng).transformed(T), _random_color(rng))
                s += rng.uniform(5.5, 9.0)


def _moving_agents(b: _Builder, layout: Layout, ground: GroundModel, rng: np.random.Generator,
                   density: float) -> None:
    """Cars on roads the tour does not use, cyclists on cycle tracks, pedestrians on sidewalks.

    Keeping moving cars off the tour means they never drive through the ego vehicle. Traffic
    keeps right: along a road's direction ``d`` the right-hand side is ``-n``.
    """
    used = layout.tour_roads()
    for k, a, d, n, length in _road_frames(layout):
        if layout.corridor[k]:
            continue
        mid = (layout.nodes[layout.roads[k, 0]] + layout.nodes[layout.roads[k, 1]]) / 2
        z = float(ground.height(mid[None])[0])

        def lane(offset: float) -> tuple[np.ndarray, np.ndarray]:
            """Start and direction of travel on the right-hand side at ``offset`` from the centre."""
            if rng.random() < 0.5:
                return np.array([*(a - n * offset), z]), np.array([*d, 0.0])
            return np.array([*(a + d * length + n * offset), z]), np.array([*(-d), 0.0])

        if k not in used:
            for _ in range(rng.poisson(1.5 * density)):
                start, direction = lane(1.75)
                b.add("car", _car_mesh(rng), _random_color(rng),
                      Motion(start, direction, rng.uniform(6, 11), length, rng.uniform(0, length)))
        for _ in range(rng.poisson(1.0 * density)):
            # cycle track on the sidewalk just behind the kerb: clear of parked cars and poles
            start, direction = lane(ROAD_HALF_WIDTH + 0.45)
            b.add("cyclist", _cyclist_mesh(rng), _random_color(rng),
                  Motion(start, direction, rng.uniform(3.5, 6.0), length, rng.uniform(0, length)))
        for _ in range(rng.poisson(2.5 * density)):
            start, direction = lane(ROAD_HALF_WIDTH + rng.uniform(1.0, 3.0))
            b.add("pedestrian", _pedestrian_mesh(rng), _random_color(rng, 0.1, 0.7),
                  Motion(start, direction, rng.uniform(0.9, 1.7), length, rng.uniform(0, length)))


def build_world(scenario: str, seed: int, density: float = 1.0) -> World:
    """Generate the world of ``scenario`` from ``seed`` (same seed, same world)."""
    rng = np.random.default_rng([seed, KIND_NAMES.index("ground") + 7])
    layout = make_layout(scenario, rng)
    ground = _ground_model(layout, rng)
    b = _Builder()
    b.add("ground", _ground_mesh(ground, rng), (0.3, 0.3, 0.3), edges=_no_edges())
    # blocks: the cells between consecutive street coordinates
    xs = np.unique(layout.nodes[:, 0])
    ys = np.unique(layout.nodes[:, 1])
    corridor_nodes = set(layout.roads[layout.corridor].ravel().tolist())
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            lo, hi = np.array([xs[i], ys[j]]), np.array([xs[i + 1], ys[j + 1]])
            if corridor_nodes:
                # corridor worlds: buildings only along the far street, back from the walls
                lo = lo + np.array([0.0, (hi[1] - lo[1]) * 0.45])
            _buildings_for_block(b, ground, rng, lo, hi)
    _street_furniture(b, layout, ground, rng, density)
    _moving_agents(b, layout, ground, rng, density)
    elev, azim = rng.uniform(np.radians(25), np.radians(65)), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    return World(scenario, seed, layout, ground, tuple(b.objects), sun)


def static_mesh(world: World) -> tuple[Mesh, np.ndarray]:
    """All static objects merged, and the object index (F,) of every triangle."""
    objs = world.static_objects
    mesh = merge([o.mesh for o in objs])
    owner = np.concatenate([np.full(o.mesh.triangles.shape[0], o.index, np.int32) for o in objs])
    return mesh, owner


def object_table(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object: colour (O, 3), reflectivity (O,), kind index (O,)."""
    colors = np.array([o.color for o in world.objects])
    refl = np.array([KINDS[o.kind][0] for o in world.objects])
    kinds = np.array([KIND_NAMES.index(o.kind) for o in world.objects], np.int32)
    return colors, refl, kinds
