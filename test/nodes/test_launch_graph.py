"""The launch file and `lkd launch` start the same nodes with the same parameters, all from
config/vehicle.yaml, whose keys are exactly the fields of the nodes' config dataclasses.

ROS 2 `launch`/`launch_ros` are not on the pip wheels, so the launch file is executed against a
minimal stand-in of those two modules that records the Node actions it creates; everything else
(graph, YAML, node classes, parameters) is real.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from lkd_perception.common.config import describe, flatten, from_dict, load_yaml, node_parameters
from lkd_perception.common.node_io import NodeIOConfig
from lkd_perception.nodes import run_all
from lkd_perception.nodes.dds import dds_environment
from lkd_perception.nodes.graph import GRAPH, config_class, default_config_path, remappings

ROOT = Path(__file__).resolve().parents[2]


def test_vehicle_yaml_keys_are_config_fields():
    params = load_yaml(ROOT / "config" / "vehicle.yaml")
    common = {s.name for s in describe(NodeIOConfig)}
    for spec in GRAPH:
        cls = config_class(spec)
        # the node under any namespace; a section's keys nested (``loop: {min_age_s: ...}``)
        own = flatten(params[f"/**/{spec.name}"]["ros__parameters"])
        from_dict(cls, own)  # strict: an unknown or out-of-range key fails here
        assert set(own) == {s.name for s in describe(cls)}, f"{spec.name}: YAML and {cls.__name__} differ"
        assert common <= set(node_parameters(params, spec.name))


class _Recorder:
    nodes: list[dict] = []


def _fake_launch_modules(values: dict[str, str]) -> dict[str, types.ModuleType]:
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    subst = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchDescription(list):
        pass

    class DeclareLaunchArgument:
        def __init__(self, name, default_value="", description=""):
            self.name, self.default_value = name, default_value

    class OpaqueFunction:
        def __init__(self, function):
            self.function = function

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    def Node(**kwargs):  # noqa: N802 - mirrors launch_ros.actions.Node
        _Recorder.nodes.append(kwargs)
        return kwargs

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    subst.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = Node
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": subst,
            "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def _run_launch_file(args: dict[str, str], declared: dict[str, str] | None = None) -> list[dict]:
    """The Node actions the launch file creates for ``args``; ``declared`` receives its arguments' defaults."""
    saved = {k: sys.modules.get(k) for k in ("launch", "launch.actions", "launch.substitutions", "launch_ros",
                                             "launch_ros.actions")}
    sys.modules.update(_fake_launch_modules(args))
    _Recorder.nodes = []
    try:
        spec = importlib.util.spec_from_file_location("vehicle_launch", ROOT / "launch" / "vehicle.launch.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        import ament_index_python.packages as aip

        real = aip.get_package_share_directory
        mod.get_package_share_directory = lambda pkg: str(ROOT)  # share layout == source layout here
        try:
            desc = mod.generate_launch_description()
        finally:
            mod.get_package_share_directory = real
        defaults = {a.name: a.default_value for a in desc if hasattr(a, "default_value")}
        if declared is not None:
            declared.update(defaults)
        context = {**defaults, **args}
        for action in desc:
            if hasattr(action, "function"):
                action.function(context)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return _Recorder.nodes


def test_launch_file_and_lkd_launch_start_the_same_nodes(ros_ctx):
    args = {"capabilities": "lines,odometry", "namespace": "car1", "use_sim_time": "true",
            "config": str(default_config_path()), "image_topic": "/front/image_raw", "lidar_topic": "/velodyne_points",
            "log_level": "debug"}
    launched = _run_launch_file(args)
    topics = {k: args[k] for k in ("image_topic", "lidar_topic")}
    plan = run_all.plan(args["config"], args["capabilities"], args["namespace"], use_sim_time=True, topics=topics,
                        log_level="debug")
    assert [n["name"] for n in launched] == [s.name for s in plan.nodes] == ["line_node", "lidar_odometry_node"]
    expected_remaps = {"line_node": [("camera/image_raw", "/front/image_raw")],
                       "lidar_odometry_node": [("lidar/points", "/velodyne_points")]}
    for action, spec in zip(launched, plan.nodes):
        assert action["executable"] == spec.executable and action["namespace"] == "car1"
        # the same file for rcl to parse, and the same parameters over it
        assert action["parameters"] == [args["config"], {"use_sim_time": True, "autostart": True}]
        assert plan.ros_arguments(spec)[:3] == ["--ros-args", "--params-file", str(Path(args["config"]).resolve())]
        assert plan.parameters() == {"use_sim_time": True, "autostart": True}
        assert action["remappings"] == remappings(spec, topics) == expected_remaps[spec.name]
        assert action["ros_arguments"] == ["--log-level", "debug"] and plan.log_level == "debug"
        assert action["additional_env"] == dds_environment()  # the Fast DDS profile lkd launch uses

    # and the nodes lkd launch creates really subscribe to the remapped topics
    nodes = run_all.instantiate(plan, context=ros_ctx)
    try:
        subscribed = {n.get_name(): {t for t, _ in n.get_subscriber_names_and_types_by_node(n.get_name(), "/car1")}
                      for n in nodes}
        assert "/front/image_raw" in subscribed["line_node"] and "/car1/camera/image_raw" not in subscribed["line_node"]
        assert {"/velodyne_points", "/car1/imu/data"} <= subscribed["lidar_odometry_node"]
        for node in nodes:
            assert node.get_fully_qualified_name() == f"/car1/{node.get_name()}"
            assert node.get_parameter("use_sim_time").value is True
    finally:
        for n in nodes:
            n.destroy_node()


def test_launch_arguments_agree_between_launch_file_lkd_launch_and_readme():
    """The launch file's arguments are `lkd launch`'s options (same defaults), and the README names each."""
    import argparse

    from lkd_perception.commands.launch import COMMANDS

    declared: dict[str, str] = {}
    assert _run_launch_file({"capabilities": "lines"}, declared)
    parser = argparse.ArgumentParser()
    COMMANDS[0].add_arguments(parser)
    launch_cmd = parser.parse_args([])
    readme = (ROOT / "README.md").read_text()
    for name, default in declared.items():
        assert f"{name}:=" in readme, f"README does not show the launch argument {name}"
        if name == "config":
            continue  # lkd launch takes it as its positional argument
        value = getattr(launch_cmd, name)
        assert str(value).lower() == str(default).lower(), (name, value, default)
        assert f"--{name.replace('_', '-')}" in readme, f"README does not show lkd launch --{name.replace('_', '-')}"


def test_parameter_files_are_what_lkd_config_defaults_generates():
    """config/vehicle.yaml and config/simulation.yaml are generated: a changed default or
    description must be regenerated (lkd config defaults [--profile simulation] --out ...)."""
    from lkd_perception.commands.config import PROFILES, render

    for profile, (file_name, _title, _overrides) in PROFILES.items():
        assert (ROOT / "config" / file_name).read_text() == render(profile), f"regenerate config/{file_name}"
