"""`lkd run` (offline, no DDS) gives what the nodes give when the same bag is replayed at 1x over DDS."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.eval.outputs import read_recorded_run
from lkd_perception.nodes.graph import GRAPH, config_class, default_config_path
from lkd_perception.nodes.replay import run_replay
from lkd_perception.offline.runner import config_classes, run_bag
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.recording import write_drive


def test_offline_config_classes_are_the_nodes():
    assert config_classes() == {spec.name: config_class(spec) for spec in GRAPH}


def _by_stamp(frames):
    return {f.stamp_ns: f for f in frames}


@pytest.mark.slow
def test_offline_run_agrees_with_a_replay_over_dds(tmp_path):
    write_drive(tmp_path, make_config("loop", 2.0, 5, camera=True, camera_width=320, camera_height=240,
                                      lidar_azimuths=512))
    bag = tmp_path / "drive.mcap"
    config = default_config_path("simulation.yaml")
    # reliable sensor QoS with a deep queue: the nodes take every message, as the offline run does
    replay = run_replay(bag, rate=1.0, record=tmp_path / "replayed", launch_nodes=True, launch_config=config,
                        overrides={"sensor_qos_reliability": "reliable", "sensor_qos_depth": 100})
    offline = run_bag(bag, tmp_path / "offline", config=config)
    a, b = read_recorded_run(tmp_path / "replayed"), read_recorded_run(offline.outputs)

    frames = replay.published["/camera/image_raw"]
    assert len(a.detections) == len(b.detections) == frames
    for stamp, fa in _by_stamp(a.detections).items():
        fb = _by_stamp(b.detections)[stamp]
        assert fa.class_names == fb.class_names
        np.testing.assert_allclose(fa.boxes_xyxy, fb.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(fa.scores, fb.scores, atol=1e-5)
    assert len(a.lines) == len(b.lines) == frames
    assert sum(len(f.segments) for f in b.lines) > 0
    for stamp, fa in _by_stamp(a.lines).items():
        fb = _by_stamp(b.lines)[stamp]
        np.testing.assert_allclose(fa.segments, fb.segments, atol=1e-3)
        np.testing.assert_allclose(fa.scores, fb.scores, atol=1e-5)
    assert a.counts["/lkd/lines/markers"] == b.counts["/lkd/lines/markers"] == frames

    # odometry: every scan, same stamps; poses within noise (over DDS the IMU samples of a scan
    # may still be queued when it is registered, offline they are all in)
    np.testing.assert_array_equal(a.odometry_stamps_ns, b.odometry_stamps_ns)
    assert len(b.odometry_stamps_ns) == replay.published["/lidar/points"]
    dt = np.linalg.norm(a.odometry_poses[:, :3, 3] - b.odometry_poses[:, :3, 3], axis=1)
    travelled = np.linalg.norm(b.odometry_poses[-1, :3, 3] - b.odometry_poses[0, :3, 3])
    assert travelled > 5.0 and dt.max() < 0.05, (travelled, dt.max())
    assert a.counts["/lkd/path"] == b.counts["/lkd/path"]
