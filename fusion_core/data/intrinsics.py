"""Pinhole camera intrinsics: the calibration a camera's images come with (simulator rig, shard
index, ROS ``CameraInfo``). Optical frame: x right, y down, z forward."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeIntrinsics:
    width_px: int
    height_px: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width_px: int, height_px: int, hfov_deg: float) -> PinholeIntrinsics:
        fx = (width_px / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
        return cls(width_px, height_px, fx, fx, (width_px - 1) / 2.0, (height_px - 1) / 2.0)

    @property
    def matrix(self) -> np.ndarray:
        """3x3 camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def pixel_rays(self) -> np.ndarray:
        """Unit ray directions (H*W, 3) in the optical frame, row-major."""
        u, v = np.meshgrid(np.arange(self.width_px), np.arange(self.height_px))
        d = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u, float)], -1).reshape(-1, 3)
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
