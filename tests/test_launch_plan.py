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
import yaml

from fusion_core.data import topics as T
from ros_nodes.node_plan import (
    DDS_PROFILE_VARIABLE,
    dds_environment,
    dds_profile_file,
    node_command,
    params_file,
    rviz_config_file,
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
    conditions = types.ModuleType("launch.conditions")
    conditions.IfCondition = lambda value: ("IfCondition", value)
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = lambda **kw: _Recorded("node", **kw)
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
            "launch.conditions": conditions, "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def test_launch_file_starts_the_plan_nodes_with_the_shared_parameter_file(monkeypatch):
    if importlib.util.find_spec("launch_ros") is not None:
        pytest.skip("launch_ros is installed: covered by test_launch_file_runs_with_launch_ros")
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    description = runpy.run_path(str(LAUNCH_FILE))["generate_launch_description"]()
    every = [a.kwargs for a in description if a.kind == "node"]
    nodes = [n for n in every if n["package"] == "dyn_fusion"]
    plan = stack_plan("vehicle")
    assert [n["name"] for n in nodes] == [s.name for s in plan]
    assert [n["executable"] for n in nodes] == [s.executable for s in plan]
    # the parameter file, namespace: launch arguments, the shipped file by default
    defaults = {a.kwargs["name"]: a.kwargs["default_value"] for a in description if a.kind == "argument"}
    assert defaults["params_file"] == str(params_file("vehicle")) and defaults["namespace"] == ""
    assert all(n["parameters"][0] == ("LaunchConfiguration", "params_file") for n in nodes)
    assert all(n["namespace"] == ("LaunchConfiguration", "namespace") for n in nodes)
    # the same Fast DDS transports as `dyn-fusion up` (without them large clouds are lost)
    chosen = os.environ.get(DDS_PROFILE_VARIABLE, str(dds_profile_file()))
    assert all(n["additional_env"] == {DDS_PROFILE_VARIABLE: chosen} for n in nodes)
    assert dds_environment({})[DDS_PROFILE_VARIABLE] == str(dds_profile_file()) and dds_profile_file().is_file()
    assert dds_environment({DDS_PROFILE_VARIABLE: "/robot/dds.xml"})[DDS_PROFILE_VARIABLE] == "/robot/dds.xml"
    # every other launch argument lands on node parameters: use_sim_time on every node (and the
    # simulator publishes /clock exactly then), checkpoint on the fusion node
    args = {a.kwargs["name"] for a in description if a.kind == "argument"} - {"params_file", "namespace", "rviz"}
    overrides = {n["name"]: n["parameters"][1] for n in nodes}
    assert {v[1] for o in overrides.values() for v in o.values()} == args
    assert all(o["use_sim_time"] == ("LaunchConfiguration", "use_sim_time") for o in overrides.values())
    assert overrides["sim_node"]["sim.publish_clock"] == ("LaunchConfiguration", "use_sim_time")
    assert overrides["fusion_node"]["fusion.checkpoint"] == ("LaunchConfiguration", "checkpoint")
    assert defaults["checkpoint"] == "models/default.pt" and defaults["use_sim_time"] == "false"
    # rviz:=true adds RViz 2 with the shipped layout, which shows the stack's topics
    (rviz,) = [n for n in every if n["package"] == "rviz2"]
    assert rviz["condition"] == ("IfCondition", ("LaunchConfiguration", "rviz")) and defaults["rviz"] == "false"
    layout = rviz["arguments"][rviz["arguments"].index("-d") + 1]
    assert layout == str(rviz_config_file()) and rviz_config_file().is_file()
    shown = {d["Topic"]["Value"] for d in yaml.safe_load(rviz_config_file().read_text())["Visualization Manager"][
        "Displays"] if "Topic" in d}
    assert shown == {T.LIDAR_TOPIC, T.RADAR_TOPIC, T.RGB_IMAGE_TOPIC, T.GT_MARKERS_TOPIC, T.DETECTIONS_TOPIC}
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
