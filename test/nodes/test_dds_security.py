"""What DDS-Security the installed middleware offers (README, "Security").

The Fast DDS inside the ROS 2 Python wheels is built without the security plugins. This test holds
that measured fact: with ``ROS_SECURITY_ENABLE=true`` and ``Enforce`` a node must refuse to start
(never run open), and the refusal names the missing libraries. If the wheels gain the plugins,
this fails: then enclaves can be supported and tested with an unauthenticated participant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import rclpy
rclpy.init(args=["--ros-args", "--enclave", "/lkd"])
try:
    rclpy.create_node("secured")
except Exception as exc:
    print("REFUSED:", " ".join(str(exc).split()))
else:
    print("STARTED")
"""


def _keystore(root):
    enclave = root / "enclaves" / "lkd"
    enclave.mkdir(parents=True)
    for name in ("identity_ca.cert.pem", "cert.pem", "key.pem", "permissions_ca.cert.pem",
                 "governance.p7s", "permissions.p7s"):
        (enclave / name).write_text("placeholder\n")
    return root


def test_enforced_security_refuses_to_start_without_the_plugins(tmp_path):
    env = dict(os.environ, ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce",
               ROS_SECURITY_KEYSTORE=str(_keystore(tmp_path / "keystore")))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert "STARTED" not in out.stdout, "a node ran with enforced security: the middleware has the plugins now"
    assert "REFUSED:" in out.stdout, out.stdout + out.stderr
    assert "security libraries" in out.stdout, out.stdout


def test_without_security_the_same_node_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROS_SECURITY")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert "STARTED" in out.stdout, out.stdout + out.stderr


def test_lkd_launch_says_so_in_one_line(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce",
               ROS_SECURITY_KEYSTORE=str(_keystore(tmp_path / "keystore")))
    out = subprocess.run([sys.executable, "-m", "lkd_perception.cli", "launch", str(root / "config" / "vehicle.yaml"),
                          "--capabilities", "lines"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("lkd: error:")]
    assert len(errors) == 1 and "no security plugins" in errors[0] and "Traceback" not in out.stderr
