"""The import direction of DESIGN.md ("Layers"), checked on the source by walking every import
statement (``ast``; imports inside functions and under TYPE_CHECKING count too).

- ``fusion_core`` imports neither ``sim``, ``ros_nodes``, ``dyn_fusion`` nor rclpy;
- ``sim`` imports neither ``ros_nodes``, ``dyn_fusion`` nor rclpy (it may import fusion_core: it
  writes the formats fusion_core defines);
- in ``ros_nodes`` only ``sim_node`` imports ``sim``;
- inside ``fusion_core`` the packages form a stack (``FUSION_CORE_STACK``): a module imports only
  its own package and packages below it, so no two packages can import each other. The
  top-level modules (``boxes``, ``config_io``, ...) are the floor and import no package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: each package may import those before it, never those after it.
FUSION_CORE_STACK = ("data", "energy", "model", "metrics", "training", "exits", "gates", "runtime", "evaluation")
ROS_PACKAGES = ("rclpy", "rcl_interfaces")


def imported_modules(path: Path, root: Path) -> list[str]:
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append(".".join((*base, node.module) if node.module else base))
            elif node.module:
                found.append(node.module)
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _stack_level(module_parts: tuple[str, ...]) -> int:
    """Position of a fusion_core module in the stack; -1 for the top-level modules."""
    if len(module_parts) >= 2 and module_parts[1] in FUSION_CORE_STACK:
        return FUSION_CORE_STACK.index(module_parts[1])
    return -1


def violations(root: Path = ROOT) -> list[str]:
    """One line per import that breaks the layering, for every .py under the three packages."""
    bad = []
    for path in sorted(p for top in ("fusion_core", "sim", "ros_nodes") for p in (root / top).rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.with_suffix("").parts
        for module in imported_modules(path, root):
            if parts[0] == "fusion_core":
                if _within(module, ("sim", "ros_nodes", "dyn_fusion", *ROS_PACKAGES)):
                    bad.append(f"{rel} imports {module}")
                elif module.startswith("fusion_core."):
                    target = tuple(module.split("."))
                    here, there = _stack_level(parts), _stack_level(target)
                    if there > here and target[1] != parts[1]:
                        bad.append(f"{rel} imports {module} (fusion_core.{target[1]} is above "
                                   f"{'the top-level modules' if here < 0 else 'fusion_core.' + parts[1]})")
            elif parts[0] == "sim" and _within(module, ("ros_nodes", "dyn_fusion", *ROS_PACKAGES)):
                bad.append(f"{rel} imports {module}")
            elif parts[0] == "ros_nodes" and rel.name != "sim_node.py" and _within(module, ("sim",)):
                bad.append(f"{rel} imports {module} (only sim_node may)")
    return bad


def test_the_project_keeps_its_layers():
    bad = violations()
    assert not bad, "layering violations (DESIGN.md, Layers):\n" + "\n".join(bad)


@pytest.mark.parametrize("importer, imported", [
    ("fusion_core/training/trainer.py", "fusion_core.evaluation.compare"),    # training <-> evaluation
    ("fusion_core/gates/training.py", "fusion_core.evaluation.dynamic_eval"),  # gates <-> evaluation
    ("fusion_core/exits/calibration.py", "fusion_core.evaluation.compare"),   # exits <-> evaluation
    ("fusion_core/data/open_source.py", "fusion_core.training.data"),         # data -> training
    ("fusion_core/model/detector.py", "fusion_core.runtime.dynamic_fusion"),  # model -> runtime
    ("fusion_core/data/shard_source.py", "sim.writers.shards"),               # fusion_core -> sim
    ("fusion_core/runtime/dynamic_fusion.py", "rclpy.node"),                  # fusion_core -> rclpy
    ("sim/simulator.py", "ros_nodes.ros_io"),                                 # sim -> ros_nodes
    ("ros_nodes/fusion_node.py", "sim.session"),                              # ros_nodes -> sim
    ("fusion_core/boxes.py", "fusion_core.model.config"),                     # floor -> package
])
def test_the_check_catches_a_bad_import(tmp_path, importer, imported):
    """Each cycle the layering issue found, written into a tiny tree, is reported."""
    path = tmp_path / importer
    path.parent.mkdir(parents=True)
    for top in ("fusion_core", "sim", "ros_nodes"):
        (tmp_path / top).mkdir(exist_ok=True)
    path.write_text(f"def f():\n    import {imported}\n")
    assert [line.split(" (")[0] for line in violations(tmp_path)] == [f"{importer} imports {imported}"]


def test_relative_imports_are_resolved(tmp_path):
    path = tmp_path / "fusion_core" / "data" / "x.py"
    path.parent.mkdir(parents=True)
    (tmp_path / "sim").mkdir()
    (tmp_path / "ros_nodes").mkdir()
    path.write_text("from ..training import data\n")
    assert violations(tmp_path) == ["fusion_core/data/x.py imports fusion_core.training "
                                    "(fusion_core.training is above fusion_core.data)"]


def test_tests_mirror_the_source_tree():
    """Every source package has a test folder at the same path holding at least one test module."""
    missing = []
    for top in ("fusion_core", "sim", "ros_nodes", "dyn_fusion"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT)
            if not any((ROOT / "tests" / rel).glob("test_*.py")):
                missing.append(f"tests/{rel.as_posix()}")
    assert not missing, "source packages without a mirrored test folder: " + ", ".join(missing)
