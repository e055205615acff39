"""launch/vehicle.launch.py and `dyn-fusion up vehicle` start the same nodes from the same plan.

With launch_ros installed (a ROS 2 machine) the launch file is run through launch's own
introspection. Without it (the pip-only machine) the launch file is executed against minimal
stand-ins of ``launch`` and ``launch_ros`` that record the actions it creates; the recorded
nodes must be exactly the plan's nodes, with the plan's executables and parameter file.
"""
from __future__ import annotations

import importlib.util
import os
import runpy
import sys
import types
from pathlib import Path

import pytest

from ros_nodes.node_plan import (
    DDS_PROFILE_VARIABLE,
    dds_environment,
    dds_profile_file,
    node_command,
    params_file,
    stack_plan,
)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "vehicle.launch.py"


class _Recorded:
    def __init__(self, kind: str, **kwargs):
        self.kind, self.kwargs = kind, kwargs


def _stand_in_modules() -> dict[str, types.ModuleType]:
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda actions: list(actions)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = lambda name, **kw: _Recorded("argument", name=name, **kw)
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = lambda name: ("LaunchConfiguration", name)
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = lambda **kw: _Recorded("node", **kw)
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
            "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def test_launch_file_starts_the_plan_nodes_with_the_shared_parameter_file(monkeypatch):
    if importlib.util.find_spec("launch_ros") is not None:
        pytest.skip("launch_ros is installed: covered by test_launch_file_runs_with_launch_ros")
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    description = runpy.run_path(str(LAUNCH_FILE))["generate_launch_description"]()
    nodes = [a.kwargs for a in description if a.kind == "node"]
    plan = stack_plan("vehicle")
    assert [n["name"] for n in nodes] == [s.name for s in plan]
    assert [n["executable"] for n in nodes] == [s.executable for s in plan]
    assert all(n["package"] == "dyn_fusion" and n["parameters"][0] == str(params_file("vehicle")) for n in nodes)
    # the same Fast DDS transports as `dyn-fusion up` (without them large clouds are lost)
    chosen = os.environ.get(DDS_PROFILE_VARIABLE, str(dds_profile_file()))
    assert all(n["additional_env"] == {DDS_PROFILE_VARIABLE: chosen} for n in nodes)
    assert dds_environment({})[DDS_PROFILE_VARIABLE] == str(dds_profile_file()) and dds_profile_file().is_file()
    assert dds_environment({DDS_PROFILE_VARIABLE: "/robot/dds.xml"})[DDS_PROFILE_VARIABLE] == "/robot/dds.xml"
    # every launch argument lands on a parameter of a node in the plan
    args = {a.kwargs["name"] for a in description if a.kind == "argument"}
    overrides = {k for n in nodes for k, v in n["parameters"][1].items() if v[0] == "LaunchConfiguration"}
    assert len(overrides) == len(args) == 4
    # dyn-fusion up runs the same modules with the same file
    for spec in plan:
        cmd = node_command(spec, params_file("vehicle"))
        assert cmd[cmd.index("-m") + 1] == spec.module and str(params_file("vehicle")) in cmd


def test_every_plan_executable_is_a_console_script_of_the_module():
    setup = (ROOT / "setup.py").read_text()
    for stack in ("vehicle", "replay"):
        for spec in stack_plan(stack):
            assert f'"{spec.executable} = {spec.module}:main"' in setup, spec


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installable on the pip-only machine")
def test_launch_file_runs_with_launch_ros():
    from launch_ros.actions import Node

    description = runpy.run_path(str(LAUNCH_FILE))["generate_launch_description"]()
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert [n.node_executable for n in nodes] == [s.executable for s in stack_plan("vehicle")]
