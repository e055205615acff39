"""The inputs every sensor model gets for one capture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.ego import EgoState
from sim.raycast import CastScene
from sim.weather import WeatherEffects
from sim.world import ObjectTable


@dataclass
class CaptureContext:
    time_s: float
    world_from_sensor: np.ndarray  # (4, 4) actual sensor pose (mount, drift included)
    scene: CastScene
    objects: ObjectTable
    ego: EgoState
    weather: WeatherEffects
    rng: np.random.Generator
    noise_scale: float = 1.0       # > 1 during a noise burst
    occluded_fraction: float = 0.0  # part of the field of view blocked by dirt or an obstacle

    @property
    def origin(self) -> np.ndarray:
        return self.world_from_sensor[:3, 3]

    def to_world(self, directions_sensor: np.ndarray) -> np.ndarray:
        """Rotate (N, 3) sensor-frame directions into the world frame."""
        return directions_sensor @ self.world_from_sensor[:3, :3].T.astype(np.float32)
