"""The simulator loop: advances the frame clock, captures every sensor at its own rate,
applies weather and scheduled faults, and yields :class:`SimFrame` objects.

Each capture draws its noise from a generator seeded by (scenario seed, sensor, capture index),
so a run is a deterministic function of the scenario, independent of which outputs are written.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from fusion_core.boxes import VX, VY, YAW, X, Y, wrap_angle
from fusion_core.config_io import ConfigError
from fusion_core.vocabulary import DETECTION_SENSORS, SENSORS
from sim.calibration import rig_calibration
from sim.config import ScenarioConfig
from sim.ego import EgoState
from sim.faults import FaultSchedule, delivery_delay_s, drift_transform
from sim.raycast import CastScene
from sim.readings import DroppedReading, SensorReading, SimFrame
from sim.sensors.context import CaptureContext
from sim.sensors.depth_camera import DepthCameraModel
from sim.sensors.imu import ImuModel
from sim.sensors.lidar import LidarModel
from sim.sensors.radar import RADAR_RANGE_FACTOR, RadarModel
from sim.sensors.rgb_camera import RgbCameraModel
from sim.visibility import visible_fraction
from sim.weather import weather_effects
from sim.world import World

_SCENE_MARGIN_M = 10.0
_SENSOR_INDEX = {name: i for i, name in enumerate(SENSORS)}


def capture_indices(t0_s: float, t1_s: float, rate_hz: float, phase_s: float) -> range:
    """Capture indices k with phase + k / rate in [t0, t1)."""
    eps = 1e-9
    k0 = max(0, math.ceil((t0_s - phase_s) * rate_hz - eps))
    k1 = max(0, math.ceil((t1_s - phase_s) * rate_hz - eps))
    return range(k0, k1)


class Simulator:
    """Runs one scenario. ``threads`` is the ray-casting thread count (0 = all cores)."""

    def __init__(self, config: ScenarioConfig, threads: int = 1):
        self.config = config
        self.threads = threads
        self.world = World(config)
        self.ego = self.world.ego
        self.weather = weather_effects(config.weather)
        self.faults = FaultSchedule(config.faults)
        self.calibration = rig_calibration(config.sensors)
        s = config.sensors
        self.lidar = LidarModel(s.lidar)
        self.depth = DepthCameraModel(s.depth)
        self.rgb = RgbCameraModel(s.rgb)
        self.radar = RadarModel(s.radar)
        self.frame_period_s = 1.0 / config.frame_rate_hz
        # Road window each scene holds: everything any sensor can reach, and no more.
        self.scene_behind_m = s.lidar.max_range_m + _SCENE_MARGIN_M
        self.scene_ahead_m = max(s.lidar.max_range_m, RADAR_RANGE_FACTOR * s.radar.max_range_m) + _SCENE_MARGIN_M
        self._states_cache: dict = {}

    def check_frames(self, n_frames: int) -> None:
        """Refuse runs longer than the road (the world would run out ahead of the ego)."""
        end = self.ego.state(n_frames * self.frame_period_s)
        if end.s_m + self.scene_ahead_m > self.world.road.length_m:
            raise ConfigError(
                f"road.segments: the road ({self.world.road.length_m:.0f} m) is too short for {n_frames} frames "
                f"at this ego speed (needs about {end.s_m + self.scene_ahead_m:.0f} m); lengthen the road")

    def sensor_rate_hz(self, sensor: str) -> float:
        return getattr(self.config.sensors, sensor).rate_hz

    def run(self, n_frames: int) -> Iterator[SimFrame]:
        """Yield ``n_frames`` frames in time order."""
        if n_frames < 1:
            raise ConfigError(f"frames: must be >= 1, got {n_frames}")
        self.check_frames(n_frames)
        cfg = self.config
        imu = ImuModel(cfg.sensors.imu, cfg.ego.road_roughness, np.random.default_rng([cfg.seed, 0x1B0]))
        last_payload: dict[str, np.ndarray] = {}
        for i in range(n_frames):
            t0 = i * self.frame_period_s
            t1 = t0 + self.frame_period_s
            scenes: dict[tuple[float, bool], CastScene] = {}
            self._states_cache = {}
            readings: list[SensorReading] = []
            dropped: list[DroppedReading] = []
            lidar_objects = None
            for sensor in DETECTION_SENSORS:
                sc = getattr(cfg.sensors, sensor)
                for k in capture_indices(t0, t1, sc.rate_hz, sc.phase_s):
                    t = sc.phase_s + k / sc.rate_hz
                    fault = self.faults.active(sensor, t)
                    if fault is not None and fault.kind == "dropout":
                        dropped.append(DroppedReading(sensor, k, t, "fault:dropout"))
                        continue
                    rng = np.random.default_rng([cfg.seed, _SENSOR_INDEX[sensor], k])
                    if fault is not None and fault.kind == "frozen" and sensor in last_payload:
                        data = last_payload[sensor]
                    else:
                        ctx = self._context(sensor, t, self.ego.state(t), fault, rng, scenes)
                        data = self._capture(sensor, ctx)
                        if sensor == "lidar":
                            data, objects = data
                            if lidar_objects is None:
                                lidar_objects = objects
                        last_payload[sensor] = data
                    readings.append(self._reading(sensor, k, t, data, fault, rng))
            self._imu_readings(imu, t0, t1, readings, dropped, last_payload)
            readings.sort(key=lambda r: (r.capture_time_s, _SENSOR_INDEX[r.sensor]))
            yield self._frame(i, t0, readings, dropped, lidar_objects, scenes)

    def _imu_readings(self, imu, t0, t1, readings, dropped, last_payload) -> None:
        """All IMU samples of [t0, t1): the IMU integrates every sample, faults then decide
        what is delivered."""
        c = self.config.sensors.imu
        ks = capture_indices(t0, t1, c.rate_hz, 0.0)
        times = [k / c.rate_hz for k in ks]
        samples = imu.samples(self.ego.kinematics(np.array(times)))
        for k, t, sample in zip(ks, times, samples):
            fault = self.faults.active("imu", t)
            kind = fault.kind if fault is not None else None
            if kind == "dropout":
                dropped.append(DroppedReading("imu", k, t, "fault:dropout"))
                continue
            # Per-sample generators are only needed when a fault draws random numbers.
            rng = np.random.default_rng([self.config.seed, _SENSOR_INDEX["imu"], k]) if fault is not None else None
            if kind == "frozen" and "imu" in last_payload:
                sample = last_payload["imu"]
            else:
                if kind == "noise_burst":
                    extra = np.sqrt(fault.noise_scale**2 - 1.0)
                    sample = sample + rng.normal(0, 1, 6) * extra * np.repeat([c.accel_noise_mps2, c.gyro_noise_radps], 3)
                last_payload["imu"] = sample
            readings.append(self._reading("imu", k, t, sample, fault, rng))

    def _reading(self, sensor, k, t, data, fault, rng) -> SensorReading:
        delay = delivery_delay_s(fault, rng) if fault is not None and fault.kind == "latency" else 0.0
        return SensorReading(
            sensor=sensor, seq=k, capture_time_s=t, receive_time_s=t + delay,
            frame_id=self.calibration[sensor].frame_id, data=data, fault=fault.kind if fault is not None else None,
        )

    # ------------------------------------------------------------------ helpers
    def _scene(self, t: float, ego: EgoState, cache: dict, surfaces: bool = True) -> CastScene:
        """The BVH for instant t, built once per frame; a full scene also serves a caller that
        needs no surfaces (the radar, which ignores ground returns)."""
        key = round(t, 6)
        for want in ((True,) if surfaces else (True, False)):
            if (key, want) in cache:
                return cache[(key, want)]
        mesh = self.world.scene_mesh(t, ego.s_m, self._actor_states(t), self.scene_behind_m, self.scene_ahead_m, surfaces)
        cache[(key, surfaces)] = CastScene(mesh, self.threads)
        return cache[(key, surfaces)]

    def _actor_states(self, t: float):
        """Actor states at t, memoised within a frame (its scenes and ground truth share them)."""
        key = round(t, 6)
        if key not in self._states_cache:
            self._states_cache[key] = self.world.actor_states(t)
        return self._states_cache[key]

    def _context(self, sensor, t, ego, fault, rng, scenes) -> CaptureContext:
        pose = ego.world_from_base() @ self.calibration[sensor].base_from_sensor
        if fault is not None and fault.kind == "calibration_drift":
            pose = pose @ drift_transform(fault, t)
        return CaptureContext(
            time_s=t, world_from_sensor=pose, scene=self._scene(t, ego, scenes, surfaces=sensor != "radar"),
            objects=self.world.objects,
            ego=ego, weather=self.weather, rng=rng,
            noise_scale=fault.noise_scale if fault is not None and fault.kind == "noise_burst" else 1.0,
            occluded_fraction=fault.occluded_fraction if fault is not None and fault.kind == "occlusion" else 0.0,
        )

    def _capture(self, sensor: str, ctx: CaptureContext):
        return {"rgb": self.rgb, "depth": self.depth, "lidar": self.lidar, "radar": self.radar}[sensor].capture(ctx)

    def _frame(self, index, t0, readings, dropped, lidar_objects, scenes) -> SimFrame:
        ego = self.ego.state(t0)
        states = self._actor_states(t0)
        idx, boxes = self.world.ground_truth_world(states, np.array([ego.x_m, ego.y_m]), self.config.detection_range_m)
        lidar_origin = (ego.world_from_base() @ self.calibration["lidar"].base_from_sensor)[:3, 3]
        visibility = visible_fraction(self._scene(t0, ego, scenes, surfaces=True), lidar_origin, boxes,
                                      self.world.n_static_objects + idx)
        # World -> base_link: positions, headings and velocities.
        c, s = np.cos(ego.yaw_rad), np.sin(ego.yaw_rad)
        dx, dy = boxes[:, X] - ego.x_m, boxes[:, Y] - ego.y_m
        vx, vy = boxes[:, VX].copy(), boxes[:, VY].copy()
        boxes[:, X], boxes[:, Y] = c * dx + s * dy, -s * dx + c * dy
        boxes[:, YAW] = wrap_angle(boxes[:, YAW] - ego.yaw_rad)
        boxes[:, VX], boxes[:, VY] = c * vx + s * vy, -s * vx + c * vy
        lidar_reading = next((r for r in readings if r.sensor == "lidar"), None)
        if lidar_objects is not None and lidar_reading is not None and lidar_reading.fault != "frozen":
            counts = np.bincount(lidar_objects[lidar_objects >= 0], minlength=len(self.world.objects.kind))
            hits = counts[self.world.n_static_objects + idx].astype(np.int32)
        else:
            hits = np.full(len(idx), -1, np.int32)
        return SimFrame(
            index=index, time_s=t0, readings=readings, dropped=dropped,
            gt_boxes=boxes.astype(np.float32), gt_track_ids=idx.astype(np.int32), gt_lidar_hits=hits,
            gt_visibility=visibility,
            ego_pose_xyyaw=np.array([ego.x_m, ego.y_m, ego.yaw_rad]), ego_speed_mps=ego.speed_mps,
            ego_yaw_rate_radps=ego.yaw_rate_radps, condition=self.config.weather.condition,
            severity=self.config.weather.severity, active_faults=self.faults.active_kinds(t0),
        )
