"""`ros2 launch dyn_fusion vehicle.launch.py [scenario:=fog] [duration_s:=30.0] [run_dir:=runs/latest]
[checkpoint:=my.pt] [params_file:=my_vehicle.yaml] [namespace:=car1] [use_sim_time:=true] [rviz:=true]`

Starts the vehicle stack on a ROS 2 installation: the nodes of ``ros_nodes.node_plan`` (the same
plan ``dyn-fusion up vehicle`` runs here without launch_ros), each with the shared parameter file
(the installed ``configs/vehicle.yaml`` unless ``params_file`` names another). This file only reads
the plan, so the two cannot drift. Paths (``checkpoint``, the scenario, the parameter file's
models) are found from any working directory: a relative path the directory lacks is looked up
among the package's shipped files (``fusion_core.shipped``).
"""
import os  # noqa: I001 - `launch` is the ROS package here, not this repo's launch/ folder

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.node_plan import (
    DDS_PROFILE_VARIABLE,
    dds_environment,
    params_file,
    rviz_config_file,
    stack_plan,
)

EVERY_NODE = "*"

# Launch arguments that set node parameters -> (node or EVERY_NODE, parameter), default, doc.
ARGUMENTS = {
    "scenario": ([("sim_node", "sim.scenario")], "default", "scenario name or YAML path"),
    "duration_s": ([("sim_node", "sim.duration_s")], "0.0", "scenario seconds to run (0: no limit)"),
    "run_dir": ([("energy_monitor", "energy.run_dir")], "runs/latest", "folder for the ledger and run record"),
    "calibration_file": ([("fusion_node", "fusion.calibration_file")], "",
                         "sensor mounts as YAML; '' = receive /tf_static (a ROS install has tf2_msgs)"),
    "checkpoint": ([("fusion_node", "fusion.checkpoint")], "models/default.pt",
                   "trained detector (.pt); a relative path missing here is the shipped one"),
    # the simulator publishes /clock exactly when the nodes read it, or they would wait forever
    "use_sim_time": ([(EVERY_NODE, "use_sim_time"), ("sim_node", "sim.publish_clock")], "false",
                     "every node reads /clock (scenario time) instead of the system clock"),
}
# Launch arguments that shape the launch itself.
LAUNCH_OPTIONS = {
    "params_file": (str(params_file("vehicle")), "ROS parameter file every node reads"),
    # (the topics keep the absolute names of configs/vehicle.yaml and the topic mapping)
    "namespace": ("", "ROS namespace of every node: its name, parameters and services ('' = none)"),
    "rviz": ("false", "also start RViz 2 with the shipped layout (configs/rviz/vehicle.rviz)"),
}


def generate_launch_description():
    actions = [DeclareLaunchArgument(name, default_value=default, description=doc)
               for name, (_targets, default, doc) in ARGUMENTS.items()]
    actions += [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in LAUNCH_OPTIONS.items()]
    # the shipped Fast DDS transports (large clouds and images), unless the user chose a profile
    dds_env = {DDS_PROFILE_VARIABLE: dds_environment(dict(os.environ))[DDS_PROFILE_VARIABLE]}
    for spec in stack_plan("vehicle"):
        overrides = {param: LaunchConfiguration(name) for name, (targets, _d, _doc) in ARGUMENTS.items()
                     for node, param in targets if node in (spec.name, EVERY_NODE)}
        actions.append(Node(package="dyn_fusion", executable=spec.executable, name=spec.name,
                            namespace=LaunchConfiguration("namespace"),
                            parameters=[LaunchConfiguration("params_file"), overrides], additional_env=dds_env,
                            output="screen"))
    actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=LaunchConfiguration("namespace"),
                        arguments=["-d", str(rviz_config_file())],
                        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                        condition=IfCondition(LaunchConfiguration("rviz")), output="screen"))
    return LaunchDescription(actions)
