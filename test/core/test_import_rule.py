"""House rule: only lkd_perception/nodes/ talks to ROS; the core neither prints nor exits."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "lkd_perception"
ROS_MODULES = {
    "rclpy", "rosidl_runtime_py", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs",
    "geometry_msgs", "nav_msgs", "vision_msgs", "tf2_msgs", "visualization_msgs", "diagnostic_msgs",
    "rosgraph_msgs", "launch", "launch_ros", "tf2_ros", "cv_bridge", "message_filters",
}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _core_files() -> list[Path]:
    return [p for p in PKG.rglob("*.py") if "nodes" not in p.relative_to(PKG).parts]


def test_core_never_imports_ros():
    offenders = []
    for path in _core_files():
        for line, mod in _imports(ast.parse(path.read_text(), str(path))):
            if mod in ROS_MODULES:
                offenders.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
    assert not offenders, "ROS imports outside lkd_perception/nodes/:\n" + "\n".join(offenders)


def test_core_never_prints_or_exits():
    """Library code reports through return values, exceptions and logging (the CLI may print)."""
    offenders = []
    for path in _core_files():
        rel = path.relative_to(PKG)
        if rel.parts[0] == "commands" or rel.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in ("print", "exit", "quit"):
                    offenders.append(f"{rel}:{node.lineno} {f.id}()")
                if isinstance(f, ast.Attribute) and f.attr == "exit" and getattr(f.value, "id", "") == "sys":
                    offenders.append(f"{rel}:{node.lineno} sys.exit()")
    assert not offenders, "\n".join(offenders)


def test_rule_detects_a_violation(tmp_path):
    """The checker itself must be able to fail."""
    tree = ast.parse("import rclpy\nfrom sensor_msgs.msg import Image\n")
    assert {m for _, m in _imports(tree)} == {"rclpy", "sensor_msgs"}
