"""`colcon build` of the package installs the launch file, the config and the ament index marker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is installed by make setup")
@pytest.mark.slow
def test_colcon_build_installs_share_files(tmp_path):
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [
        "colcon", "--log-base", str(tmp_path / "log"), "build",
        "--base-paths", str(ROOT), "--packages-select", "lkd_perception",
        "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
        "--event-handlers", "console_direct-",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    share = tmp_path / "install" / "lkd_perception" / "share"
    assert (share / "lkd_perception" / "launch" / "vehicle.launch.py").is_file()
    assert (share / "lkd_perception" / "config" / "vehicle.yaml").is_file()
    assert (share / "lkd_perception" / "config" / "fastdds.xml").is_file()
    assert (share / "lkd_perception" / "rviz" / "vehicle.rviz").is_file()
    assert (share / "lkd_perception" / "package.xml").is_file()
    assert (share / "ament_index" / "resource_index" / "packages" / "lkd_perception").is_file()
    lib = tmp_path / "install" / "lkd_perception" / "lib"
    scripts = {p.name for p in (lib / "lkd_perception").iterdir()}
    assert {"lkd", "detector_node", "line_node", "lidar_odometry_node"} <= scripts
    site = list(lib.glob(f"python{sys.version_info.major}.{sys.version_info.minor}/site-packages/lkd_perception"))
    assert site and (site[0] / "nodes" / "base.py").is_file()
    # the installed package finds its own Fast DDS profile (not the source tree's)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lkd_perception.nodes.dds import default_profile_path; print(default_profile_path())",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site[0].parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert Path(probe.stdout.strip()) == share / "lkd_perception" / "config" / "fastdds.xml"
