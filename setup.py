"""ament_python packaging of lkd_perception (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lkd_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md")),
        (f"share/{PACKAGE}/LICENSES", glob("LICENSES/*") + ["LICENSE"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest", "hypothesis"]},
    zip_safe=True,
    maintainer="lkd_perception developers",
    maintainer_email="dev@lkd-perception.invalid",
    description="Distilled, lightweight perception for embedded vehicles (ROS 2).",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "lkd = lkd_perception.cli:main",
            "detector_node = lkd_perception.nodes.detector_node:main",
            "line_node = lkd_perception.nodes.line_node:main",
            "lidar_odometry_node = lkd_perception.nodes.lidar_odometry_node:main",
        ],
    },
)
