"""`ros2 launch dyn_fusion vehicle.launch.py [scenario:=fog] [out:=runs/latest]`

On a ROS 2 installation this starts the dyn_fusion main job. Until the ROS 2 nodes land
(sim_node, fusion_node, energy_monitor; see ros_nodes/), the main job is the simulator demo
that `make run` also runs: simulate a scenario into a rosbag2 (MCAP), a summary and a preview.
The launch file stays a thin wrapper over the `dyn-fusion` executable so the two cannot drift.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    scenario = LaunchConfiguration("scenario")
    out = LaunchConfiguration("out")
    return LaunchDescription([
        DeclareLaunchArgument("scenario", default_value="default", description="scenario name or YAML path"),
        DeclareLaunchArgument("out", default_value="runs/latest", description="run folder"),
        Node(
            package="dyn_fusion",
            executable="dyn-fusion",
            name="dyn_fusion_demo",
            arguments=["demo", "--scenario", scenario, "--out", out, "--overwrite"],
            output="screen",
        ),
    ])
