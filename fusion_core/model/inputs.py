"""Batching FusionSamples into the tensors the detector reads.

Point sets stay flat (all frames concatenated, with a frame index per point) rather than padded:
frames differ by thousands of points and padding would waste most of the work. Only points
inside the detection region are kept. Depth images are back-projected to base_link points here
(numpy, in data-loader workers), so the depth stem sees the same kind of input as the LiDAR's.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusion_core.data.sample import CameraGeometry, FusionSample
from fusion_core.model.config import BevGridConfig
from fusion_core.model.context_signals import N_CONTEXT_SIGNALS, context_signals
from fusion_core.vocabulary import DETECTION_SENSORS

IMU_FEATURES = 14  # mean and std of the 6 channels, log sample count, window-empty flag


@dataclass
class PointSet:
    """Points of a batch, flat."""

    features: torch.Tensor   # (P, F) float32, first three columns x, y, z [m] in base_link
    frame: torch.Tensor      # (P,) int64 index of the frame in the batch

    def to(self, device) -> PointSet:
        return PointSet(self.features.to(device), self.frame.to(device))


@dataclass
class ModelInputs:
    """One batch of B frames."""

    present: torch.Tensor            # (B, 4) bool, DETECTION_SENSORS order: the sensor's data is there
    lidar: PointSet                  # features x, y, z, intensity/255
    radar: PointSet                  # features x, y, z, doppler [m/s], rcs/10 [dBsm/10]
    depth: PointSet                  # features x, y, z, range/10 [10 m]
    rgb: torch.Tensor                # (B, 3, H, W) float32 in [0, 1]; zeros for frames without rgb
    rgb_camera: CameraGeometry | None  # one geometry for the whole batch (None: no frame has rgb)
    imu: torch.Tensor                # (B, IMU_FEATURES) float32 window statistics (zeros when absent)
    imu_present: torch.Tensor        # (B,) bool
    signals: torch.Tensor            # (B, N_CONTEXT_SIGNALS) float32 cheap context signals (context_signals.py)

    @property
    def batch_size(self) -> int:
        return int(self.present.shape[0])

    def sensor_present(self, sensor: str) -> torch.Tensor:
        """(B,) bool for one of DETECTION_SENSORS."""
        return self.present[:, DETECTION_SENSORS.index(sensor)]


def _in_region(xyz: np.ndarray, grid: BevGridConfig) -> np.ndarray:
    return ((xyz[:, 0] >= grid.x_min_m) & (xyz[:, 0] < grid.x_max_m) & (xyz[:, 1] >= grid.y_min_m)
            & (xyz[:, 1] < grid.y_max_m) & (xyz[:, 2] >= grid.z_min_m) & (xyz[:, 2] < grid.z_max_m)
            & np.all(np.isfinite(xyz), axis=1))


def depth_to_points(depth_m: np.ndarray, camera: CameraGeometry, stride: int = 1) -> np.ndarray:
    """Back-project a z-depth image (h, w) to base_link points (N, 3); NaN pixels are skipped."""
    h, w = depth_m.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = depth_m[::stride, ::stride]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    cam = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], 1)
    m = camera.matrix
    return (cam @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def imu_features(imu: np.ndarray | None) -> np.ndarray:
    """(IMU_FEATURES,) statistics of a (K, 6) IMU window: per-channel mean and std (the std of the
    vertical acceleration is the road's vibration), log(1 + K), and a flag for an empty window."""
    out = np.zeros(IMU_FEATURES, np.float32)
    if imu is None or len(imu) == 0:
        out[-1] = 1.0
        return out
    imu = np.asarray(imu, np.float64)
    imu = imu[np.all(np.isfinite(imu), axis=1)]
    if len(imu) == 0:
        out[-1] = 1.0
        return out
    mean = imu.mean(0)
    mean[2] -= 9.81  # gravity: keep the features near zero for a level vehicle
    out[:6] = mean
    out[6:12] = imu.std(0)
    out[12] = np.log1p(len(imu))
    return out


def collate(samples: Sequence[FusionSample], grid: BevGridConfig) -> ModelInputs:
    """Batch samples (numpy) into ModelInputs (torch, CPU)."""
    b = len(samples)
    present = np.zeros((b, len(DETECTION_SENSORS)), bool)
    lidar, radar, depth = [], [], []
    rgb_shape = next((s.rgb.shape for s in samples if s.rgb is not None), None)
    rgb = np.zeros((b, 3, *rgb_shape[:2]) if rgb_shape else (b, 3, 1, 1), np.float32)
    rgb_camera = None
    imu = np.zeros((b, IMU_FEATURES), np.float32)
    imu_present = np.zeros(b, bool)
    signals = np.zeros((b, N_CONTEXT_SIGNALS), np.float32)
    for i, s in enumerate(samples):
        signals[i] = context_signals(s)
        if s.lidar_xyzi is not None:
            p = s.lidar_xyzi[_in_region(s.lidar_xyzi[:, :3], grid)]
            lidar.append((i, np.concatenate([p[:, :3], p[:, 3:4] / 255.0], 1)))
            present[i, DETECTION_SENSORS.index("lidar")] = True
        if s.radar_xyzdr is not None:
            p = s.radar_xyzdr[_in_region(s.radar_xyzdr[:, :3], grid)]
            radar.append((i, np.concatenate([p[:, :4], p[:, 4:5] / 10.0], 1)))
            present[i, DETECTION_SENSORS.index("radar")] = True
        if s.depth_m is not None:
            xyz = depth_to_points(s.depth_m, s.depth_camera)
            xyz = xyz[_in_region(xyz, grid)]
            rng = np.linalg.norm(xyz, axis=1, keepdims=True) / 10.0
            depth.append((i, np.concatenate([xyz, rng], 1)))
            present[i, DETECTION_SENSORS.index("depth")] = True
        if s.rgb is not None:
            if s.rgb.shape != rgb_shape:
                raise ValueError(f"rgb images in one batch must share a size: {s.rgb.shape} vs {rgb_shape}")
            if rgb_camera is not None and s.rgb_camera != rgb_camera:
                raise ValueError("rgb images in one batch must share one camera geometry")
            rgb_camera = s.rgb_camera
            rgb[i] = np.transpose(s.rgb, (2, 0, 1)) / np.float32(255.0)
            present[i, DETECTION_SENSORS.index("rgb")] = True
        if s.imu is not None:
            imu[i] = imu_features(s.imu)
            imu_present[i] = True
        else:
            imu[i] = imu_features(None)
    return ModelInputs(
        present=torch.from_numpy(present), lidar=_point_set(lidar, 4), radar=_point_set(radar, 5),
        depth=_point_set(depth, 4), rgb=torch.from_numpy(rgb), rgb_camera=rgb_camera,
        imu=torch.from_numpy(imu), imu_present=torch.from_numpy(imu_present), signals=torch.from_numpy(signals),
    )


# Largest magnitude of a scaled point feature the stems see (intensity/255 and range/10 are near
# [0, 1], Doppler within tens of m/s): a finite but absurd value must not saturate the stem.
FEATURE_LIMIT = 100.0


def _point_set(parts: list[tuple[int, np.ndarray]], n_features: int) -> PointSet:
    if not parts:
        return PointSet(torch.zeros((0, n_features)), torch.zeros(0, dtype=torch.int64))
    feats = np.concatenate([p for _i, p in parts]).astype(np.float32)
    # A field the sensor does not provide arrives as NaN (topic mapping ''): the stems read 0.
    # Sources drop points with a non-finite measured value, so only those columns are NaN here.
    extra = feats[:, 3:]
    np.nan_to_num(extra, copy=False, nan=0.0, posinf=FEATURE_LIMIT, neginf=-FEATURE_LIMIT)
    np.clip(extra, -FEATURE_LIMIT, FEATURE_LIMIT, out=extra)
    frame = np.concatenate([np.full(len(p), i, np.int64) for i, p in parts])
    return PointSet(torch.from_numpy(feats), torch.from_numpy(frame))
