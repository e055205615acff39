"""ros_nodes: rclpy nodes and message conversion (the only package that imports rclpy).

The nodes (sim_node, fusion_node, energy_monitor, bag player) arrive with the ROS 2 stack issue;
until then the simulator writes rosbag2 files directly (see sim.writers.rosbag).
"""
