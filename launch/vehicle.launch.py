"""`ros2 launch dyn_fusion vehicle.launch.py [scenario:=fog] [duration_s:=30.0] [run_dir:=runs/latest]`

Starts the vehicle stack on a ROS 2 installation: the nodes of ``ros_nodes.node_plan`` (the same
plan ``dyn-fusion up vehicle`` runs here without launch_ros), each with the shared parameter file
``configs/vehicle.yaml``. This file only reads the plan, so the two cannot drift.
"""
import os  # noqa: I001 - `launch` is the ROS package here, not this repo's launch/ folder

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.node_plan import (
    DDS_PROFILE_VARIABLE,
    dds_environment,
    params_file,
    stack_plan,
)

# Launch arguments -> the node parameter each one sets.
ARGUMENTS = {
    "scenario": ("sim_node", "sim.scenario", "default", "scenario name or YAML path"),
    "duration_s": ("sim_node", "sim.duration_s", "0.0", "scenario seconds to run (0: no limit)"),
    "run_dir": ("energy_monitor", "energy.run_dir", "runs/latest", "folder for the ledger and run record"),
    "calibration_file": ("fusion_node", "fusion.calibration_file", "",
                         "sensor mounts as YAML; '' = receive /tf_static (a ROS install has tf2_msgs)"),
}


def generate_launch_description():
    actions = [DeclareLaunchArgument(name, default_value=default, description=doc)
               for name, (_node, _param, default, doc) in ARGUMENTS.items()]
    params = str(params_file("vehicle"))
    # the shipped Fast DDS transports (large clouds and images), unless the user chose a profile
    dds_env = {DDS_PROFILE_VARIABLE: dds_environment(dict(os.environ))[DDS_PROFILE_VARIABLE]}
    for spec in stack_plan("vehicle"):
        overrides = {param: LaunchConfiguration(name) for name, (node, param, _d, _doc) in ARGUMENTS.items()
                     if node == spec.name}
        actions.append(Node(package="dyn_fusion", executable=spec.executable, name=spec.name,
                            parameters=[params, overrides], additional_env=dds_env,
                            output="screen"))
    return LaunchDescription(actions)
