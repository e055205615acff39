"""Ego vehicle: a kinematic model that follows its lane along the road centreline.

The ego's arc-length position s(t) advances at the commanded speed v(t) = max(0, v0 + a t);
its heading is the road heading, so its yaw rate is v * curvature(s). Because curvature is
piecewise constant, s(t) has a closed form and every quantity the IMU needs (specific force,
angular rate) is exact rather than finite-differenced.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import EgoConfig
from sim.geometry import rotation_rpy, transform
from sim.road import Road


@dataclass(frozen=True)
class EgoState:
    """Ego kinematics at one instant (world frame, base_link at ground level)."""

    time_s: float
    s_m: float
    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float            # ground speed of base_link
    yaw_rate_radps: float
    accel_long_mps2: float      # along the heading
    accel_lat_mps2: float       # to the left (centripetal)

    def world_from_base(self) -> np.ndarray:
        """4x4 transform world <- base_link."""
        return transform(rotation_rpy(0.0, 0.0, self.yaw_rad), np.array([self.x_m, self.y_m, 0.0]))

    def velocity_world(self) -> np.ndarray:
        """(3,) base_link velocity in the world frame."""
        return np.array([np.cos(self.yaw_rad), np.sin(self.yaw_rad), 0.0]) * self.speed_mps


@dataclass(frozen=True)
class EgoKinematics:
    """What the IMU needs at K instants; every field has shape (K,)."""

    speed_mps: np.ndarray
    yaw_rate_radps: np.ndarray
    accel_long_mps2: np.ndarray
    accel_lat_mps2: np.ndarray

    @classmethod
    def of(cls, state: EgoState) -> EgoKinematics:
        return cls(*(np.array([v]) for v in (state.speed_mps, state.yaw_rate_radps,
                                              state.accel_long_mps2, state.accel_lat_mps2)))


class EgoModel:
    """Closed-form ego trajectory for one scenario."""

    def __init__(self, config: EgoConfig, road: Road):
        self.config = config
        self.road = road
        self.lane_d_m = road.lane_center_d(config.lane_index, +1)

    def _distance(self, t_s: float) -> tuple[float, float, float]:
        """Travelled centreline distance, speed and acceleration at time t."""
        v0, a = self.config.speed_mps, self.config.acceleration_mps2
        if a < 0 and v0 + a * t_s <= 0:  # came to a halt
            t_stop = -v0 / a
            return v0 * t_stop + 0.5 * a * t_stop**2, 0.0, 0.0
        return v0 * t_s + 0.5 * a * t_s**2, v0 + a * t_s, a

    def kinematics(self, times_s: np.ndarray) -> EgoKinematics:
        """Speed, yaw rate and accelerations at many times at once (arrays of shape (K,)); the
        IMU needs 200 of these per second, and per-instant EgoState objects are too slow."""
        t = np.asarray(times_s, float)
        v0, a = self.config.speed_mps, self.config.acceleration_mps2
        v = v0 + a * t
        dist = v0 * t + 0.5 * a * t * t
        if a < 0:
            t_stop = -v0 / a
            stopped = v <= 0
            dist = np.where(stopped, v0 * t_stop + 0.5 * a * t_stop**2, dist)
            v = np.where(stopped, 0.0, v)
            a_t = np.where(stopped, 0.0, a)
        else:
            a_t = np.full_like(t, a)
        s = np.minimum(self.config.start_s_m + dist, self.road.length_m)
        kappa = self.road.curvature(s)
        scale = 1.0 - kappa * self.lane_d_m
        speed = v * scale
        yaw_rate = v * kappa
        return EgoKinematics(speed, yaw_rate, a_t * scale, speed * yaw_rate)

    def state(self, t_s: float) -> EgoState:
        dist, v, a = self._distance(t_s)
        s = min(self.config.start_s_m + dist, self.road.length_m)
        x, y, heading = self.road.pose(s, self.lane_d_m)
        kappa = float(self.road.curvature(s))
        # The lane runs parallel to the centreline at offset d: ground speed is v (1 - kappa d).
        scale = 1.0 - kappa * self.lane_d_m
        speed = v * scale
        yaw_rate = v * kappa
        return EgoState(
            time_s=t_s, s_m=float(s), x_m=float(x), y_m=float(y), yaw_rad=float(heading),
            speed_mps=float(speed), yaw_rate_radps=float(yaw_rate),
            accel_long_mps2=float(a * scale), accel_lat_mps2=float(speed * yaw_rate),
        )
