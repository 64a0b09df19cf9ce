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

