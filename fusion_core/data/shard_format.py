"""The shard dataset format (``dyn_fusion.shards``, version 2): training frames stored as
uncompressed ``.npz`` files plus an index. ``sim.writers.shards`` writes it,
``fusion_core.data.shard_reader`` reads it; full description: ``docs/shard_format.md``.

A dataset is a directory::

    <dataset>/
        index.json          written last (atomically): its presence marks a complete dataset
        shard_00000.npz     frames [0, frames_per_shard)
        shard_00001.npz     ...

``index.json`` holds: ``format`` ("dyn_fusion.shards") and ``version``; the scenario config as
plain data; the calibration of every sensor (frame id, 4x4 ``base_from_sensor``, camera
intrinsics); sensor and frame rates; the IMU window length; class names; the field layouts of
boxes, LiDAR, radar and IMU rows; the vocabularies behind every integer code (sensors,
conditions, fault kinds, absence reasons); and the shard list with frame ranges.

Each shard holds ``n`` frames (``np.savez``, no compression, so loading is a plain read).
``S = len(SENSORS)`` = 5, columns in ``SENSORS`` order (rgb, depth, lidar, radar, imu).
Ragged data is concatenated over the shard's frames, with an ``(n + 1,)`` int64 offsets array:
frame ``j`` owns rows ``offsets[j]:offsets[j + 1]``.

    key                   shape            dtype    meaning
    frame_index           (n,)             int64    SimFrame.index
    time_s                (n,)             float64  frame time
    rgb                   (n, H, W, 3)     uint8    image of frame.latest("rgb") (zeros when absent)
    depth                 (n, h, w)        float32  metres, NaN = invalid (zeros when absent)
    lidar_points          (P, 5)           float32  x, y, z, intensity, ring in the lidar frame
    lidar_offsets         (n + 1,)         int64
    radar_points          (R, 5)           float32  x, y, z, doppler, rcs in the radar frame
    radar_offsets         (n + 1,)         int64
    imu                   (K, 7)           float64  t, ax, ay, az, gx, gy, gz: samples in (t - window, t]
    imu_offsets           (n + 1,)         int64
    imu_dropped           (n,)             int32    IMU captures lost to faults inside the window
    present               (n, S)           bool     the sensor's payload is stored for this frame
    absence               (n, S)           int8     index into ABSENCE_REASONS
    stamp_s               (n, S)           float64  capture time of the stored payload (NaN if absent)
    receive_s             (n, S)           float64  delivery time of the stored payload (NaN if absent)
    fault                 (n, S)           int8     active fault at frame time: index into the fault vocabulary, -1 none
    gt_boxes              (B, 11)          float32  base_link boxes (fusion_core.boxes layout)
    gt_offsets            (n + 1,)         int64
    gt_track_ids          (B,)             int32
    gt_lidar_hits         (B,)             int32    -1 where the frame has no fresh LiDAR scan
    gt_visibility         (B,)             float32  geometric visibility in [0, 1] (sim.visibility)
    ego_pose_xyyaw        (n, 3)           float64  world x, y, yaw of base_link
    ego_speed_mps         (n,)             float64
    ego_yaw_rate_radps    (n,)             float64
    condition             (n,)             int8     index into CONDITIONS
    severity              (n,)             float64

Camera, LiDAR and radar payloads are those of ``frame.latest(sensor)`` (the first delivered
capture of the frame; radar runs faster than the frame clock, later scans of the frame are not
stored). The IMU window is causal: every IMU sample with capture time in
``(time_s - imu_window_s, time_s]`` (1e-9 s tolerance on both ends) taken from the frames given
to the writer, so consecutive frames should be written for full windows.

An absent modality is never zeros pretending to be data: the reader returns ``None`` for it and
the reason (``dropped_by_fault`` or ``no_capture``) in ``ShardFrame.absence``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fusion_core import vocabulary as V
from fusion_core.data.intrinsics import PinholeIntrinsics
from fusion_core.data.sensor_calibration import SensorCalibration

FORMAT_NAME = "dyn_fusion.shards"
FORMAT_VERSION = 2  # 2: gt_visibility
INDEX_FILE = "index.json"
# The stored absence codes (the simulator knows only these two reasons); names from the vocabulary.
ABSENCE_REASONS: tuple[str, ...] = ("present", V.DROPPED_BY_FAULT, V.NO_CAPTURE)
PRESENT, DROPPED_BY_FAULT, NO_CAPTURE = range(len(ABSENCE_REASONS))

# Columns of the point and IMU rows, which are the simulator's payloads stored as they are
# (sim.readings), in each sensor's own frame.
LIDAR_FIELDS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
RADAR_FIELDS: tuple[str, ...] = ("x", "y", "z", "doppler", "rcs")
IMU_FIELDS: tuple[str, ...] = ("ax", "ay", "az", "gx", "gy", "gz")
IMU_ROW_FIELDS: tuple[str, ...] = ("t",) + IMU_FIELDS  # a stored IMU row leads with its capture time

# The arrays every shard holds, in the order the writer stores them.
SHARD_KEYS: tuple[str, ...] = (
    "frame_index", "time_s", "rgb", "depth", "lidar_points", "lidar_offsets", "radar_points", "radar_offsets",
    "imu", "imu_offsets", "imu_dropped", "present", "absence", "stamp_s", "receive_s", "fault", "gt_boxes",
    "gt_offsets", "gt_track_ids", "gt_lidar_hits", "gt_visibility", "ego_pose_xyyaw", "ego_speed_mps", "ego_yaw_rate_radps",
    "condition", "severity",
)


class ShardFormatError(ValueError):
    """A dataset file is missing, truncated, corrupt or of an unknown format (message names it)."""


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npz"


def calibration_to_plain(cal: dict[str, SensorCalibration]) -> dict[str, Any]:
    """The index's ``calibration`` entry: sensor -> frame id, 4x4 list, intrinsics or None."""
    out = {}
    for name, c in cal.items():
        intr = None
        if c.intrinsics is not None:
            i = c.intrinsics
            intr = {"width_px": int(i.width_px), "height_px": int(i.height_px), "fx": float(i.fx),
                    "fy": float(i.fy), "cx": float(i.cx), "cy": float(i.cy)}
        out[name] = {"frame_id": c.frame_id, "base_from_sensor": np.asarray(c.base_from_sensor, float).tolist(),
                     "intrinsics": intr}
    return out


def calibration_from_plain(data: dict[str, Any]) -> dict[str, SensorCalibration]:
    """The inverse of :func:`calibration_to_plain`."""
    out = {}
    for name, c in data.items():
        i = c.get("intrinsics")
        intr = None if i is None else PinholeIntrinsics(
            int(i["width_px"]), int(i["height_px"]), float(i["fx"]), float(i["fy"]), float(i["cx"]), float(i["cy"]))
        out[name] = SensorCalibration(name, c["frame_id"], np.asarray(c["base_from_sensor"], float), intr)
    return out
