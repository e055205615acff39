"""The node plan: which nodes a stack runs, from which module, with which parameter file.

Two readers share it, so they cannot drift: ``dyn-fusion up`` (one OS process per node, started
with ``python -m <module> --ros-args --params-file <file>``) and ``launch/vehicle.launch.py``
(``launch_ros`` ``Node`` actions with the console-script ``executable``, on a ROS 2 install).

One process per node, not one executor: the simulator's ray casting and the detector's torch
inference each keep a Python interpreter busy, and on two cores they only overlap in separate
processes; the nodes then talk over real DDS, exactly as they do on the robot, and a crash in
one node leaves the others running and reporting.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from fusion_core.shipped import shipped_path


@dataclass(frozen=True)
class NodeSpec:
    name: str          # ROS node name
    module: str        # python module whose main() runs the node
    executable: str    # console script installed by setup.py (what launch_ros starts)
    waits_for_ready: bool = False  # later nodes start only after this one says it is ready
    ends_the_run: bool = False     # the stack stops when this node exits (the sensor source)


SIM_NODE = NodeSpec("sim_node", "ros_nodes.sim_node", "dyn-fusion-sim-node", ends_the_run=True)
BAG_PLAYER = NodeSpec("bag_player", "ros_nodes.bag_player", "dyn-fusion-bag-player", ends_the_run=True)
FUSION_NODE = NodeSpec("fusion_node", "ros_nodes.fusion_node", "dyn-fusion-fusion-node", waits_for_ready=True)
ENERGY_MONITOR = NodeSpec("energy_monitor", "ros_nodes.energy_monitor", "dyn-fusion-energy-monitor")

# Start order: the monitor and the fusion node first, so no frame of the source is missed.
STACKS: dict[str, tuple[NodeSpec, ...]] = {
    "vehicle": (ENERGY_MONITOR, FUSION_NODE, SIM_NODE),
    "replay": (ENERGY_MONITOR, FUSION_NODE, BAG_PLAYER),
}
READY_LINE = "ready"  # a node with waits_for_ready logs a line containing "<name> ready" when it is


def stack_plan(stack: str) -> tuple[NodeSpec, ...]:
    """The nodes of ``stack`` in start order; ValueError naming the known stacks."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}; known stacks: {', '.join(STACKS)}")
    return STACKS[stack]


DDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def _config_path(relative: str) -> Path:
    """``configs/<relative>`` in the source tree or the installed share folder (fusion_core.shipped)."""
    return shipped_path(f"configs/{relative}")


def params_file(stack: str = "vehicle") -> Path:
    """``configs/vehicle.yaml`` (both stacks read the same file: each node declares only its own
    section)."""
    stack_plan(stack)
    return _config_path("vehicle.yaml")


def dds_profile_file() -> Path:
    """``configs/dds/fastdds.xml``: Fast DDS transports sized for point clouds and images (the
    default shared-memory segment drops them; see the file)."""
    return _config_path("dds/fastdds.xml")


def rviz_config_file() -> Path:
    """``configs/rviz/vehicle.rviz``: the RViz 2 layout of a run (LiDAR, detections, ground truth,
    camera) that ``vehicle.launch.py rviz:=true`` opens."""
    return _config_path("rviz/vehicle.rviz")


def dds_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :func:`dds_profile_file` as the Fast DDS default profile, unless the caller
    already chose one (a robot's own DDS tuning wins)."""
    env = dict(env)
    env.setdefault(DDS_PROFILE_VARIABLE, str(dds_profile_file()))
    return env


def node_command(spec: NodeSpec, params: Path, overrides: dict[str, str] | None = None) -> list[str]:
    """The command line ``dyn-fusion up`` runs for ``spec`` (``-p key:=value`` per override)."""
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(params)]
    for key, value in (overrides or {}).items():
        cmd += ["-p", f"{key}:={value if value != '' else repr('')}"]  # rcl reads an empty value as YAML ''
    return cmd
