"""The main job end to end on a short drive: simulate -> replay over DDS through every node
(each in its own process, sim time) -> record -> evaluate -> HTML report."""

from __future__ import annotations

import math

import pytest

from lkd_perception.eval.outputs import read_recorded_run
from lkd_perception.eval.report import evaluate_run, write_report
from lkd_perception.io.bag import bag_info
from lkd_perception.nodes.graph import default_config_path
from lkd_perception.nodes.replay import run_replay
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.recording import write_drive

pytestmark = pytest.mark.slow


def test_short_replay_through_all_nodes_gives_all_outputs_and_a_report(tmp_path):
    cfg = make_config("loop", 3.0, 3, camera=True, camera_width=320, camera_height=240, lidar_azimuths=512)
    write_drive(tmp_path, cfg)
    bag = tmp_path / "drive.mcap"
    # nodes as shipped, with the simulator-trained models whose classes the simulated ground truth knows
    result = run_replay(bag, rate=0.5, record=tmp_path / "outputs", launch_nodes=True,
                        launch_config=default_config_path("simulation.yaml"))
    assert result.published["/camera/image_raw"] == 31 and result.published["/lidar/points"] == 30
    for topic in ("/lkd/detections", "/lkd/lines", "/lkd/lines/markers", "/lkd/odometry", "/lkd/path", "/tf",
                  "/diagnostics"):
        assert result.recorded[topic] > 0, topic

    run = read_recorded_run(tmp_path / "outputs")
    metrics = evaluate_run(run, tmp_path / "gt", {t.name: t.count for t in bag_info(bag).topics})
    # the simulator-trained models on simulated frames, through DDS, the recorder and the evaluation (measured
    # mAP50-95 0.43, sAP10 27): boxes or lines misplaced, mislabelled or matched to the wrong frames score near 0
    assert metrics["detection"]["mAP50-95"] > 0.25
    assert metrics["lines"]["sAP10"] > 15.0 and metrics["lines"]["images"] > 0
    ape = metrics["odometry"]["odom"]["ape_translation_m"]["rmse"]
    assert math.isfinite(ape) and ape < 1.0  # 3 s of driving: anything worse is a broken pipeline
    for node in ("detector_node", "line_node", "lidar_odometry_node"):
        entry = metrics["nodes"][node]
        assert 0.0 < entry["processed_fraction"] <= 1.0 and entry["latency"]["count"] > 0
        assert entry["diagnostics"], node  # the nodes reported health on /diagnostics

    report = write_report(metrics, run, tmp_path / "gt", bag, tmp_path / "report")
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 3  # trajectory, sample frames, latency
    assert (tmp_path / "report" / "metrics.json").is_file()
