"""House rules: only lkd_perception/nodes/ talks to ROS; the core neither prints nor exits; the
subpackages import each other without cycles (a cycle means two subpackages are one, or one holds
what belongs to a third, like the wire format of lines that both eval and lines need)."""

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


SUBPACKAGES = ("common", "io", "detection", "lines", "odometry", "sim", "eval", "offline", "commands", "nodes")


def _package_imports(tree: ast.AST) -> set[str]:
    """Modules of lkd_perception a module imports, at any depth (function-level imports count too:
    they are a dependency all the same, only a deferred one)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("lkd_perception.")}


def _subpackage_graph(sources: dict[str, str]) -> dict[str, dict[str, str]]:
    """{importing subpackage: {imported subpackage: first 'file:line' seen}} from {relative path: source}."""
    graph: dict[str, dict[str, str]] = {}
    for rel, text in sorted(sources.items()):
        src = rel.split("/")[0]
        if src not in SUBPACKAGES:
            continue
        for node in ast.walk(ast.parse(text, rel)):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for mod in _package_imports(node):
                dst = mod.split(".")[1]
                if dst in SUBPACKAGES and dst != src:
                    graph.setdefault(src, {}).setdefault(dst, f"{rel}:{node.lineno}")
    return graph


def _cycle(graph: dict[str, dict[str, str]]) -> list[str]:
    """One cycle of subpackages as a path ``[a, b, ..., a]``, or ``[]`` when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_no_import_cycle_between_subpackages():
    sources = {p.relative_to(PKG).as_posix(): p.read_text() for p in PKG.rglob("*.py")}
    graph = _subpackage_graph(sources)
    assert graph.get("commands"), "the scan found no imports at all: the checker is broken"
    cycle = _cycle(graph)
    where = [graph[a][b] for a, b in zip(cycle, cycle[1:])]
    assert not cycle, "subpackage import cycle " + " -> ".join(cycle) + "\n" + "\n".join(where)


def test_cycle_check_detects_a_cycle():
    """The checker itself must be able to fail, also on a cycle through a third subpackage and on
    an import inside a function."""
    sources = {
        "eval/a.py": "from lkd_perception.lines import b\n",
        "lines/b.py": "def f():\n    from lkd_perception.io.c import x\n",
        "io/c.py": "import lkd_perception.eval.a\n",
        "common/d.py": "from lkd_perception.io import c\n",
    }
    cycle = _cycle(_subpackage_graph(sources))
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["eval", "io", "lines"]
    del sources["io/c.py"]
    assert _cycle(_subpackage_graph(sources)) == []


def test_rule_detects_a_violation(tmp_path):
    """The checker itself must be able to fail."""
    tree = ast.parse("import rclpy\nfrom sensor_msgs.msg import Image\n")
    assert {m for _, m in _imports(tree)} == {"rclpy", "sensor_msgs"}
