"""The report's per-node figures (evaluate_run's and the fleet's rows without ground truth): each
node's results counted on its own topic, its processed fraction against the input it answers
(the topic table's pairing), its latency and its last health report."""

from __future__ import annotations

import numpy as np

from lkd_perception.eval.outputs import RecordedRun
from lkd_perception.eval.report import node_metrics


def _run(counts: dict[str, int], latencies: dict[str, list[float]], diagnostics: dict) -> RecordedRun:
    return RecordedRun(
        detections=(), lines=(), odometry_stamps_ns=np.zeros(0, np.int64), odometry_poses=np.zeros((0, 4, 4)),
        path_stamps_ns=np.zeros(0, np.int64), path_poses=np.zeros((0, 4, 4)), loop_closures=np.zeros((0, 2, 3)),
        latencies_ms={k: np.array(v) for k, v in latencies.items()}, diagnostics=diagnostics, counts=counts,
    )


def test_each_node_is_measured_on_its_own_result_against_the_input_it_answers():
    run = _run(
        counts={"/lkd/detections": 8, "/lkd/lines": 5, "/lkd/lines/markers": 5, "/lkd/odometry": 3, "/tf": 3},
        latencies={"/lkd/detections": [10.0] * 8, "/lkd/lines": [30.0, 40.0, 50.0, 60.0, 70.0],
                   "/lkd/odometry": [100.0, 200.0, 300.0]},
        diagnostics={"line_node: image": {"level": "1"}, "detector_node: image": {"level": "0"}},
    )
    nodes = node_metrics(run, {"/camera/image_raw": 10, "/lidar/points": 6, "/imu/data": 120})
    assert nodes["detector_node"]["processed_fraction"] == 0.8 and nodes["detector_node"]["inputs"] == 10
    assert nodes["line_node"]["processed_fraction"] == 0.5 and nodes["line_node"]["latency"]["p50_ms"] == 50.0
    assert nodes["lidar_odometry_node"]["processed_fraction"] == 0.5  # scans, not IMU samples
    assert nodes["lidar_odometry_node"]["latency"]["max_ms"] == 300.0
    assert nodes["line_node"]["diagnostics"] == {"line_node: image": {"level": "1"}}
    assert "diagnostics" not in nodes["lidar_odometry_node"]


def test_a_node_that_published_nothing_is_absent_and_without_input_counts_there_is_no_fraction():
    run = _run({"/lkd/detections": 4}, {"/lkd/detections": [5.0] * 4}, {})
    nodes = node_metrics(run, None)
    assert set(nodes) == {"detector_node"}
    assert nodes["detector_node"]["outputs"] == 4 and "processed_fraction" not in nodes["detector_node"]
