"""What the simulator emits: sensor readings with capture and delivery times, and frames.

Payload layouts (``SensorReading.data``), all in the sensor's own frame:

    rgb    (H, W, 3) uint8, row-major, camera optical frame
    depth  (H, W) float32 metres along the optical axis (z-depth); NaN where nothing was measured
    lidar  (N, 5) float32 columns x, y, z [m], intensity [0..255], ring [beam index]
    radar  (M, 5) float32 columns x, y, z [m], doppler [m/s, positive = receding], rcs [dBsm]
    imu    (6,) float64 linear acceleration x, y, z [m/s^2] (specific force, includes gravity)
           and angular velocity x, y, z [rad/s]

Shard datasets store these payloads as they are; the column names are the format's
(``fusion_core.data.shard_format``: ``LIDAR_FIELDS``, ``RADAR_FIELDS``, ``IMU_FIELDS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SensorReading:
    """One message-worth of sensor data."""

    sensor: str              # one of fusion_core.vocabulary.SENSORS
    seq: int                 # capture index on the sensor's own clock
    capture_time_s: float    # when the sensor sampled the world (header stamp)
    receive_time_s: float    # when the data reaches a consumer (bag log time); >= capture
    frame_id: str            # TF frame the payload is expressed in
    data: np.ndarray         # layout in the module doc
    fault: str | None = None  # active fault kind on this sensor at capture, if any


@dataclass
class DroppedReading:
    """A capture that produced no message, and why (kept so nothing is lost silently)."""

    sensor: str
    seq: int
    capture_time_s: float
    reason: str


@dataclass
class SimFrame:
    """Everything the simulator produced for one tick of the frame clock.

    ``readings`` holds every sensor capture in [time_s, time_s + frame period), in capture
    order; ``gt_boxes`` are the actors near the ego at ``time_s`` in the base_link frame
    (layout: fusion_core.boxes).
    """

    index: int
    time_s: float
    readings: list[SensorReading]
    dropped: list[DroppedReading]
    gt_boxes: np.ndarray              # (N, BOX_DIM) float32, base_link frame at time_s
    gt_track_ids: np.ndarray          # (N,) int32
    gt_lidar_hits: np.ndarray         # (N,) int32 LiDAR returns on each box in this frame's scan
    gt_visibility: np.ndarray         # (N,) float32 share of geometric probe rays reaching each box (sim.visibility)
    ego_pose_xyyaw: np.ndarray        # (3,) world x, y [m], yaw [rad] of base_link at time_s
    ego_speed_mps: float
    ego_yaw_rate_radps: float
    condition: str
    severity: float
    active_faults: dict[str, str] = field(default_factory=dict)  # sensor -> fault kind at time_s

    def latest(self, sensor: str) -> SensorReading | None:
        """The first capture of ``sensor`` in this frame (closest to time_s), or None."""
        for r in self.readings:
            if r.sensor == sensor:
                return r
        return None
