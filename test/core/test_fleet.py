"""`lkd evaluate fleet` on local Ray: three short simulated bags, one of them corrupt."""

from __future__ import annotations

import json
import shutil

import pytest

from lkd_perception.cli import main
from lkd_perception.eval import fleet as report
from lkd_perception.nodes.graph import default_config_path
from lkd_perception.offline.fleet import find_bags, run_fleet, signature
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.recording import write_drive


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet") / "drives"
    for name, scenario, seed in (("loop", "loop", 3), ("urban", "urban", 4)):
        write_drive(root / name, make_config(scenario, 1.5, seed, camera=True, camera_width=320, camera_height=240,
                                             lidar_azimuths=512))
    good = (root / "loop" / "drive.mcap").read_bytes()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "drive.mcap").write_bytes(good[: len(good) // 3])  # a recording cut short
    return root


@pytest.fixture(scope="module")
def fleet_a(local_ray, drives, tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet_a")
    assert main(["evaluate", "fleet", str(drives), "--out", str(out), "--workers", "2",
                 "--config", str(default_config_path("simulation.yaml"))]) == 0
    return out


@pytest.mark.slow
def test_fleet_reports_the_corrupt_bag_and_scores_the_others(fleet_a):
    doc = json.loads((fleet_a / "fleet.json").read_text())
    rows = {r["bag"]: r for r in doc["rows"]}
    assert set(rows) == {"drives__loop__drive", "drives__urban__drive", "drives__corrupt__drive"}
    bad = rows["drives__corrupt__drive"]
    assert bad["status"] == "failed" and "cannot read bag" in bad["error"]
    for name in ("drives__loop__drive", "drives__urban__drive"):
        r = rows[name]
        assert r["status"] == "ok" and r["has_gt"], r
        assert r["frames"] == 16 and r["scans"] == 15 and r["processed"] == 1.0
        # simulator-trained models on simulated drives: measured mAP50-95 0.53 / 0.46, sAP10 28 / 22 (loop / urban)
        assert r["mAP50_95"] > 0.3 and r["sAP10"] > 10.0 and r["ape_odom_m"] < 0.5
        assert r["distance_m"] > 3.0 and r["segments_per_frame"] > 0 and r["realtime_factor"] > 0
        assert (fleet_a / r["report"]).is_file()  # the per-bag report the fleet report links to
    assert doc["summary"]["ok"] == 2 and doc["summary"]["failed"] == 1
    html = (fleet_a / "fleet.html").read_text()
    assert "bags/drives__loop__drive/report/report.html" in html and "cannot read bag" in html
    assert report.worst_first(doc["rows"])[0]["bag"] == "drives__corrupt__drive"


@pytest.mark.slow
def test_rerun_skips_finished_bags(fleet_a, drives):
    config = default_config_path("simulation.yaml")
    before = json.loads((fleet_a / "fleet.json").read_text())["rows"]
    again = run_fleet([drives], fleet_a, config=config, workers=2)
    assert sorted(again.skipped) == ["drives__loop__drive", "drives__urban__drive"]  # the corrupt one is retried
    assert report.result_table(again.rows) == report.result_table(before)
    # anything that makes a different run makes a different signature
    bag = drives / "loop" / "drive.mcap"
    base = signature("v1", "cfg", "all", bag, drives / "loop" / "gt")
    assert base != signature("v2", "cfg", "all", bag, drives / "loop" / "gt")
    assert base != signature("v1", "cfg2", "all", bag, drives / "loop" / "gt")
    assert base != signature("v1", "cfg", "detection", bag, drives / "loop" / "gt")


@pytest.mark.slow
def test_comparison_flags_an_injected_regression(fleet_a, drives, tmp_path, local_ray):
    # software B: the same bags with a detector that reports only its most confident boxes
    text = default_config_path("simulation.yaml").read_text()
    assert "conf_threshold: 0.25" in text
    config_b = tmp_path / "b.yaml"
    config_b.write_text(text.replace("conf_threshold: 0.25", "conf_threshold: 0.85"))
    good = tmp_path / "drives"
    for name in ("loop", "urban"):
        shutil.copytree(drives / name, good / name)
    b = run_fleet([good], tmp_path / "fleet_b", config=config_b, capabilities="detection", workers=2)
    rows_a = json.loads((fleet_a / "fleet.json").read_text())["rows"]
    cmp = report.compare(rows_a, b.rows)
    assert cmp["bags_compared"] == 2
    regressed = {(c["bag"], c["metric"]) for c in cmp["regressions"]}
    assert {("drives__loop__drive", "mAP50_95"), ("drives__urban__drive", "mAP50_95")} <= regressed, cmp
    assert {m for _, m in regressed} <= {"mAP50_95", "mAP50"}  # nothing else moved: lines/odometry did not run
    assert report.compare(rows_a, rows_a)["changes"] == []


@pytest.mark.slow
def test_find_bags_names_and_skips_outputs(drives, fleet_a):
    names = [n for n, _ in find_bags([drives, fleet_a])]
    assert names == ["drives__corrupt__drive", "drives__loop__drive", "drives__urban__drive"]


def test_worst_first_and_degraded_spans_without_ray():
    rows = [{"bag": "good", "status": "ok", "mAP50_95": 0.5, "ape_odom_m": 0.05, "degraded_scans": 0},
            {"bag": "drifty", "status": "ok", "mAP50_95": 0.5, "ape_odom_m": 0.9, "degraded_scans": 12},
            {"bag": "broken", "status": "failed", "error": "InputError: cannot read bag"},
            {"bag": "fine", "status": "ok", "mAP50_95": 0.52, "ape_odom_m": 0.04, "degraded_scans": 0}]
    assert [r["bag"] for r in report.worst_first(rows)] == ["broken", "drifty", "good", "fine"]
    assert report.degraded_spans([10.0, 10.1, 10.2, 30.0, 10.9]) == [(10.0, 10.9), (30.0, 30.0)]
    s = report.summarize(rows)
    assert (s["ok"], s["failed"]) == (3, 1) and s["metrics"]["ape_odom_m"]["max"] == 0.9
