"""Test helpers that reach one level below the Simulator loop (single captures)."""
from __future__ import annotations

import numpy as np

from sim.geometry import apply
from sim.simulator import Simulator


def capture(sim: Simulator, sensor: str, t_s: float, seed_index: int = 0):
    """One capture of ``sensor`` at time t with no faults; returns (payload, context)."""
    ego = sim.ego.state(t_s)
    ctx = sim._context(sensor, t_s, ego, None, np.random.default_rng(seed_index), {})
    return sim._capture(sensor, ctx), ctx


def to_base(sim: Simulator, sensor: str, points_xyz: np.ndarray) -> np.ndarray:
    """Sensor-frame points to base_link using the nominal calibration."""
    return apply(sim.calibration[sensor].base_from_sensor, points_xyz)


def readings_of(frames, sensor: str):
    return [r for f in frames for r in f.readings if r.sensor == sensor]
