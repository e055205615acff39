"""Nominal rig calibration: each sensor's TF frame, its pose on base_link, camera intrinsics."""
from __future__ import annotations

import numpy as np

from fusion_core.data.intrinsics import PinholeIntrinsics
from fusion_core.data.sensor_calibration import SensorCalibration
from fusion_core.vocabulary import CAMERAS
from sim.config import MountConfig, SensorSuiteConfig
from sim.geometry import BODY_FROM_OPTICAL, rotation_rpy, transform

BASE_FRAME = "base_link"
WORLD_FRAME = "odom"
FRAME_IDS = {
    "rgb": "camera_rgb_optical_frame",
    "depth": "camera_depth_optical_frame",
    "lidar": "lidar",
    "radar": "radar",
    "imu": "imu_link",
}


def mount_transform(mount: MountConfig, optical: bool) -> np.ndarray:
    """base_link <- sensor; camera frames append the body <- optical rotation."""
    rot = rotation_rpy(*np.deg2rad(mount.rpy_deg))
    if optical:
        rot = rot @ BODY_FROM_OPTICAL
    return transform(rot, np.asarray(mount.xyz_m, float))


def rig_calibration(sensors: SensorSuiteConfig) -> dict[str, SensorCalibration]:
    """Calibration of all five sensors, keyed by sensor name."""
    out = {}
    for name in FRAME_IDS:
        cfg = getattr(sensors, name)
        intr = PinholeIntrinsics.from_fov(cfg.width_px, cfg.height_px, cfg.hfov_deg) if name in CAMERAS else None
        out[name] = SensorCalibration(name, FRAME_IDS[name], mount_transform(cfg.mount, name in CAMERAS), intr)
    return out


def rig_static_tf(calibration: dict[str, SensorCalibration]):
    """The rig as a static TF tree (base_link -> every sensor frame): what /tf_static carries."""
    from fusion_core.data.static_tf import StaticTfTree

    tree = StaticTfTree()
    for calib in calibration.values():
        tree.add(BASE_FRAME, calib.frame_id, calib.base_from_sensor)
    return tree
