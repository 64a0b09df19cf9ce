"""The Fast DDS transport profile the product's processes run with.

Fast DDS's default shared-memory segment (512 KiB per participant) is smaller than one VGA
rgb8 frame, so camera frames pass through it in fragments and, as soon as a reader lags, lose
fragments: reliable readers then get frames late and in bursts, best-effort readers not at all.
``config/fastdds.xml`` sizes the segment for camera frames (see the comment in that file and
README.md, "DDS transport", for what it changed in measured replays).

The profile reaches Fast DDS through ``FASTDDS_DEFAULT_PROFILES_FILE``, read once per process
when its first participant is created, so :func:`use_dds_profile` must run before
``rclpy.init``. A profile the user chose (the variable already set, even to an empty string) or
another middleware (``RMW_IMPLEMENTATION`` not Fast DDS) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from lkd_perception.common.paths import SOURCE_ROOT, install_share_dirs

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_NAME = "fastdds.xml"


def default_profile_path() -> Path | None:
    """``config/fastdds.xml`` of the source checkout or of an install's package share."""
    for base in (SOURCE_ROOT, *install_share_dirs()):
        p = base / "config" / PROFILE_NAME
        if p.is_file():
            return p
    return None


def dds_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables a node process needs added to ``environ`` (default ``os.environ``):
    the shipped profile, or nothing when the user chose a profile or another middleware."""
    env = os.environ if environ is None else environ
    if PROFILE_ENV in env:
        return {}
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return {}
    profile = default_profile_path()
    return {PROFILE_ENV: str(profile)} if profile else {}


def use_dds_profile() -> str | None:
    """Put the shipped profile into this process's environment (before ``rclpy.init``) unless
    the user chose one; returns the profile in effect, if any."""
    os.environ.update(dds_environment())
    return os.environ.get(PROFILE_ENV) or None


#: what rcl says when ROS 2 security is requested from a Fast DDS built without it
_NO_SECURITY = "doesn't have the security libraries"


def explain_node_error(exc: Exception) -> str | None:
    """One actionable line for a node that the middleware refused to create, or None.

    The ROS 2 Python wheels' Fast DDS has no DDS-Security plugins, so with
    ``ROS_SECURITY_ENABLE=true`` every participant is refused (never started open). Users meet
    that as an RCLError deep in rclpy; this says what it means and where to read on.
    """
    text = " ".join(str(exc).split())
    if _NO_SECURITY in text:
        return ("ROS 2 security is requested (ROS_SECURITY_ENABLE=true) but this ROS 2 installation's Fast DDS "
                "has no security plugins (the Python wheels are built without them); no node was started. "
                "Use a ROS 2 from the apt repositories for DDS-Security, or unset ROS_SECURITY_ENABLE "
                "and keep DDS off untrusted networks (README, 'Security')")
    return None
