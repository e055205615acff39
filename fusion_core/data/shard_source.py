"""Simulator shard datasets (``docs/shard_format.md``) as a sequence of :class:`FusionSample`.

The shards keep every payload in its sensor frame; this adapter brings points and IMU vectors
into base_link with the dataset's own calibration, attaches camera geometry to the images and
passes the absence reasons of the shards through (``dropped_by_fault``, ``no_capture``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusion_core.data.geometry import rotate_vectors, transform_points
from fusion_core.data.sample import CameraGeometry, FusionSample
from fusion_core.data.shard_reader import ShardDataset


def finite_points(points: np.ndarray) -> np.ndarray:
    """Rows of ``points`` (N, C) whose every column is finite (a NaN coordinate is no measurement,
    a non-finite intensity or Doppler a broken one; both dataset sources drop such points so their
    samples agree)."""
    return points[np.isfinite(points).all(axis=1)]


class ShardSource(Sequence[FusionSample]):
    """Random-access ``FusionSample`` view of a shard dataset directory.

    Per sample: LiDAR (N, 4) x, y, z, intensity in base_link (ring dropped); radar (M, 5)
    x, y, z in base_link with doppler [m/s] and rcs [dBsm] unchanged (doppler is a scalar
    radial velocity: a rotation does not apply to it); depth and rgb as stored with their
    ``CameraGeometry``; IMU (K, 6) float32 ax..gz rotated to base_link axes (the lever arm of
    the mount is not removed: the accelerometer measured specific force at the IMU), oldest
    first; ground-truth boxes, condition and the active faults. Arrays are fresh copies.
    Reads follow the shard cache of ``ShardDataset``: iterate in order, or shuffle shard-wise.
    """

    def __init__(self, path: str | Path):
        self.dataset = ShardDataset(path)
        ds = self.dataset
        self.path = ds.path
        self.scenario_name: str = str(ds.config_mapping.get("name", ""))
        vocab = ds.index["vocabularies"]
        self.condition_names: tuple[str, ...] = tuple(vocab["condition"])
        self.fault_names: tuple[str, ...] = tuple(vocab["fault"])
        self.class_names: tuple[str, ...] = ds.class_names
        self.frame_rate_hz: float = ds.frame_rate_hz
        self.imu_window_s: float = ds.imu_window_s
        self.sensor_rates_hz: dict[str, float] = ds.sensor_rates_hz
        # sensor -> (4, 4) base_link <- sensor frame
        self.calibration: dict[str, np.ndarray] = {
            s: np.asarray(c.base_from_sensor, np.float64) for s, c in ds.calibration.items()}
        self.cameras: dict[str, CameraGeometry] = {}
        for sensor, cal in ds.calibration.items():
            i = cal.intrinsics
            if i is not None:
                self.cameras[sensor] = CameraGeometry.from_arrays(
                    i.width_px, i.height_px, i.fx, i.fy, i.cx, i.cy, cal.base_from_sensor)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._sample(int(i))

    def blocks(self) -> list[range]:
        """Sample indices of each shard: frames read together for one shard load."""
        return [range(sh["first_frame"], sh["first_frame"] + sh["n_frames"]) for sh in self.dataset.shards]

    def frame_index(self, i: int) -> int:
        """The simulator's frame index (``SimFrame.index``) of sample ``i``."""
        return self.dataset[i].frame_index

    def _sample(self, i: int) -> FusionSample:
        f = self.dataset[i]
        cal = self.calibration
        lidar = radar = imu = None
        if f.lidar is not None:
            pts = finite_points(f.lidar)
            lidar = np.empty((len(pts), 4), np.float32)
            lidar[:, :3] = transform_points(cal["lidar"], pts[:, :3])
            lidar[:, 3] = pts[:, 3]
        if f.radar is not None:
            pts = finite_points(f.radar)
            radar = np.empty((len(pts), 5), np.float32)
            radar[:, :3] = transform_points(cal["radar"], pts[:, :3])
            radar[:, 3:5] = pts[:, 3:5]
        if f.imu is not None:
            imu = np.empty((len(f.imu), 6), np.float32)
            imu[:, :3] = rotate_vectors(cal["imu"], f.imu[:, 1:4])
            imu[:, 3:] = rotate_vectors(cal["imu"], f.imu[:, 4:7])
        return FusionSample(
            time_s=f.time_s,
            lidar_xyzi=lidar,
            radar_xyzdr=radar,
            depth_m=None if f.depth is None else np.array(f.depth, np.float32),
            depth_camera=None if f.depth is None else self.cameras["depth"],
            rgb=None if f.rgb is None else np.array(f.rgb, np.uint8),
            rgb_camera=None if f.rgb is None else self.cameras["rgb"],
            imu=imu,
            absence=dict(f.missing),
            gt_boxes=np.array(f.gt_boxes, np.float32),
            gt_visibility=np.array(f.gt_visibility, np.float32),
            condition=f.condition,
            faults=dict(f.active_faults),
        ).without_empty_ranging()
