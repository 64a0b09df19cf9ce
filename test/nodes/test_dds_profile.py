"""The product's processes run Fast DDS with config/fastdds.xml: a shared-memory segment that
holds camera frames (the 512 KiB default holds less than one VGA frame; see the file's comment)."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from lkd_perception.nodes.dds import PROFILE_ENV, dds_environment, default_profile_path
from lkd_perception.nodes.processes import NodeProcesses

ROOT = Path(__file__).resolve().parents[2]
NS = {"d": "http://www.eprosima.com"}
VGA_RGB8 = 640 * 480 * 3


def _segment_size() -> int:
    root = ET.parse(ROOT / "config" / "fastdds.xml").getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", NS) if t.findtext("d:type", namespaces=NS) == "SHM"]
    assert len(shm) == 1
    return int(shm[0].findtext("d:segment_size", namespaces=NS))


def test_profile_holds_several_camera_frames_and_is_the_default_participant():
    assert default_profile_path() == ROOT / "config" / "fastdds.xml"
    root = ET.parse(default_profile_path()).getroot()
    participant = root.find(".//d:participant", NS)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=NS) == "false"
    assert _segment_size() >= 16 * VGA_RGB8  # every reader may lag several frames


def test_dds_environment_respects_the_users_choice():
    assert dds_environment({}) == {PROFILE_ENV: str(ROOT / "config" / "fastdds.xml")}
    assert dds_environment({PROFILE_ENV: "/elsewhere/profile.xml"}) == {}
    assert dds_environment({PROFILE_ENV: ""}) == {}  # explicitly none: Fast DDS defaults
    assert dds_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}


def _fastdds_segments(pid: int) -> dict[str, int]:
    names = set(re.findall(r"/dev/shm/(fastdds_[0-9a-f]{16})\b", Path(f"/proc/{pid}/maps").read_text()))
    sizes = {}
    for n in names:
        try:
            sizes[n] = (Path("/dev/shm") / n).stat().st_size
        except OSError:
            pass
    return sizes


def test_a_node_process_maps_a_segment_of_the_profiles_size(monkeypatch):
    # unset here, so the node process (lkd launch) has to apply the shipped profile itself
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    nodes = NodeProcesses("detection")
    nodes.start()
    try:
        pid = nodes.procs["detector_node"].pid
        want = _segment_size()
        deadline = time.monotonic() + 60.0
        segments: dict[str, int] = {}

        def profile_segment() -> bool:
            # Fast DDS adds its bookkeeping to the file (+5 %), so compare with a margin
            return any(want <= s <= want * 1.1 for s in segments.values())

        while time.monotonic() < deadline and not profile_segment():
            nodes.check_started()
            segments = _fastdds_segments(pid)
            time.sleep(0.5)
        assert profile_segment(), segments
        # the soak's memory breakdown of the same process: the parts add up to the resident total
        mem = nodes.memory_mb("detector_node")
        assert mem is not None and mem["anon"] > 0 and mem["file"] > 0
        assert abs(mem["rss"] - (mem["anon"] + mem["file"] + mem["shmem"])) < 1.0, mem
    finally:
        nodes.stop()
