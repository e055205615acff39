"""ament_python / pip packaging for dyn_fusion.

The package list is explicit: a bare find_packages() would also pick up tests/ and launch/.
"""
import os
from glob import glob

from setuptools import setup

PACKAGE_NAME = "dyn_fusion"


def model_files():
    """(install_dir, [files]) of what fusion_node loads by default: the trained detector and gates
    (models/default.pt, models/default_gates.pt) and the stored reference frame it starts from
    (models/default_reference/, a shard dataset). A relative path the working directory lacks is
    looked up here (fusion_core.shipped.resolve_input), so the stack runs from any directory."""
    folder = os.path.join("models", "default_reference")
    return [(os.path.join("share", PACKAGE_NAME, "models"), [os.path.join("models", f) for f in MODELS]),
            (os.path.join("share", PACKAGE_NAME, folder), sorted(glob(os.path.join(folder, "*"))))]


MODELS = ("default.pt", "default_gates.pt", "README.md")


def config_data_files():
    """(install_dir, [files]) for every folder under configs/, preserving the tree: every file,
    not only YAML (configs/dds/fastdds.xml is the nodes' DDS transport profile)."""
    entries = []
    for folder, _dirs, files in sorted(os.walk("configs")):
        shipped = sorted(os.path.join(folder, f) for f in files if not f.startswith("."))
        if shipped:
            entries.append((os.path.join("share", PACKAGE_NAME, folder), shipped))
    return entries


setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=[
        "dyn_fusion",
        "fusion_core",
        "fusion_core.data",
        "fusion_core.energy",
        "fusion_core.evaluation",
        "fusion_core.exits",
        "fusion_core.gates",
        "fusion_core.metrics",
        "fusion_core.model",
        "fusion_core.runtime",
        "fusion_core.training",
        "ros_nodes",
        "sim",
        "sim.sensors",
        "sim.writers",
    ],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", sorted(glob("launch/*.launch.py"))),
    ]
    + config_data_files()
    + model_files(),
    # Runtime requirements live in requirements.txt (installed by scripts/bootstrap_env.sh);
    # torch must be pinned exactly there, and ROS installs provide rclpy through rosdep.
    install_requires=[],
    zip_safe=True,
    maintainer="dyn_fusion developers",
    maintainer_email="dev@dyn-fusion.invalid",
    description="Dynamic multi-modal sensor fusion with energy accounting, for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dyn-fusion = dyn_fusion.cli:main",
            "dyn-fusion-bag-player = ros_nodes.bag_player:main",
            "dyn-fusion-sim-node = ros_nodes.sim_node:main",
            "dyn-fusion-fusion-node = ros_nodes.fusion_node:main",
            "dyn-fusion-energy-monitor = ros_nodes.energy_monitor:main",
        ],
    },
)
