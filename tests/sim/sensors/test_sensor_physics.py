"""Sensor models against the physics they claim, on real ray-cast scenes."""
from __future__ import annotations

import dataclasses

import numpy as np

from fusion_core.boxes import VX, VY, points_in_boxes
from sim.config import (
    EgoConfig,
    LidarConfig,
    RadarConfig,
    RoadConfig,
    RoadSegmentConfig,
    SensorSuiteConfig,
)
from sim.geometry import apply, invert
from sim.simulator import Simulator
from sim.world import ACTOR, GROUND, MARKING, ROAD, SIDEWALK
from tests.conftest import straight_scenario
from tests.sim.helpers import capture, to_base


def _ideal_lidar(config):
    lidar = dataclasses.replace(config.sensors.lidar, range_noise_m=0.0, beam_dropout=0.0)
    return dataclasses.replace(config, sensors=dataclasses.replace(config.sensors, lidar=lidar))


def test_lidar_returns_lie_on_actor_boxes_or_the_ground():
    sim = Simulator(_ideal_lidar(straight_scenario()))
    frame = next(iter(sim.run(1)))
    (points, objects), ctx = capture(sim, "lidar", frame.time_s)
    base = to_base(sim, "lidar", points[:, :3])
    kinds = sim.world.objects.kind[objects]
    on_ground = np.isin(kinds, (GROUND, ROAD, SIDEWALK, MARKING))
    on_actor = kinds == ACTOR
    assert on_ground.mean() > 0.3 and on_actor.sum() > 200

    # Ground returns: the road surface is z = 0 (paint 5 mm above, grass 2 cm below).
    assert np.abs(base[on_ground, 2]).max() < 0.03
    # Actor returns: inside the ground-truth box of that very actor (5 cm tolerance).
    track_of_point = sim.world.objects.track_id[objects[on_actor]]
    inside = points_in_boxes(base[on_actor], frame.gt_boxes, margin_m=0.05)
    column = {int(t): i for i, t in enumerate(frame.gt_track_ids)}
    in_own_box = np.array([inside[k, column[t]] if t in column else False for k, t in enumerate(track_of_point)])
    # Actors beyond the ground-truth radius have no box; every other actor return is in its box.
    within = np.linalg.norm(base[on_actor, :2], axis=1) < sim.config.detection_range_m - 6
    assert in_own_box[within].all()
    assert frame.gt_lidar_hits.sum() > 0


def test_depth_agrees_with_lidar_where_both_see():
    sim = Simulator(_ideal_lidar(straight_scenario()))
    t = 0.5
    (points, _), _ = capture(sim, "lidar", t)
    depth, _ = capture(sim, "depth", t, seed_index=1)
    calib = sim.calibration["depth"]
    k = calib.intrinsics
    # LiDAR points into the depth camera's optical frame, then onto its pixels.
    cam = apply(invert(calib.base_from_sensor), to_base(sim, "lidar", points[:, :3]))
    front = cam[:, 2] > 1.0
    cam = cam[front]
    u = np.round(k.fx * cam[:, 0] / cam[:, 2] + k.cx).astype(int)
    v = np.round(k.fy * cam[:, 1] / cam[:, 2] + k.cy).astype(int)
    ok = (u >= 0) & (u < k.width_px) & (v >= 0) & (v < k.height_px) & (cam[:, 2] < 12.0)
    measured = depth[v[ok], u[ok]]
    valid = np.isfinite(measured)
    assert valid.sum() > 100
    diff = np.abs(measured[valid] - cam[ok][valid, 2])
    # Different viewpoints disagree at object edges; the bulk must agree to depth-noise level.
    assert np.median(diff) < 0.1
    assert np.mean(diff < 0.3) > 0.85


def test_radar_doppler_equals_ground_truth_radial_velocity():
    config = straight_scenario()
    radar = dataclasses.replace(config.sensors.radar, clutter_per_scan=0.0, ghost_probability=0.0)
    config = dataclasses.replace(config, sensors=dataclasses.replace(config.sensors, radar=radar))
    sim = Simulator(config)
    errors = []
    for frame in sim.run(20):
        r = frame.latest("radar")
        if abs(r.capture_time_s - frame.time_s) > 1e-9:
            continue
        pts = to_base(sim, "radar", r.data[:, :3])
        inside = points_in_boxes(pts, frame.gt_boxes, margin_m=0.6)
        radar_pos = sim.calibration["radar"].base_from_sensor[:3, 3]
        # Sensor velocity in base_link: ego speed along x plus yaw-rate lever arm (zero here).
        v_sensor = np.array([frame.ego_speed_mps, 0.0])
        for p, row in zip(np.flatnonzero(inside.any(1)), inside[inside.any(1)]):
            box = frame.gt_boxes[np.argmax(row)]
            u = pts[p, :2] - radar_pos[:2]
            u /= np.linalg.norm(u)
            expected = (box[[VX, VY]] - v_sensor) @ u
            errors.append(r.data[p, 3] - expected)
    errors = np.abs(np.array(errors))
    assert len(errors) > 20
    # Noise is 0.1 m/s; azimuth quantisation (1.5 deg) and 3-D vs planar geometry add a little.
    assert np.median(errors) < 0.15
    assert np.percentile(errors, 95) < 0.6


def _imu_samples(config, frames):
    sim = Simulator(config)
    return np.array([r.data for f in sim.run(frames) for r in f.readings if r.sensor == "imu"])


def test_imu_at_constant_velocity_reads_gravity_and_no_rotation():
    samples = _imu_samples(straight_scenario(), 10)
    assert len(samples) == 200  # 200 Hz over 1 s
    assert abs(np.linalg.norm(samples[:, :3].mean(0)) - 9.81) < 0.05
    assert np.abs(samples[:, 3:].mean(0)).max() < 0.01


def test_imu_in_a_turn_reads_the_yaw_rate_and_centripetal_acceleration():
    kappa, speed = 0.02, 10.0
    config = straight_scenario(
        road=RoadConfig(segments=(RoadSegmentConfig(length_m=20.0), RoadSegmentConfig(length_m=150.0, curvature_1pm=kappa),
                                  RoadSegmentConfig(length_m=400.0))),
        ego=EgoConfig(start_s_m=30.0, speed_mps=speed, lane_index=0),
    )
    samples = _imu_samples(config, 10)
    sim = Simulator(config)
    ego = sim.ego.state(0.5)
    assert abs(samples[:, 5].mean() - speed * kappa) < 0.01  # yaw rate v * kappa = 0.2 rad/s
    assert abs(samples[:, 1].mean() - ego.accel_lat_mps2) < 0.1  # ~ v^2 kappa, left positive
    assert abs(ego.accel_lat_mps2 - speed**2 * kappa) < 0.1


def test_doppler_of_static_world_is_minus_ego_radial_speed():
    """Buildings and poles: the radar must see them approach at the ego speed."""
    config = straight_scenario(
        traffic=dataclasses.replace(straight_scenario().traffic, cars_per_100m=0.0, parked_cars_per_100m=0.0,
                                    pedestrians_per_100m=0.0, cyclists_per_100m=0.0, poles_per_100m=20.0),
    )
    radar = dataclasses.replace(config.sensors.radar, clutter_per_scan=0.0, ghost_probability=0.0, hfov_deg=60.0)
    config = dataclasses.replace(config, sensors=SensorSuiteConfig(radar=radar))
    sim = Simulator(config)
    data, _ = capture(sim, "radar", 1.0)
    assert len(data) > 5
    direction = data[:, :3] / np.linalg.norm(data[:, :3], axis=1, keepdims=True)
    expected = -10.0 * direction[:, 0]
    assert np.median(np.abs(data[:, 3] - expected)) < 0.2


def test_lidar_config_geometry():
    lidar = LidarConfig(beams=16, azimuth_steps=256)
    sim = Simulator(straight_scenario(sensors=SensorSuiteConfig(lidar=lidar, radar=RadarConfig())))
    (points, _), _ = capture(sim, "lidar", 0.0)
    assert set(np.unique(points[:, 4]).astype(int)) <= set(range(16))
    assert len(points) <= 16 * 256


def test_radar_is_identical_without_ground_surfaces():
    """Radar scenes leave out the road surfaces (radar ignores ground returns): same output."""
    from sim.raycast import CastScene
    from sim.sensors.context import CaptureContext

    sim = Simulator(straight_scenario())
    t = 0.55
    ego = sim.ego.state(t)
    pose = ego.world_from_base() @ sim.calibration["radar"].base_from_sensor
    outputs = []
    for surfaces in (True, False):
        mesh = sim.world.scene_mesh(t, ego.s_m, surfaces=surfaces)
        ctx = CaptureContext(time_s=t, world_from_sensor=pose, scene=CastScene(mesh), objects=sim.world.objects,
                             ego=ego, weather=sim.weather, rng=np.random.default_rng(3))
        outputs.append(sim.radar.capture(ctx))
    assert len(outputs[0]) > 10
    np.testing.assert_array_equal(outputs[0], outputs[1])
