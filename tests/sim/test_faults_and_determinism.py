"""Fault schedules act exactly in their windows; runs are deterministic for a seed."""
from __future__ import annotations

import dataclasses

import numpy as np

from sim.config import FaultConfig
from sim.simulator import Simulator
from tests.conftest import straight_scenario
from tests.sim.helpers import readings_of


def _payload_equal(a, b) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def test_runs_are_deterministic_for_a_seed():
    config = straight_scenario()
    a, b = list(Simulator(config).run(4)), list(Simulator(config).run(4))
    for fa, fb in zip(a, b):
        assert len(fa.readings) == len(fb.readings)
        for ra, rb in zip(fa.readings, fb.readings):
            assert ra.sensor == rb.sensor and ra.capture_time_s == rb.capture_time_s
            assert _payload_equal(ra.data, rb.data), ra.sensor
        assert np.array_equal(fa.gt_boxes, fb.gt_boxes)
    # Ray casting on all cores gives the same data as on one thread (the CLI default vs the benchmark).
    parallel = list(Simulator(config, threads=0).run(2))
    for fa, fp in zip(a, parallel):
        assert all(_payload_equal(ra.data, rp.data) for ra, rp in zip(fa.readings, fp.readings))
    c = list(Simulator(dataclasses.replace(config, seed=6)).run(1))
    assert not _payload_equal(readings_of(c, "lidar")[0].data, readings_of(a[:1], "lidar")[0].data)


def test_dropout_window_contains_no_messages():
    fault = FaultConfig(sensor="lidar", kind="dropout", start_s=0.3, end_s=0.6)
    frames = list(Simulator(straight_scenario(faults=(fault,))).run(10))
    stamps = [r.capture_time_s for r in readings_of(frames, "lidar")]
    assert not any(0.3 <= t < 0.6 for t in stamps)
    assert len(stamps) == 7
    dropped = [d for f in frames for d in f.dropped]
    assert [round(d.capture_time_s, 3) for d in dropped] == [0.3, 0.4, 0.5]
    assert all(d.reason == "fault:dropout" and d.sensor == "lidar" for d in dropped)
    # Other sensors are untouched.
    assert len(readings_of(frames, "radar")) == 20 and len(readings_of(frames, "imu")) == 200


def test_frozen_window_repeats_the_last_payload():
    fault = FaultConfig(sensor="rgb", kind="frozen", start_s=0.3, end_s=0.7)
    frames = list(Simulator(straight_scenario(faults=(fault,))).run(10))
    rgb = readings_of(frames, "rgb")
    before = next(r for r in rgb if abs(r.capture_time_s - 0.2) < 1e-9).data
    for r in rgb:
        if 0.3 <= r.capture_time_s < 0.7:
            assert r.fault == "frozen" and _payload_equal(r.data, before)
    after = next(r for r in rgb if abs(r.capture_time_s - 0.7) < 1e-9).data
    assert not _payload_equal(after, before)


def test_frozen_imu_repeats_samples():
    fault = FaultConfig(sensor="imu", kind="frozen", start_s=0.2, end_s=0.3)
    imu = readings_of(list(Simulator(straight_scenario(faults=(fault,))).run(5)), "imu")
    window = [r.data for r in imu if 0.2 <= r.capture_time_s < 0.3]
    assert len(window) == 20 and all(_payload_equal(w, window[0]) for w in window)


def test_noise_burst_and_occlusion_and_drift_change_the_data():
    base = list(Simulator(straight_scenario()).run(3))[-1]
    faults = (
        FaultConfig(sensor="lidar", kind="noise_burst", start_s=0.0, end_s=1.0, noise_scale=50.0),
        FaultConfig(sensor="rgb", kind="occlusion", start_s=0.0, end_s=1.0, occluded_fraction=0.3),
        FaultConfig(sensor="depth", kind="occlusion", start_s=0.0, end_s=1.0, occluded_fraction=0.3),
        FaultConfig(sensor="radar", kind="calibration_drift", start_s=0.0, end_s=1.0, drift_deg_per_s=5.0),
    )
    faulty = list(Simulator(straight_scenario(faults=faults)).run(3))[-1]
    assert faulty.active_faults == {"lidar": "noise_burst", "rgb": "occlusion", "depth": "occlusion", "radar": "calibration_drift"}
    lidar_b, lidar_f = base.latest("lidar").data, faulty.latest("lidar").data
    # Noise burst: ranges scatter far more (compare ground ring heights, a flat reference).
    assert np.std(lidar_f[:, 2][lidar_f[:, 4] == 0]) > 3 * np.std(lidar_b[:, 2][lidar_b[:, 4] == 0])
    rgb = faulty.latest("rgb").data
    assert (rgb.max(axis=2) < 40).mean() > 0.25  # a dark blob covers ~30 % of the image
    assert np.isnan(faulty.latest("depth").data).mean() > np.isnan(base.latest("depth").data).mean() + 0.1
    # Drift: 5 deg/s for 0.2 s = 1 deg yaw; static returns shift sideways in the radar frame.
    assert not _payload_equal(faulty.latest("radar").data, base.latest("radar").data)


def test_latency_delays_delivery_not_stamps():
    fault = FaultConfig(sensor="radar", kind="latency", start_s=0.0, end_s=1.0, latency_ms=100.0, jitter_ms=10.0)
    radar = readings_of(list(Simulator(straight_scenario(faults=(fault,))).run(5)), "radar")
    delays = np.array([r.receive_time_s - r.capture_time_s for r in radar])
    assert np.all(delays > 0.05) and abs(delays.mean() - 0.1) < 0.02
    assert [round(r.capture_time_s, 3) for r in radar] == [round(0.05 * k, 3) for k in range(10)]


def test_sensor_rates_follow_the_config():
    frames = list(Simulator(straight_scenario()).run(10))
    counts = {s: len(readings_of(frames, s)) for s in ("rgb", "depth", "lidar", "radar", "imu")}
    assert counts == {"rgb": 10, "depth": 10, "lidar": 10, "radar": 20, "imu": 200}
