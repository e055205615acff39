"""The fault schedule: which fault hits which sensor when."""
from __future__ import annotations

import numpy as np

from fusion_core.config_io import ConfigError
from sim.config import FaultConfig
from sim.geometry import rotation_rpy, transform

# Faults that make no physical sense on a sensor are refused when the scenario loads.
NOT_APPLICABLE = {("imu", "occlusion"), ("imu", "calibration_drift")}


class FaultSchedule:
    def __init__(self, faults: tuple[FaultConfig, ...]):
        for i, f in enumerate(faults):
            if (f.sensor, f.kind) in NOT_APPLICABLE:
                raise ConfigError(f"faults[{i}].kind: {f.kind} does not apply to sensor {f.sensor}")
        self.faults = faults

    def active(self, sensor: str, t_s: float) -> FaultConfig | None:
        """The first scheduled fault on ``sensor`` whose window contains t."""
        for f in self.faults:
            if f.sensor == sensor and f.start_s <= t_s < f.end_s:
                return f
        return None

    def active_kinds(self, t_s: float) -> dict[str, str]:
        """sensor -> active fault kind at time t, for labelling."""
        out = {}
        for f in self.faults:
            if f.start_s <= t_s < f.end_s and f.sensor not in out:
                out[f.sensor] = f.kind
        return out


def drift_transform(fault: FaultConfig, t_s: float) -> np.ndarray:
    """Mount error after drifting for (t - start) seconds: equal yaw and half-rate pitch."""
    angle = np.deg2rad(fault.drift_deg_per_s * (t_s - fault.start_s))
    return transform(rotation_rpy(0.0, 0.5 * angle, angle), np.zeros(3))


def delivery_delay_s(fault: FaultConfig, rng: np.random.Generator) -> float:
    """Added delivery delay of one message under a latency fault (never negative)."""
    return max(0.0, rng.normal(fault.latency_ms, fault.jitter_ms)) / 1000.0
