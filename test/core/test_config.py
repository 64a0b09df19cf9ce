"""Config dataclasses: one name per setting, validated the same way offline and in nodes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lkd_perception.common.config import (
    describe,
    from_dict,
    load_yaml,
    node_parameters,
    param,
    section,
    sections,
    to_dict,
    unknown_settings,
    updated,
)
from lkd_perception.common.errors import ConfigError


@dataclass(frozen=True)
class Demo:
    threshold: float = param(0.5, "score threshold", lo=0.0, hi=1.0)
    count: int = param(3, "how many", lo=1)
    mode: str = param("fast", "mode", choices=("fast", "slow"))
    enabled: bool = param(True, "on/off")
    weights: list[float] = param([1.0, 2.0], "weights")


@dataclass(frozen=True)
class Inner:
    min_inliers: int = param(10, "inliers", lo=3)
    kernel: str = param("cauchy", "kernel", choices=("cauchy", "none"))


@dataclass(frozen=True)
class Outer:
    rate: float = param(1.0, "rate", lo=0.0)
    loop: Inner = section(Inner, "the loop part")
    tail: bool = param(False, "after the section")


def test_describe_carries_ranges_and_types():
    specs = {s.name: s for s in describe(Demo)}
    assert specs["threshold"].type is float and specs["threshold"].lo == 0.0 and specs["threshold"].hi == 1.0
    assert specs["count"].type is int and specs["count"].hi is None
    assert specs["mode"].choices == ("fast", "slow")
    assert specs["weights"].type is list and specs["weights"].element_type is float


def test_from_dict_validates_and_coerces():
    cfg = from_dict(Demo, {"threshold": 1, "weights": [3, 4.5]})
    assert cfg.threshold == 1.0 and isinstance(cfg.threshold, float)
    assert cfg.weights == [3.0, 4.5]
    assert to_dict(cfg)["mode"] == "fast"


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"threshold": 1.5}, "above the maximum"),
        ({"count": 0}, "below the minimum"),
        ({"mode": "turbo"}, "not one of"),
        ({"enabled": "yes"}, "expected bool"),
        ({"count": True}, "expected int"),
        ({"threshhold": 0.1}, "unknown setting"),
        ({"threshold": float("nan")}, "not finite"),
    ],
)
def test_from_dict_rejects_bad_values(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(Demo, values)


def test_node_parameters_follow_ros_precedence(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    count: 2\n    mode: slow\nnode_a:\n  ros__parameters:\n    count: 5\n")
    params = node_parameters(load_yaml(f), "node_a")
    assert params == {"count": 5, "mode": "slow"}
    # a bare node name is /node_a to rcl: not the node under a namespace; /**/node_a is
    assert node_parameters(load_yaml(f), "node_a", namespace="car1") == {"count": 2, "mode": "slow"}
    f.write_text("/**:\n  ros__parameters:\n    count: 2\n/**/node_a:\n  ros__parameters:\n    count: 5\n"
                 "/car1/*:\n  ros__parameters:\n    mode: fast\n")
    assert node_parameters(load_yaml(f), "node_a", namespace="/car1") == {"count": 5, "mode": "fast"}
    assert node_parameters(load_yaml(f), "node_a", namespace="car1/front") == {"count": 5}
    assert node_parameters(load_yaml(f), "node_b") == {"count": 2}
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_a_section_is_dotted_parameters_and_a_nested_mapping():
    specs = describe(Outer)
    assert [s.name for s in specs] == ["rate", "loop.min_inliers", "loop.kernel", "tail"]
    assert specs[1].lo == 3 and specs[2].choices == ("cauchy", "none")
    assert sections(Outer) == {"loop": "the loop part"}
    # YAML gives a nested mapping, ROS parameters dotted names: the same config either way
    nested = from_dict(Outer, {"loop": {"min_inliers": 4}, "tail": True})
    dotted = from_dict(Outer, {"loop.min_inliers": 4, "tail": True})
    assert nested == dotted == Outer(loop=Inner(min_inliers=4), tail=True)
    assert to_dict(nested) == {"rate": 1.0, "loop": {"min_inliers": 4, "kernel": "cauchy"}, "tail": True}
    assert updated(nested, {"loop.kernel": "none"}) == Outer(loop=Inner(4, "none"), tail=True)
    with pytest.raises(ConfigError, match=r"Outer.loop.min_inliers: 2 is below the minimum"):
        from_dict(Outer, {"loop": {"min_inliers": 2}})
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['loop.min_inlier'\]"):
        from_dict(Outer, {"loop": {"min_inlier": 4}})
    with pytest.raises(ConfigError, match="not one of"):
        updated(nested, {"loop.kernel": "huber"})


def test_node_parameters_name_nested_settings_as_rcl_does(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    loop:\n      min_inliers: 5\n      kernel: none\n"
                 "/**/node_a:\n  ros__parameters:\n    loop:\n      min_inliers: 7\n")
    params = node_parameters(load_yaml(f), "node_a")
    assert params == {"loop.min_inliers": 7, "loop.kernel": "none"}  # per parameter, the later section wins
    assert from_dict(Outer, params).loop == Inner(7, "none")


def test_unknown_settings_suggest_the_renamed_or_misspelt_name():
    known = ["loop.min_age_s", "loop.search_radius", "voxel_size"]
    assert unknown_settings(["loop_min_age_s", "voxel_size", "voxle_size", "colour"], known) == {
        "colour": None, "loop_min_age_s": "loop.min_age_s", "voxle_size": "voxel_size"}
    assert unknown_settings(known, known) == {}
