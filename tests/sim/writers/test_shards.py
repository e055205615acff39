"""Shard dataset round trip: real simulator frames written, read back and compared exactly."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from fusion_core.data.shard_format import INDEX_FILE, ShardFormatError
from fusion_core.data.shard_reader import ShardDataset
from fusion_core.vocabulary import SENSORS
from sim.config import (
    FaultConfig,
    RgbCameraConfig,
    ScenarioConfig,
    SensorSuiteConfig,
)
from sim.simulator import Simulator
from sim.writers.shards import ShardWriter, dataset_scenario

N_FRAMES = 12
PER_SHARD = 5
WINDOW_S = 0.5
EPS = 1e-9
LIDAR_DROPOUT = FaultConfig(sensor="lidar", kind="dropout", start_s=0.3, end_s=0.6)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sim = Simulator(ScenarioConfig(name="shard_test", faults=(LIDAR_DROPOUT,)))
    frames = list(sim.run(N_FRAMES))
    path = tmp_path_factory.mktemp("shards") / "ds"
    t0 = time.perf_counter()
    with ShardWriter(path, sim, frames_per_shard=PER_SHARD, imu_window_s=WINDOW_S) as writer:
        for f in frames:
            writer.write_frame(f)
    summary = writer.close()
    write_s = time.perf_counter() - t0
    return sim, frames, path, summary, write_s


def test_layout_and_summary(run):
    sim, frames, path, summary, _ = run
    assert summary["frames"] == N_FRAMES
    assert summary["shards"] == 3  # 5 + 5 + 2
    assert sorted(p.name for p in path.iterdir()) == [INDEX_FILE, "shard_00000.npz", "shard_00001.npz",
                                                      "shard_00002.npz"]
    assert summary["bytes"] == sum(p.stat().st_size for p in path.iterdir())
    index = json.loads((path / INDEX_FILE).read_text())
    assert index["format"] == "dyn_fusion.shards" and index["version"] == 2
    assert [(s["first_frame"], s["n_frames"]) for s in index["shards"]] == [(0, 5), (5, 5), (10, 2)]
    assert index["sensor_rates_hz"]["radar"] == 20.0 and index["sensor_rates_hz"]["imu"] == 200.0
    ds = ShardDataset(path)
    assert len(ds) == N_FRAMES
    assert ds.config_mapping["name"] == "shard_test"
    assert dataset_scenario(ds) == sim.config
    for name, cal in sim.calibration.items():
        np.testing.assert_array_equal(ds.calibration[name].base_from_sensor, cal.base_from_sensor)
        assert ds.calibration[name].frame_id == cal.frame_id
        assert ds.calibration[name].intrinsics == cal.intrinsics


def test_payloads_round_trip_exactly(run):
    _, frames, path, _, _ = run
    ds = ShardDataset(path)
    assert np.isnan(frames[0].latest("depth").data).any()  # the NaN path is exercised
    for i, f in enumerate(frames):
        r = ds[i]
        assert r.frame_index == f.index and r.time_s == f.time_s
        for sensor, got in (("rgb", r.rgb), ("depth", r.depth), ("lidar", r.lidar), ("radar", r.radar)):
            src = f.latest(sensor)
            if src is None:
                assert got is None
                continue
            assert got is not None and got.dtype == src.data.dtype and got.shape == src.data.shape
            np.testing.assert_array_equal(got, src.data)  # NaNs compare equal here
            assert r.stamps[sensor] == src.capture_time_s
            assert r.receive_stamps[sensor] == src.receive_time_s
        np.testing.assert_array_equal(r.gt_boxes, f.gt_boxes)
        np.testing.assert_array_equal(r.gt_track_ids, f.gt_track_ids)
        np.testing.assert_array_equal(r.gt_lidar_hits, f.gt_lidar_hits)
        np.testing.assert_array_equal(r.gt_visibility, f.gt_visibility)
        np.testing.assert_array_equal(r.ego_pose_xyyaw, f.ego_pose_xyyaw)
        assert (r.ego_speed_mps, r.ego_yaw_rate_radps) == (f.ego_speed_mps, f.ego_yaw_rate_radps)
        assert (r.condition, r.severity) == (f.condition, f.severity)
        assert r.active_faults == f.active_faults
    # Returned arrays are read-only views: the cache cannot be corrupted by a consumer.
    with pytest.raises(ValueError):
        ds[0].rgb[0, 0, 0] = 1


def test_imu_window_is_causal_and_complete(run):
    _, frames, path, _, _ = run
    all_imu = [(r.capture_time_s, r.data) for f in frames for r in f.readings if r.sensor == "imu"]
    ds = ShardDataset(path)
    assert ds.imu_window_s == WINDOW_S
    for i, f in enumerate(frames):
        imu = ds[i].imu
        assert imu is not None and imu.shape[1] == 7
        t = f.time_s
        assert np.all(imu[:, 0] > t - WINDOW_S - EPS) and np.all(imu[:, 0] <= t + EPS)
        assert np.all(np.diff(imu[:, 0]) > 0)
        expected = [(ts, d) for ts, d in all_imu if t - WINDOW_S + EPS < ts <= t + EPS]
        assert len(imu) == len(expected)
        np.testing.assert_array_equal(imu[:, 0], [ts for ts, _ in expected])
        np.testing.assert_array_equal(imu[:, 1:], np.array([d for _, d in expected]))
        assert ds[i].stamps["imu"] == imu[-1, 0]
    # Once the run is older than the window, it holds window * rate samples (0.5 s at 200 Hz).
    assert len(ds[N_FRAMES - 1].imu) == 100
    assert len(ds[0].imu) == 1  # only the sample at t = 0


def test_lidar_dropout_reads_as_none_with_reason(run):
    _, frames, path, _, _ = run
    ds = ShardDataset(path)
    dropped = [i for i, f in enumerate(frames) if LIDAR_DROPOUT.start_s <= f.time_s + EPS < LIDAR_DROPOUT.end_s]
    assert dropped == [3, 4, 5]
    for i in range(N_FRAMES):
        r = ds[i]
        if i in dropped:
            assert r.lidar is None and r.stamps["lidar"] is None
            assert r.absence["lidar"] == "dropped_by_fault"
            assert r.missing == {"lidar": "dropped_by_fault"}
            assert r.active_faults == {"lidar": "dropout"}
            assert not r.present("lidar")
            assert (r.gt_lidar_hits == -1).all()
        else:
            assert r.lidar is not None and len(r.lidar) > 1000
            assert r.missing == {}
        assert all(r.present(s) for s in SENSORS if s != "lidar")


def test_sensor_without_capture_in_frame(tmp_path):
    """An RGB camera at 5 Hz has no capture in every second 10 Hz frame: None, reason no_capture."""
    cfg = ScenarioConfig(sensors=SensorSuiteConfig(rgb=RgbCameraConfig(rate_hz=5.0)))
    sim = Simulator(cfg)
    with ShardWriter(tmp_path / "ds", sim, frames_per_shard=3) as w:
        for f in sim.run(4):
            w.write_frame(f)
    ds = ShardDataset(tmp_path / "ds")
    assert [ds[i].rgb is None for i in range(4)] == [False, True, False, True]
    assert ds[1].absence["rgb"] == "no_capture" and ds[1].stamps["rgb"] is None
    assert ds[1].depth is not None


def test_existing_path_refused_without_overwrite(run, tmp_path):
    sim, frames, _, _, _ = run
    target = tmp_path / "ds"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ShardWriter(target, sim)
    assert (target / "keep.txt").exists()
    with ShardWriter(target, sim, overwrite=True) as w:
        w.write_frame(frames[0])
    assert not (target / "keep.txt").exists()
    assert len(ShardDataset(target)) == 1


def test_crashed_writer_leaves_no_index(run, tmp_path):
    sim, frames, _, _, _ = run
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(tmp_path / "ds", sim, frames_per_shard=1) as w:
            w.write_frame(frames[0])
            raise RuntimeError("boom")
    assert (tmp_path / "ds" / "shard_00000.npz").exists()
    with pytest.raises(ShardFormatError, match="index.json.*did not finish"):
        ShardDataset(tmp_path / "ds")


def test_corrupt_files_give_errors_naming_the_file(run, tmp_path):
    _, _, path, _, _ = run
    copy = tmp_path / "ds"
    shutil.copytree(path, copy)
    shard = copy / "shard_00001.npz"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated mid-write
    ds = ShardDataset(copy)
    ds[0]  # other shards still load
    with pytest.raises(ShardFormatError, match="shard_00001.npz"):
        ds[6]
    shard.write_bytes(b"not a zip file at all")
    with pytest.raises(ShardFormatError, match="shard_00001.npz"):
        ShardDataset(copy)[5]
    shard.unlink()
    with pytest.raises(ShardFormatError, match="shard_00001.npz.*missing"):
        ShardDataset(copy)[5]
    (copy / INDEX_FILE).write_text('{"format": "dyn_fusion.sha')
    with pytest.raises(ShardFormatError, match="index.json"):
        ShardDataset(copy)
    (copy / INDEX_FILE).unlink()
    with pytest.raises(ShardFormatError, match="index.json"):
        ShardDataset(copy)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ShardDataset(tmp_path / "nowhere")


def test_sequential_load_speed(run, record_property):
    _, _, path, summary, write_s = run
    ds = ShardDataset(path)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        ds = ShardDataset(path)  # cold cache every pass
        for i in range(len(ds)):
            ds[i]
    read_fps = reps * len(ds) / (time.perf_counter() - t0)
    write_fps = summary["frames"] / write_s
    record_property("shard_read_fps", read_fps)
    record_property("shard_write_fps", write_fps)
    print(f"\nshards: write {write_fps:.0f} frames/s, sequential read {read_fps:.0f} frames/s "
          f"({summary['bytes'] / summary['frames'] / 1e3:.0f} kB/frame)")
    assert read_fps > 50  # generous floor; typically hundreds to thousands of frames/s
