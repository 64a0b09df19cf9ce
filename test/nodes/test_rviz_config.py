"""rviz/vehicle.rviz shows what the nodes really publish, with QoS that matches.

The nodes of config/vehicle.yaml start in this process (debug images on, as the RViz file says
they must be); every topic of a display must then have a publisher among them whose reliability
serves the display's (a reliable reader gets nothing from a best-effort writer) and whose
durability is the display's (a transient-local reader gets nothing from a volatile writer, and a
volatile reader misses what a latched writer keeps for an RViz started later).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from lkd_perception.nodes import run_all

ROOT = Path(__file__).resolve().parents[2]
RVIZ = ROOT / "rviz" / "vehicle.rviz"

_DURABILITY = {"Volatile": DurabilityPolicy.VOLATILE, "Transient Local": DurabilityPolicy.TRANSIENT_LOCAL}
_RELIABILITY = {"Reliable": ReliabilityPolicy.RELIABLE, "Best Effort": ReliabilityPolicy.BEST_EFFORT}


def _displays() -> list[dict]:
    return yaml.safe_load(RVIZ.read_text())["Visualization Manager"]["Displays"]


def test_rviz_config_has_the_views_users_expect():
    manager = yaml.safe_load(RVIZ.read_text())["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    by_class: dict[str, list[str]] = {}
    for d in _displays():
        by_class.setdefault(d["Class"].split("/")[-1], []).append(d.get("Topic", {}).get("Value", ""))
    assert sorted(by_class["Image"]) == ["/lkd/detections/debug_image", "/lkd/lines/debug_image"]  # camera + overlays
    assert by_class["Path"] == ["/lkd/path"] and by_class["Odometry"] == ["/lkd/odometry"]
    assert "TF" in by_class
    assert sorted(by_class["PointCloud2"]) == ["/lkd/local_map", "/lkd/scan"]


def test_rviz_topics_are_published_with_matching_qos(ros_ctx):
    plan = run_all.plan(ROOT / "config" / "vehicle.yaml", overrides={"publish_debug_image": True, "threads": 1})
    nodes = run_all.instantiate(plan, context=ros_ctx)
    try:
        probe = nodes[0]
        for d in _displays():
            topic = d.get("Topic", {}).get("Value")
            if not topic:
                continue
            infos = [i for i in probe.get_publishers_info_by_topic(topic)
                     if i.node_name in {n.get_name() for n in nodes}]
            assert infos, f"{d['Name']}: no node publishes {topic}"
            want_durability = _DURABILITY[d["Topic"]["Durability Policy"]]
            want_reliability = _RELIABILITY[d["Topic"]["Reliability Policy"]]
            for info in infos:  # a reliable reader gets nothing from a best-effort writer
                qos = info.qos_profile
                # and a latched topic (the path) is asked for latched, so an RViz started later gets it
                assert qos.durability == want_durability, \
                    f"{topic}: published {qos.durability.name}, RViz asks {want_durability.name}"
                assert (
                    qos.reliability == ReliabilityPolicy.RELIABLE or want_reliability == ReliabilityPolicy.BEST_EFFORT
                ), f"{topic}: published {qos.reliability.name}, RViz asks {want_reliability.name}"
    finally:
        for n in nodes:
            n.destroy_node()
