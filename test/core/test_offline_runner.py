"""lkd run's pieces without ROS: the shared message builders on rosbags classes, and a LiDAR-only bag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lkd_perception.common.errors import InputError
from lkd_perception.eval.outputs import read_recorded_run
from lkd_perception.io import messages as M
from lkd_perception.io.typestore import typestore
from lkd_perception.lines.runtime import LineSegments
from lkd_perception.nodes.graph import default_config_path
from lkd_perception.offline.runner import run_bag
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.recording import write_drive


def _roundtrip(msg, msgtype):
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def test_builders_make_serialisable_bag_messages():
    stamp = M.time_msg(M.bag_message, 1_700_000_000_123_456_789)
    segs = np.array([[10.0, 20.0, 50.0, 20.0], [5.0, 5.0, 5.0, 45.0]])
    found = LineSegments(segs, np.array([0.9, 0.4]), np.array([2.0, 3.0]))
    lines = _roundtrip(M.lines_msg(M.bag_message, stamp, "camera", found), M.DETECTION_ARRAY)
    assert [d.bbox.size_x for d in lines.detections] == pytest.approx([40.0, 40.0])
    assert abs(lines.detections[1].bbox.center.theta) == pytest.approx(np.pi / 2)
    assert lines.header.stamp.nanosec == 123_456_789 and lines.detections[0].results[0].hypothesis.class_id == "line"
    marker = _roundtrip(M.line_marker(M.bag_message, stamp, "camera", found), M.IMAGE_MARKER)
    assert marker.type == 2 and len(marker.points) == 4 and len(marker.outline_colors) == 4
    T = np.eye(4)
    T[:3, 3] = (1.0, 2.0, 3.0)
    odo = _roundtrip(M.odometry_msg(M.bag_message, stamp, "odom", "base_link", T, np.array([1.0, 0, 0])), M.ODOMETRY)
    assert odo.pose.pose.position.z == 3.0 and odo.pose.pose.orientation.w == 1.0 and odo.twist.twist.linear.x == 1.0
    with pytest.raises(InputError):
        M.detection2d_array(M.bag_message, stamp, "c", np.zeros((2, 2)), np.zeros((1, 2)), None, np.zeros(1), ["a"])


@pytest.mark.slow
def test_lidar_only_bag_runs_odometry_and_skips_the_cameras(tmp_path):
    write_drive(tmp_path, make_config("loop", 1.5, 2, camera=False, lidar_azimuths=512))
    bag = tmp_path / "drive.mcap"
    r = run_bag(bag, tmp_path / "run", config=default_config_path("simulation.yaml"))
    assert set(r.skipped) == {"detector_node", "line_node"} and "lidar_odometry_node" in r.tasks
    t = r.tasks["lidar_odometry_node"]
    assert t["inputs"] == t["outputs"] == 15 and t["realtime_factor"] > 0
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["counts"]["/lkd/odometry"] == 15 and summary["counts"]["/tf"] == 15
    run = read_recorded_run(r.outputs)
    assert len(run.odometry_poses) == 15 and np.all(np.diff(run.odometry_stamps_ns) > 0)
    assert "lidar_odometry_node: scan" in run.diagnostics
    lat = run.latencies_ms["/lkd/odometry"]
    assert np.all(lat > 0)  # published after the scan arrived: sweep time + compute
    with pytest.raises(InputError, match="none of the inputs"):
        run_bag(bag, tmp_path / "none", capabilities="detection")


@pytest.mark.slow
def test_bag_of_compressed_frames_is_read_by_its_base_topic(tmp_path):
    """A drive recorded as JPEG (image_transport's <topic>/compressed) runs like a raw one."""
    cfg = make_config("loop", 0.5, 3, camera=True, lidar_azimuths=512, camera_width=160, camera_height=120,
                      camera_format="jpeg")
    write_drive(tmp_path, cfg)
    r = run_bag(tmp_path / "drive.mcap", tmp_path / "run", capabilities="detection,lines",
                config=default_config_path("simulation.yaml"))
    assert not r.skipped
    for node in ("detector_node", "line_node"):
        t = r.tasks[node]
        assert t["inputs"] == t["outputs"] == 6 and t["warnings"] == 0, (node, t)  # 0.5 s at 10 Hz, from t=0


def test_a_setting_no_node_has_is_named_with_the_closest_one(tmp_path, caplog):
    """The offline run reads the parameter file as the nodes do, and says what they would ignore."""
    from lkd_perception.offline.runner import node_configs

    path = tmp_path / "params.yaml"
    path.write_text("/**/lidar_odometry_node:\n  ros__parameters:\n    loop_min_age_s: 3.0\n    sensor_qos_depth: 5\n"
                    "    use_sim_time: true\n")
    with caplog.at_level("WARNING"):
        cfg = node_configs(path, "odometry")["lidar_odometry_node"]
    assert cfg.loop.min_age_s != 3.0  # the old flat name did not reach the setting
    warned = [r.getMessage() for r in caplog.records if "is not a parameter" in r.getMessage()]
    assert len(warned) == 1 and "loop_min_age_s" in warned[0] and "'loop.min_age_s'" in warned[0], warned
