"""package.xml resolves with rosdep and declares what the package imports.

`rosdep install --from-paths src --ignore-src` resolves a dependency when it is a rosdep key or a
released package of the ROS distribution. test/fixtures/ros/ holds both lists (a snapshot of
ros/rosdistro, see its README): every key of package.xml must be a rosdep key or released in
each distribution we support, and every third-party module the package (launch file and setup.py
included) imports must be declared, or be listed below as not installable through rosdep, with
the reason.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "test" / "fixtures" / "ros"
DISTROS = ("humble", "jazzy", "kilted")
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend", "build_export_depend")

#: imported module -> its rosdep key, where the two names differ (ROS packages import by their own name)
MODULE_KEYS = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "PIL": "python3-pil", "yaml": "python3-yaml",
    "scipy": "python3-scipy", "onnxruntime": "python3-onnxruntime-pip", "open3d": "python3-open3d-pip",
    "rosbags": "python3-rosbags-pip", "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm",
    "setuptools": "python3-setuptools",
}

#: imported, but deliberately not in package.xml: no rosdep key exists, or not needed to run the nodes
NOT_DECLARED = {
    "torch": "training and export only; a Jetson needs NVIDIA's wheel, not the distribution's (README)",
    "onnx": "export and quantisation only; no rosdep key",
    "faster_coco_eval": "lkd evaluate detections only; no rosdep key",
    "kiss_icp": "the optional KISS-ICP baseline of lkd odometry; no rosdep key",
    "ray": "lkd evaluate fleet and lkd bench fleet only (pip); no rosdep key",
}


def _lines(name: str) -> set[str]:
    return {ln.strip() for ln in (FIXTURES / name).read_text().splitlines() if ln.strip()}


def _declared() -> dict[str, str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {el.text.strip(): el.tag for tag in DEPEND_TAGS for el in root.findall(tag)}


def _imported_modules() -> dict[str, set[str]]:
    files = [*(ROOT / "lkd_perception").rglob("*.py"), *(ROOT / "launch").glob("*.py"), ROOT / "setup.py"]
    found: dict[str, set[str]] = {}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top != "lkd_perception":
                    found.setdefault(top, set()).add(str(f.relative_to(ROOT)))
    return found


def test_every_package_xml_key_resolves_with_rosdep_on_every_distribution():
    keys = _lines("rosdep_keys.txt")
    released = {d: _lines(f"{d}_packages.txt") for d in DISTROS}
    declared = _declared()
    assert declared, "package.xml declares no dependency"
    unresolved = {k: [d for d in DISTROS if k not in released[d]] for k in declared if k not in keys}
    unresolved = {k: missing for k, missing in unresolved.items() if missing}
    assert not unresolved, f"neither rosdep keys nor released packages (key: distributions lacking it): {unresolved}"


def test_every_imported_package_is_declared_in_package_xml():
    declared = _declared()
    missing = {}
    for module, where in sorted(_imported_modules().items()):
        if module in NOT_DECLARED:
            continue
        key = MODULE_KEYS.get(module, module)
        if key not in declared:
            missing[module] = sorted(where)[:3]
    assert not missing, f"imported but not in package.xml (module -> where): {missing}"


def test_undeclared_modules_are_imported_and_have_no_rosdep_key():
    """The exception list stays honest: each entry is still imported, and none has a key to use instead."""
    imported = _imported_modules()
    keys = _lines("rosdep_keys.txt")
    for module in NOT_DECLARED:
        assert module in imported, f"{module} is no longer imported: drop it from NOT_DECLARED"
    for module in ("onnx", "faster_coco_eval", "kiss_icp", "ray"):
        name = module.replace("_", "-")
        assert not {f"python3-{name}", f"python3-{name}-pip"} & keys, f"{module} has a rosdep key now: declare it"


def test_every_declared_runtime_key_is_used():
    """No stale dependency: each exec/build dependency is imported (by the package, its launch file or setup.py)."""
    imported = {MODULE_KEYS.get(m, m) for m in _imported_modules()}
    declared = {k for k, tag in _declared().items() if tag != "test_depend"}
    stale = sorted(declared - imported)
    assert not stale, f"declared in package.xml but never imported: {stale}"
