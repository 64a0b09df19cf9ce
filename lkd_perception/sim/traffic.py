"""Traffic on the ego vehicle's own roads: cars driving ahead of and behind it in its lane, and
oncoming cars in the other lane.

The world's own moving cars keep to roads the tour does not use, so they never drive through
the ego vehicle, and a LiDAR on the tour sees them only across junctions. The hard case for
scan registration is traffic that shares the road: a car ahead at the ego's speed looks static
in the sensor frame (it pulls the estimate towards standing still) and an oncoming car moves at
twice the speed. These cars follow the ego's own tour, so they cannot collide with it either:
same-lane cars drive the ego's trajectory shifted in time (a fixed time gap, never a crossing),
oncoming cars drive the same tour reversed, in its right-hand lane (the other side of the road).

Added only when :attr:`SimConfig.moving_cars` > 0, with their own random stream, so a drive
without them is bit-identical to one made before this module existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lkd_perception.sim.layout import tour_polyline
from lkd_perception.sim.mesh import mesh_edges
from lkd_perception.sim.trajectory import BASE_HEIGHT, Trajectory, make_trajectory
from lkd_perception.sim.world import World, WorldObject, _car_mesh, _random_color

MIN_GAP_S = 1.5  # s between same-lane cars and the ego vehicle: >= 7.5 m at the slowest 5 m/s
GAP_STEP_S = 1.5  # s between consecutive same-lane cars on one side of the ego vehicle


@dataclass(frozen=True)
class TrackMotion:
    """A car driving a :class:`Trajectory` (base_link poses) ``offset_s`` seconds ahead of the
    clock; the car's mesh origin is on the ground, ``BASE_HEIGHT`` below base_link."""

    track: Trajectory
    offset_s: float

    def pose(self, t: float) -> np.ndarray:
        """4x4 pose of the car at time ``t`` (seconds)."""
        T = self.track.poses(t + self.offset_s)[0]
        T[:3, 3] -= BASE_HEIGHT * T[:3, 2]
        return T


def same_lane_offsets(count: int) -> list[float]:
    """Time offsets (s) of ``count`` same-lane cars: ahead, behind, further ahead, ..."""
    out = []
    for k in range(count):
        rank = k // 2
        out.append(MIN_GAP_S + rank * GAP_STEP_S if k % 2 == 0 else -(MIN_GAP_S + 0.5 + rank * GAP_STEP_S))
    return out


def add_tour_traffic(world: World, cars: int, seconds: float, seed: int) -> World:
    """``world`` with ``cars`` more moving cars on the tour: every second one in the ego lane
    (alternately ahead and behind), the others oncoming, spread over the lap."""
    if cars <= 0:
        return world
    rng = np.random.default_rng([seed, 11])
    n_same = cars // 2
    n_onc = cars - n_same
    lane = tour_polyline(world.layout)
    lap_s = float(np.linalg.norm(np.diff(np.vstack([lane, lane[:1]]), axis=0), axis=1).sum()) / 10.0
    same = same_lane_offsets(n_same)
    oncoming = [lap_s * (k + rng.uniform(0.0, 0.5)) / n_onc for k in range(n_onc)]
    # the tracks' splines must hold over the drive shifted by any offset
    reach = max(abs(o) for o in same + oncoming) + 1.0
    ego_lane = make_trajectory(lane, world.ground, seconds + reach, margin_s=reach)
    back = replace(world.layout, tour=tuple(reversed(world.layout.tour)))
    other_lane = make_trajectory(tour_polyline(back), world.ground, seconds + reach, margin_s=reach)
    objects = list(world.objects)
    motions = [TrackMotion(ego_lane, o) for o in same] + [TrackMotion(other_lane, o) for o in oncoming]
    for motion in motions:
        mesh = _car_mesh(rng)
        objects.append(WorldObject(len(objects), "car", mesh, _random_color(rng), mesh_edges(mesh), motion))
    return replace(world, objects=tuple(objects))
