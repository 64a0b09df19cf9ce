"""Launch the lkd_perception nodes of a vehicle.

    ros2 launch lkd_perception vehicle.launch.py [config:=/path/vehicle.yaml] [namespace:=car1]
        [use_sim_time:=true] [capabilities:=detection,lines,odometry] [image_topic:=/front/image_raw]
        [lidar_topic:=/velodyne_points] [imu_topic:=/imu] [log_level:=debug] [autostart:=false]

The nodes are managed (lifecycle) nodes; with ``autostart`` (default true) each configures and
activates itself, otherwise they wait unconfigured for ``ros2 lifecycle set`` or a lifecycle manager.

The launch file only wires: which nodes, their parameter file and remappings come from
``lkd_perception.nodes.graph``, the same description ``lkd launch`` uses. Settings in the YAML
file override nothing here: every tunable lives in the YAML, whose sections are keyed
``/**/<node>`` so that rcl applies them under any namespace.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from lkd_perception.nodes.dds import dds_environment
from lkd_perception.nodes.graph import CAPABILITIES, LOG_LEVELS, PACKAGE, TOPIC_ARGUMENTS, remappings, select


def _nodes(context):
    config = LaunchConfiguration("config").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")
    specs = select(LaunchConfiguration("capabilities").perform(context))
    topics = {arg: LaunchConfiguration(arg).perform(context) for arg in TOPIC_ARGUMENTS}
    log_level = LaunchConfiguration("log_level").perform(context)
    autostart = LaunchConfiguration("autostart").perform(context).lower() in ("true", "1", "yes")
    # the shipped Fast DDS profile (config/fastdds.xml) unless FASTDDS_DEFAULT_PROFILES_FILE is set
    env = dds_environment()
    return [
        Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=namespace,
            parameters=[config, {"use_sim_time": use_sim_time, "autostart": autostart}],
            remappings=remappings(spec, topics),
            ros_arguments=["--log-level", log_level],
            additional_env=env,
            output="screen",
            emulate_tty=True,
        )
        for spec in specs
    ]


def generate_launch_description():
    default_config = str(Path(get_package_share_directory(PACKAGE)) / "config" / "vehicle.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value=default_config, description="ROS 2 parameter file"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
            DeclareLaunchArgument(
                "capabilities", default_value="all",
                description="comma-separated subset of: " + ", ".join(CAPABILITIES) + " (or all)",
            ),
            *[
                DeclareLaunchArgument(arg, default_value=own, description=f"input topic (remaps the nodes' {own})")
                for arg, own in TOPIC_ARGUMENTS.items()
            ],
            DeclareLaunchArgument("log_level", default_value="info", description="one of: " + ", ".join(LOG_LEVELS)),
            DeclareLaunchArgument(
                "autostart", default_value="true",
                description="configure and activate the lifecycle nodes at start-up (false: wait for transitions)",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
