"""The ROS 2 package: colcon builds it and installs executables, launch files, configs and the
stored reference frame fusion_node starts from."""
from __future__ import annotations

import ast
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILES = ["models/default.pt", "models/default_gates.pt", "models/README.md"]
PACKAGE_FILES = ["setup.py", "setup.cfg", "package.xml", "requirements.txt", "resource", "launch", "configs",
                 "models/default_reference", *MODEL_FILES, "dyn_fusion", "fusion_core", "ros_nodes", "sim"]
REFERENCE_FRAME = Path("models") / "default_reference"  # fusion.reference_frame's default


def _setup_packages() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "packages":
            return [elt.value for elt in node.value.elts]
    raise AssertionError("setup.py has no packages= list")


def test_setup_lists_every_python_package_and_nothing_else():
    on_disk = sorted(
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("dyn_fusion", "fusion_core", "ros_nodes", "sim")
        for p in (ROOT / top).rglob("__init__.py")
    )
    assert sorted(_setup_packages()) == on_disk
    assert not (ROOT / "launch" / "__init__.py").exists()


def test_package_xml_is_format_3_ament_python():
    text = (ROOT / "package.xml").read_text()
    assert '<package format="3">' in text and "<name>dyn_fusion</name>" in text
    assert "<build_type>ament_python</build_type>" in text
    for dep in ("rclpy", "sensor_msgs", "visualization_msgs", "diagnostic_msgs", "tf2_msgs"):
        assert f"<exec_depend>{dep}</exec_depend>" in text


def test_launch_file_compiles():
    py_compile.compile(str(ROOT / "launch" / "vehicle.launch.py"), doraise=True)


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is not installed (Debian package colcon)")
def test_colcon_build_installs_scripts_launch_and_configs(tmp_path):
    src = tmp_path / "ws" / "src" / "dyn_fusion"
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    ws = tmp_path / "ws"
    proc = subprocess.run(["colcon", "build"], cwd=ws,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    install = ws / "install" / "dyn_fusion"
    script = install / "lib" / "dyn_fusion" / "dyn-fusion"
    assert script.is_file() and script.stat().st_mode & 0o111
    share = install / "share" / "dyn_fusion"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "vehicle.launch.py").is_file()
    # every config, the Fast DDS profile included, byte for byte
    shipped = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*") if p.is_file()}
    installed = {p.relative_to(share / "configs") for p in (share / "configs").rglob("*") if p.is_file()}
    assert installed == shipped and Path("dds/fastdds.xml") in installed
    assert all((share / "configs" / f).read_bytes() == (ROOT / "configs" / f).read_bytes() for f in shipped)
    # the reference frame (a shard dataset: index and shard), byte for byte
    reference = sorted(p.name for p in (ROOT / REFERENCE_FRAME).iterdir())
    assert "index.json" in reference and any(f.endswith(".npz") for f in reference)
    assert sorted(p.name for p in (share / REFERENCE_FRAME).iterdir()) == reference
    assert all((share / REFERENCE_FRAME / f).read_bytes() == (ROOT / REFERENCE_FRAME / f).read_bytes() for f in reference)
    # the trained detector and gates fusion_node loads by default, byte for byte
    assert all((share / f).read_bytes() == (ROOT / f).read_bytes() for f in MODEL_FILES)
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "dyn_fusion").is_file()
    # Only our packages were installed as Python modules: no tests/ or launch/ leaking in.
    site = next(install.glob("lib/python3*/site-packages"))
    modules = {p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith(("-info", "__pycache__"))}
    assert modules == {"dyn_fusion", "fusion_core", "ros_nodes", "sim"}
    # the installed nodes find the installed parameter file, DDS profile and default model, not the
    # source tree's, from a directory that has none of them
    code = ("from ros_nodes.node_plan import dds_profile_file, params_file; from fusion_core.shipped import "
            "resolve_input; print(params_file()); print(dds_profile_file()); print(resolve_input('models/default.pt'))")
    probe = subprocess.run([sys.executable, "-c", code],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                           check=True)
    assert probe.stdout.split() == [str(share / "configs" / "vehicle.yaml"), str(share / "configs" / "dds" / "fastdds.xml"),
                                    str(share / "models" / "default.pt")]


def test_a_relative_input_missing_here_is_the_shipped_one_and_the_users_own_file_wins(tmp_path, monkeypatch):
    from fusion_core.shipped import resolve_input
    from fusion_core.training.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)  # a directory outside the repository, without models/
    assert resolve_input("models/default.pt") == ROOT / "models" / "default.pt"
    assert load_checkpoint("models/default.pt").model_config is not None
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "default.pt").write_bytes(b"not a checkpoint")
    assert resolve_input("models/default.pt") == Path("models/default.pt")  # the user's own file
    with pytest.raises(FileNotFoundError, match="checkpoint not found: models/mine.pt"):
        load_checkpoint("models/mine.pt")  # neither here nor shipped: the error names what was given
