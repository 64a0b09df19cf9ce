"""Traffic on the ego vehicle's own roads (``moving_cars``): seen by the LiDAR where the cars are,
never through the ego vehicle, and absent unless asked for."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.sim.config import SimConfig
from lkd_perception.sim.drive import DriveSimulator, make_config
from lkd_perception.sim.traffic import TrackMotion, add_tour_traffic, same_lane_offsets
from lkd_perception.sim.world import build_world


@pytest.fixture(scope="module")
def sim() -> DriveSimulator:
    return DriveSimulator(make_config("loop", 12.0, 0, moving_cars=6, lidar_mover_slices=16, lidar_azimuths=512))


def _traffic(sim: DriveSimulator) -> list:
    return [o for o in sim.world.objects if isinstance(o.motion, TrackMotion)]


def test_traffic_is_added_only_when_asked():
    # off by default, and then the world is untouched (every existing drive stays bit-identical)
    assert SimConfig().moving_cars == 0 and SimConfig().lidar_mover_slices == 1
    world = build_world("loop", 0)
    assert add_tour_traffic(world, 0, 12.0, 0) is world
    # with traffic, every other object keeps its index (the camera's id buffer, the annotations)
    busy = add_tour_traffic(world, 4, 12.0, 0)
    assert busy.objects[:len(world.objects)] == world.objects
    assert [type(o.motion) for o in busy.objects[len(world.objects):]] == [TrackMotion] * 4


@pytest.mark.slow
def test_cars_share_the_road_without_touching_the_ego_vehicle(sim):
    cars = _traffic(sim)
    assert len(cars) == 6 and [c.index for c in cars] == list(range(len(sim.world.objects) - 6, len(sim.world.objects)))
    t = np.arange(0.0, 12.0, 0.1)
    ego = sim.trajectory.poses(t)[:, :3, 3]
    dist = np.array([[np.linalg.norm(c.motion.pose(tk)[:2, 3] - e[:2]) for c in cars] for tk, e in zip(t, ego)])
    assert dist.min() > 3.0  # a lane apart at the closest (oncoming), never overlapping
    # the same-lane cars keep their time gap: within 5..100 m, ahead of or behind the ego vehicle
    gaps = same_lane_offsets(3)
    for k, gap in enumerate(gaps):
        assert 5.0 < dist[:, k].min() and dist[:, k].max() < 100.0
        ahead = np.einsum("ni,ni->n", sim.trajectory.poses(t)[:, :3, 0],
                          np.array([cars[k].motion.pose(tk)[:3, 3] for tk in t]) - ego)
        assert np.all(np.sign(ahead) == np.sign(gap))
    # the oncoming cars meet the ego vehicle within the drive: closer than 10 m at some point
    assert np.any(dist[:, 3:].min(axis=0) < 10.0)


@pytest.mark.slow
def test_lidar_sees_the_car_ahead_where_it_is(sim):
    car = _traffic(sim)[0]  # in the ego lane, 1.5 s ahead
    t0 = 2.0
    cloud = sim.scan(t0).cloud
    T = sim.trajectory.poses(t0 + cloud.time.astype(np.float64)) @ sim.rig.T_base_lidar
    p_map = np.einsum("nij,nj->ni", T[:, :3, :3], cloud.xyz.astype(np.float64)) + T[:, :3, 3]
    centre = np.array([car.motion.pose(t0 + float(tp))[:3, 3] for tp in cloud.time])  # car where each point was
    local = np.einsum("nji,nj->ni", np.stack([car.motion.pose(t0 + float(tp))[:3, :3] for tp in cloud.time]),
                      p_map - centre)
    on_car = (np.abs(local[:, 0]) < 2.6) & (np.abs(local[:, 1]) < 1.1) & (local[:, 2] > 0.1) & (local[:, 2] < 2.0)
    assert on_car.sum() > 50
    # the rear of the car faces the sensor: the nearest points on it are at its back, within the
    # slice timing error (< 0.1 m at these speeds) and the range noise
    assert np.percentile(local[on_car, 0], 5) < -1.7
