"""IMU: accelerometer (specific force, gravity included) and gyro from the ego's exact
kinematics, with white noise, bias random walk and road vibration.

The IMU keeps state (biases, vibration filter), so samples must be drawn in time order; the
simulator does that and the stream stays deterministic for a seed.
"""
from __future__ import annotations

import numpy as np

from sim.config import ImuConfig
from sim.ego import EgoKinematics, EgoState
from sim.geometry import rotation_rpy

GRAVITY_MPS2 = 9.80665


class ImuModel:
    def __init__(self, config: ImuConfig, road_roughness: float, rng: np.random.Generator):
        self.config = config
        self.roughness = road_roughness
        self.rng = rng
        self.mount_rotation = rotation_rpy(*np.deg2rad(config.mount.rpy_deg))
        self.lever_arm_m = np.asarray(config.mount.xyz_m)
        self.accel_bias = rng.normal(0, 0.02, 3)
        self.gyro_bias = rng.normal(0, 0.001, 3)
        self._vibration = np.zeros(3)

    def sample(self, ego: EgoState, noise_scale: float = 1.0) -> np.ndarray:
        """One (6,) sample [ax, ay, az, gx, gy, gz] in the IMU frame at the ego state's time."""
        return self.samples(EgoKinematics.of(ego), noise_scale)[0]

    def samples(self, kin: EgoKinematics, noise_scale: float = 1.0) -> np.ndarray:
        """(K, 6) consecutive samples for K instants in time order (advances the IMU state)."""
        c, rng = self.config, self.rng
        w, speed = kin.yaw_rate_radps, kin.speed_mps
        k = len(w)
        # Specific force of the IMU point in base_link: base acceleration plus centripetal
        # acceleration of the lever arm, minus gravity (an accelerometer at rest reads +g up).
        f = np.stack([
            kin.accel_long_mps2 - w * w * self.lever_arm_m[0],
            kin.accel_lat_mps2 - w * w * self.lever_arm_m[1],
            np.full(k, GRAVITY_MPS2),
        ], 1)
        omega = np.stack([np.zeros(k), np.zeros(k), w], 1)
        # Road vibration: coloured noise (AR(1)), mostly vertical, scaling with speed.
        drive = rng.standard_normal((k, 3)) * np.sqrt(1 - 0.49)
        amp = (c.vibration_mps2_per_mps * self.roughness * speed)[:, None] * np.array([0.3, 0.3, 1.0])
        vib = np.empty((k, 3))
        state = self._vibration
        for i in range(k):
            state = 0.7 * state + drive[i] * amp[i]
            vib[i] = state
        self._vibration = state
        f = f + vib
        omega = omega + np.stack([vib[:, 1], -vib[:, 0], np.zeros(k)], 1) * 0.02
        # Bias random walk: the bias of sample i includes steps 0..i.
        accel_bias = self.accel_bias + np.cumsum(rng.normal(0, c.accel_bias_walk_mps2, (k, 3)), 0)
        gyro_bias = self.gyro_bias + np.cumsum(rng.normal(0, c.gyro_bias_walk_radps, (k, 3)), 0)
        self.accel_bias, self.gyro_bias = accel_bias[-1].copy(), gyro_bias[-1].copy()
        accel = f @ self.mount_rotation + accel_bias + rng.normal(0, c.accel_noise_mps2 * noise_scale, (k, 3))
        gyro = omega @ self.mount_rotation + gyro_bias + rng.normal(0, c.gyro_noise_radps * noise_scale, (k, 3))
        return np.concatenate([accel, gyro], 1)
