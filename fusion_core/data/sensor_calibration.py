"""One sensor's calibration as the data formats carry it: its TF frame, its mount on base_link
and, for cameras, the pinhole intrinsics (the simulator's rig, a shard dataset's index)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_core.data.intrinsics import PinholeIntrinsics


@dataclass(frozen=True)
class SensorCalibration:
    sensor: str
    frame_id: str
    base_from_sensor: np.ndarray             # (4, 4) base_link <- sensor frame
    intrinsics: PinholeIntrinsics | None     # cameras only
