"""FusionPipeline on the raw CDR of a simulated bag: the frames it assembles equal the offline
reader's, malformed messages become counted drops while every other message is still used,
and every message is accounted for."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from rosbags.highlevel import AnyReader

from fusion_core.data.rosbag_source import RosbagSource
from fusion_core.data.static_tf import load_static_tf, save_static_tf
from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
from fusion_core.energy.profile import load_device_profile
from fusion_core.gates.settings import GateSettings
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.runtime.cost_table import measure_cost_table
from fusion_core.runtime.dynamic_fusion import DynamicFusion
from fusion_core.runtime.power_gating import PowerGatingConfig, SensorPowerManager
from ros_nodes import ros_io
from ros_nodes.fusion_pipeline import FusionPipeline, subscribed_topics
from ros_nodes.stamp_sync import StampSyncConfig, StampSynchroniser
from sim.calibration import rig_static_tf
from sim.config import load_scenario, resolve_scenario
from sim.simulator import Simulator
from sim.writers.rosbag import write_bag

N_FRAMES = 12
UNUSED = {("imu", "sync:unmatched"), ("radar", "sync:unmatched")}  # drops of a clean recording


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    sim = Simulator(load_scenario(resolve_scenario("default")))
    path = tmp_path_factory.mktemp("bags") / "sim"
    write_bag(path, sim, N_FRAMES)
    tf_path = path.parent / "calibration.yaml"
    save_static_tf(tf_path, rig_static_tf(sim.calibration))
    return path, tf_path


@pytest.fixture(scope="module")
def mapping():
    return TopicMapping.load(data_config_dir() / "sim_bag.yaml")


@pytest.fixture(scope="module")
def fusion(bag, mapping):
    torch.manual_seed(0)
    detector = FusionDetector(load_model_config("configs/model/tiny.yaml")).eval()
    source = RosbagSource(bag[0], mapping)
    full = next(s for s in source if all(s.present(x) for x in ("rgb", "depth", "lidar", "radar")))
    table = measure_cost_table(detector, None, BatchCollator(detector.config)([full]).inputs)
    return DynamicFusion(detector, None, GateSettings(mode="static"), cost_table=table,
                         profile=load_device_profile("jetson_orin"))


def raw_messages(path, topics: set[str]) -> list[tuple[str, bytes]]:
    """(topic, CDR bytes) of the bag's messages on ``topics``, in log-time order."""
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, bytes(raw)) for c, _, raw in reader.messages(connections=conns)]


def pipeline(fusion, mapping, tf_path, power=None, **sync) -> FusionPipeline:
    cfg = StampSyncConfig(pivot="lidar", roles=("lidar", "radar", "rgb", "depth", "imu"),
                          tolerance_s=mapping.sync_tolerance_s.default_s, **sync)
    return FusionPipeline(fusion, mapping, StampSynchroniser(cfg), load_static_tf(tf_path),
                          load_device_profile("jetson_orin"), power=power)


def play(pipe: FusionPipeline, messages, corrupt=None):
    """Feed every message (through ``corrupt(role, raw) -> raw`` if given); run every frame."""
    role_of = {topic: role for role, (topic, _) in pipe.roles.items()}
    outcomes = []
    for topic, raw in messages:
        role = role_of[topic]
        if corrupt is not None:
            raw = corrupt(role, raw)
        outcomes += [pipe.run(f) for f in pipe.accept(role, raw)]
    return outcomes + [pipe.run(f) for f in pipe.flush()]


def test_live_frames_equal_the_offline_reader(bag, mapping, fusion):
    path, tf_path = bag
    pipe = pipeline(fusion, mapping, tf_path)
    topics = {t for t, _ in subscribed_topics(mapping).values()}
    outcomes = play(pipe, raw_messages(path, topics))
    offline = RosbagSource(path, mapping)

    assert [o.stamp_ns for o in outcomes] == offline.stamps_ns.tolist()
    for o, ref in zip(outcomes, offline):
        live = o.sample
        assert set(live.absence) == set(ref.absence)
        for name in ("lidar_xyzi", "radar_xyzdr", "depth_m", "rgb", "imu"):
            a, b = getattr(live, name), getattr(ref, name)
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
        for cam in ("rgb_camera", "depth_camera"):
            if getattr(ref, cam) is not None:
                assert getattr(live, cam) == getattr(ref, cam)
        assert o.result.active_experts == tuple(fusion.expert_names)
        assert o.energy.compute_total_j > 0 and set(o.energy.sensor_j) == {"rgb", "depth", "lidar", "radar", "imu"}
    # only what no frame needs: the 20 Hz radar's scans between frames, IMU samples before the first
    assert set(pipe.drops) <= UNUSED
    assert abs(pipe.drops[("radar", "sync:unmatched")] - pipe.received["radar"] / 2) <= 2


def test_malformed_messages_are_counted_and_everything_else_is_used(bag, mapping, fusion):
    path, tf_path = bag
    pipe = pipeline(fusion, mapping, tf_path)
    topics = {t for t, _ in subscribed_topics(mapping).values()}
    messages = raw_messages(path, topics)
    seen: dict[str, int] = {}

    def corrupt(role, raw):
        seen[role] = seen.get(role, 0) + 1
        k = seen[role]
        if role == "rgb" and k == 3:  # wrong encoding
            msg = ros_io.deserialize(raw, "sensor_msgs/msg/Image")
            return ros_io.serialize(dataclasses.replace(msg, encoding="yuv422"), "sensor_msgs/msg/Image")
        if role == "lidar" and k == 4:  # point_step that does not fit the fields
            msg = ros_io.deserialize(raw, "sensor_msgs/msg/PointCloud2")
            return ros_io.serialize(dataclasses.replace(msg, point_step=8, row_step=8 * msg.width),
                                    "sensor_msgs/msg/PointCloud2")
        if role == "radar" and k == 5:  # garbage bytes
            return raw[: len(raw) // 3]
        if role == "depth" and k == 2:  # NaNs are "no measurement" in a depth image: used, not dropped
            msg = ros_io.deserialize(raw, "sensor_msgs/msg/Image")
            data = np.frombuffer(bytes(msg.data), "<f4").copy()
            data[::7] = np.nan
            return ros_io.serialize(dataclasses.replace(msg, data=data.view(np.uint8)), "sensor_msgs/msg/Image")
        return raw

    outcomes = play(pipe, messages, corrupt)
    drops = dict(pipe.drops)
    assert drops.pop(("rgb", "decode_error:encoding")) == 1
    assert drops.pop(("lidar", "decode_error:point_step_mismatch")) == 1
    assert drops.pop(("radar", "decode_error:deserialize")) == 1
    # the broken LiDAR scan was the pivot of its frame: the frame still runs, on the other
    # sensors, with the LiDAR absent for that reason (as the offline bag reader makes it)
    assert set(drops) <= UNUSED
    assert len(outcomes) == N_FRAMES
    (no_lidar,) = [o for o in outcomes if not o.sample.present("lidar")]
    assert no_lidar.sample.absence["lidar"] == "decode_error:point_step_mismatch"
    assert no_lidar.sample.present("rgb") and no_lidar.sample.present("depth") and no_lidar.result.active_experts
    rgb_absent = [o for o in outcomes if not o.sample.present("rgb")]
    assert len(rgb_absent) == 1 and rgb_absent[0].sample.absence["rgb"].startswith("sync:")
    assert all(np.isfinite(o.result.boxes).all() for o in outcomes)
    # accounting: every sensor message is used or counted as dropped
    for role in ("lidar", "radar", "rgb", "depth", "imu"):
        dropped = sum(n for (r, _), n in pipe.drops.items() if r == role)
        assert pipe.received[role] == pipe.used[role] + dropped + pipe.sync.pending_count(role), role


def test_unknown_sensor_frame_and_missing_camera_info_are_reported(bag, mapping, fusion, tmp_path):
    path, _ = bag
    sim = Simulator(load_scenario(resolve_scenario("default")))
    tree = rig_static_tf({k: v for k, v in sim.calibration.items() if k != "radar"})
    tf_path = tmp_path / "no_radar.yaml"
    save_static_tf(tf_path, tree)
    pipe = pipeline(fusion, mapping, tf_path)
    info_topic = mapping.camera_info_topic("rgb")
    topics = {t for t, _ in subscribed_topics(mapping).values()} - {info_topic}
    outcomes = play(pipe, raw_messages(path, topics))
    assert len(outcomes) == N_FRAMES
    assert all(o.sample.absence.get("radar") == "no_calibration" for o in outcomes)
    assert all(o.sample.absence.get("rgb") == "no_camera_info" for o in outcomes)
    assert pipe.drops[("radar", "no_calibration")] == pipe.received["radar"] - pipe.sync.pending_count("radar") \
        - sum(n for (r, c), n in pipe.drops.items() if r == "radar" and c.startswith("sync:"))
    assert all("radar" not in o.energy.compute_j and "stem:radar" not in o.result.components for o in outcomes)


def test_power_gating_puts_unused_sensors_in_standby_and_out_of_the_ledger(bag, mapping, fusion):
    path, tf_path = bag
    # the static gate needs every sensor; a tiny detector whose only expert is lidar needs one
    lidar_only = DynamicFusion(fusion.detector, None, GateSettings(mode="late"), cost_table=fusion.cost_table,
                               profile=fusion.profile)
    lidar_only.gate_setup = dataclasses.replace(  # late fusion over the lidar expert alone
        lidar_only.gate_setup, single_sensor=torch.tensor([name == "lidar" for name in fusion.expert_names]))
    power = SensorPowerManager(PowerGatingConfig(enabled=True, standby_after_s=0.3, recheck_period_s=100.0,
                                                 wake_on_context_change=False))
    pipe = pipeline(lidar_only, mapping, tf_path, power=power)
    topics = {t for t, _ in subscribed_topics(mapping).values()}
    outcomes = play(pipe, raw_messages(path, topics))
    commands = [(c.sensor, c.state) for o in outcomes for c in o.power_commands]
    assert sorted(commands) == [("depth", "standby"), ("radar", "standby"), ("rgb", "standby")]
    last = outcomes[-1]
    assert set(last.energy.sensor_j) == {"lidar", "imu"}
    assert last.sample.absence["radar"] == "standby"
    assert outcomes[0].energy.sensor_total_j > last.energy.sensor_total_j


def test_a_frame_without_any_detection_sensor_costs_no_compute(bag, mapping, fusion, tmp_path):
    path, _ = bag
    sim = Simulator(load_scenario(resolve_scenario("default")))
    tf_path = tmp_path / "imu_only.yaml"
    save_static_tf(tf_path, rig_static_tf({"imu": sim.calibration["imu"]}))  # no detection sensor can be placed
    pipe = pipeline(fusion, mapping, tf_path)
    outcomes = play(pipe, raw_messages(path, {t for t, _ in subscribed_topics(mapping).values()}))
    assert len(outcomes) == N_FRAMES
    for o in outcomes:
        assert o.sample.present("imu") and not any(o.sample.present(s) for s in ("rgb", "depth", "lidar", "radar"))
        assert len(o.result.boxes) == 0 and o.energy.compute_total_j == 0.0 and o.energy.sensor_total_j > 0
