"""Rigid transforms applied to sensor data on its way into base_link."""
from __future__ import annotations

import numpy as np


def transform_points(base_from_sensor: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Points ``xyz`` (N, 3) in a sensor frame [m] -> (N, 3) float64 in the target frame of the
    (4, 4) rigid transform ``base_from_sensor`` (target <- sensor).

    Computed in float64 whatever the input dtype: float32 coordinates of distant points would
    otherwise lose millimetres to the rotation's rounding; callers cast the result back.
    """
    tf = np.asarray(base_from_sensor, dtype=np.float64)
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return pts @ tf[:3, :3].T + tf[:3, 3]


def rotate_vectors(base_from_sensor: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Free vectors (N, 3) (accelerations, angular rates) -> (N, 3) float64 in the target
    frame: rotation only, since a direction does not move with the sensor's mounting offset."""
    rot = np.asarray(base_from_sensor, dtype=np.float64)[:3, :3]
    return np.asarray(vectors, dtype=np.float64).reshape(-1, 3) @ rot.T
