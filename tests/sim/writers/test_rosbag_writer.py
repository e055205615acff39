"""RosbagWriter: write short simulations to rosbag2/MCAP bags and read them back with rosbags
and with mcap_ros2 (no mocks: real simulator frames, real files)."""
from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from fusion_core.boxes import CLASS_ID, CLASS_NAMES, H, L, W
from fusion_core.data import topics as T
from fusion_core.data.ros_types import (
    VISION_MSGS_DEFINITIONS,
    message_definition,
    ros2_typestore,
)
from fusion_core.vocabulary import SENSORS
from sim.calibration import FRAME_IDS
from sim.config import FaultConfig, ScenarioConfig
from sim.simulator import Simulator
from sim.writers.rosbag import RosbagWriter

with warnings.catch_warnings():  # mcap_ros2.reader warns on import that it is deprecated (still works)
    warnings.simplefilter("ignore", DeprecationWarning)
    from mcap_ros2.reader import read_ros2_messages

EPOCH_S = 1_650_000_000.25
N_FRAMES = 10


EPOCH_NS = 1_650_000_000_250_000_000  # EPOCH_S in ns, written out


def ns(t_s: float) -> int:
    """Expected bag time of scenario time t: epoch + t, to the nanosecond."""
    return EPOCH_NS + round(t_s * 1e9)


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def record(path: Path, config: ScenarioConfig, n_frames: int, **kwargs):
    """Simulate ``n_frames``, write them; returns (frames, counts from close(), simulator)."""
    sim = Simulator(config)
    frames = list(sim.run(n_frames))
    with RosbagWriter(path, sim, epoch_s=kwargs.pop("epoch_s", EPOCH_S), **kwargs) as bag:
        for frame in frames:
            bag.write_frame(frame)
    counts = bag.close()  # idempotent after the with block
    return frames, counts, sim


def read_all(path: Path) -> tuple[dict[str, list], dict[str, list[int]], dict[str, object]]:
    """topic -> decoded messages, topic -> log times (ns), topic -> connection; via rosbags."""
    msgs, times, conns = defaultdict(list), defaultdict(list), {}
    with AnyReader([path], default_typestore=ros2_typestore()) as reader:
        for conn in reader.connections:
            conns[conn.topic] = conn
        for conn, t, raw in reader.messages():
            msgs[conn.topic].append(reader.deserialize(raw, conn.msgtype))
            times[conn.topic].append(t)
    return msgs, times, conns


def file_order_log_times(mcap_path: Path) -> list[tuple[str, int]]:
    """(topic, log time) of every message in the order it is stored in the file."""
    with open(mcap_path, "rb") as f:
        return [(ch.topic, m.log_time) for _, ch, m in make_reader(f).iter_messages(log_time_order=False)]


@pytest.fixture(scope="module")
def clean_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "clean"
    frames, counts, sim = record(path, ScenarioConfig(), N_FRAMES)
    msgs, times, conns = read_all(path)
    return dict(path=path, frames=frames, counts=counts, sim=sim, msgs=msgs, times=times, conns=conns)


def readings_of(frames, sensor):
    return [r for f in frames for r in f.readings if r.sensor == sensor]


# ---------------------------------------------------------------------------------- (a) rosbags
def test_every_topic_present_with_its_type(clean_bag):
    conns = clean_bag["conns"]
    assert set(conns) == set(T.TOPIC_TYPES)
    for topic, msgtype in T.TOPIC_TYPES.items():
        assert conns[topic].msgtype == msgtype
    assert (clean_bag["path"] / "metadata.yaml").is_file()
    assert (clean_bag["path"] / "clean.mcap").is_file()


def test_bag_metadata(clean_bag):
    with Reader(clean_bag["path"]) as reader:
        assert reader.start_time == EPOCH_NS
        assert reader.message_count == sum(clean_bag["counts"].values())
        assert {c.topic: c.msgcount for c in reader.connections} == clean_bag["counts"]
    info = yaml.safe_load((clean_bag["path"] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (info["version"], info["storage_identifier"]) == (9, "mcap")
    custom = info["custom_data"]
    assert custom["dyn_fusion.epoch_ns"] == str(EPOCH_NS)
    assert float(custom["dyn_fusion.epoch_s"]) == EPOCH_S
    assert custom["dyn_fusion.scenario"] == "default"
    assert json.loads(custom["dyn_fusion.scenario_config"])["sensors"]["lidar"]["rate_hz"] == 10.0


def test_message_counts_match_configured_rates(clean_bag):
    cfg, counts, msgs = clean_bag["sim"].config, clean_bag["counts"], clean_bag["msgs"]
    duration_s = N_FRAMES / cfg.frame_rate_hz
    expected = {
        T.TF_STATIC_TOPIC: 1, T.TF_TOPIC: N_FRAMES, T.ODOM_TOPIC: N_FRAMES, T.GT_MARKERS_TOPIC: N_FRAMES,
        T.GT_DETECTIONS_TOPIC: N_FRAMES, T.LABELS_TOPIC: N_FRAMES,
    }
    for sensor in SENSORS:
        expected[T.SENSOR_TOPICS[sensor]] = round(duration_s * getattr(cfg.sensors, sensor).rate_hz)
    for sensor, topic in T.CAMERA_INFO_TOPICS.items():
        expected[topic] = expected[T.SENSOR_TOPICS[sensor]]
    assert expected[T.LIDAR_TOPIC] == 10 and expected[T.RADAR_TOPIC] == 20 and expected[T.IMU_TOPIC] == 200
    assert counts == expected
    assert {topic: len(m) for topic, m in msgs.items()} == expected


def test_images_and_camera_info(clean_bag):
    msgs, calib = clean_bag["msgs"], clean_bag["sim"].calibration
    for sensor, encoding, bpp in (("rgb", "rgb8", 3), ("depth", "32FC1", 4)):
        intr = calib[sensor].intrinsics
        images = msgs[T.SENSOR_TOPICS[sensor]]
        infos = msgs[T.CAMERA_INFO_TOPICS[sensor]]
        for img, info in zip(images, infos, strict=True):
            assert img.encoding == encoding and img.is_bigendian == 0
            assert (img.width, img.height, img.step) == (intr.width_px, intr.height_px, intr.width_px * bpp)
            assert len(img.data) == img.step * img.height
            assert img.header.frame_id == info.header.frame_id == FRAME_IDS[sensor]
            assert stamp_ns(img.header) == stamp_ns(info.header)
            assert (info.width, info.height, info.distortion_model) == (intr.width_px, intr.height_px, "plumb_bob")
            np.testing.assert_array_equal(info.d, np.zeros(5))
            np.testing.assert_allclose(info.k.reshape(3, 3), intr.matrix)
            np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3], intr.matrix)
            assert not info.p.reshape(3, 4)[:, 3].any()


def test_image_payloads_round_trip_exactly_including_depth_nans(clean_bag):
    msgs, frames = clean_bag["msgs"], clean_bag["frames"]
    rgb_sent = readings_of(frames, "rgb")
    for msg, r in zip(msgs[T.RGB_IMAGE_TOPIC], rgb_sent, strict=True):
        np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3), r.data)
    saw_nan = False
    for msg, r in zip(msgs[T.DEPTH_IMAGE_TOPIC], readings_of(frames, "depth"), strict=True):
        depth = np.frombuffer(msg.data, "<f4").reshape(msg.height, msg.width)
        assert np.array_equal(depth, r.data, equal_nan=True)
        assert np.array_equal(np.isnan(depth), np.isnan(r.data))
        saw_nan |= bool(np.isnan(depth).any())
    assert saw_nan, "the scene should leave some depth pixels without a measurement"


def test_point_cloud_layouts(clean_bag):
    msgs = clean_bag["msgs"]
    for topic, layout, step in ((T.LIDAR_TOPIC, T.LIDAR_POINT_FIELDS, 18), (T.RADAR_TOPIC, T.RADAR_POINT_FIELDS, 20)):
        for msg in msgs[topic]:
            assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [(*f, 1) for f in layout]
            assert msg.point_step == step and msg.height == 1 and not msg.is_bigendian
            assert msg.row_step == step * msg.width == len(msg.data)
    lidar_fields = msgs[T.LIDAR_TOPIC][0].fields
    assert [f.name for f in lidar_fields] == ["x", "y", "z", "intensity", "ring"]
    assert [f.datatype for f in lidar_fields] == [7, 7, 7, 7, 4]  # FLOAT32 x4, UINT16
    assert [f.name for f in msgs[T.RADAR_TOPIC][0].fields] == ["x", "y", "z", "doppler", "rcs"]


def test_decoded_lidar_and_radar_points_equal_simulator_payload(clean_bag):
    msgs, frames = clean_bag["msgs"], clean_bag["frames"]
    for msg, r in zip(msgs[T.LIDAR_TOPIC], readings_of(frames, "lidar"), strict=True):
        pts = np.frombuffer(msg.data, T.LIDAR_POINT_DTYPE)
        decoded = np.stack([pts[n].astype(np.float32) for n in pts.dtype.names], axis=1)
        assert decoded.shape == r.data.shape and len(decoded) > 1000
        np.testing.assert_array_equal(decoded, r.data)
        assert msg.is_dense == bool(np.isfinite(r.data[:, :3]).all())
    for msg, r in zip(msgs[T.RADAR_TOPIC], readings_of(frames, "radar"), strict=True):
        decoded = np.frombuffer(msg.data, "<f4").reshape(-1, 5)
        np.testing.assert_array_equal(decoded, r.data)


def test_header_stamps_are_epoch_plus_capture_time(clean_bag):
    msgs, times, frames = clean_bag["msgs"], clean_bag["times"], clean_bag["frames"]
    for sensor in SENSORS:
        sent = readings_of(frames, sensor)
        got = msgs[T.SENSOR_TOPICS[sensor]]
        assert [stamp_ns(m.header) for m in got] == [ns(r.capture_time_s) for r in sent]
        assert [m.header.frame_id for m in got] == [r.frame_id for r in sent]
        # no latency fault here: delivered at capture time
        assert times[T.SENSOR_TOPICS[sensor]] == [ns(r.receive_time_s) for r in sent]
    frame_ns = [ns(f.time_s) for f in frames]
    for topic in (T.GT_DETECTIONS_TOPIC, T.LABELS_TOPIC):
        assert [stamp_ns(m.header) for m in msgs[topic]] == frame_ns
        assert {m.header.frame_id for m in msgs[topic]} == {"base_link"}
    for markers, t_ns in zip(msgs[T.GT_MARKERS_TOPIC], frame_ns, strict=True):  # MarkerArray has no header
        assert {stamp_ns(m.header) for m in markers.markers} == {t_ns}
        assert {m.header.frame_id for m in markers.markers} == {"base_link"}
    for topic in (T.TF_TOPIC, T.ODOM_TOPIC, T.GT_MARKERS_TOPIC, T.GT_DETECTIONS_TOPIC, T.LABELS_TOPIC):
        assert times[topic] == frame_ns
    for m in msgs[T.ODOM_TOPIC]:
        assert (m.header.frame_id, m.child_frame_id) == ("odom", "base_link")
    assert [stamp_ns(m.header) for m in msgs[T.ODOM_TOPIC]] == frame_ns
    assert min(min(ts) for ts in times.values()) == ns(0.0) > 0


def test_tf_odom_and_imu(clean_bag):
    msgs, conns, frames, sim = clean_bag["msgs"], clean_bag["conns"], clean_bag["frames"], clean_bag["sim"]
    (static,) = msgs[T.TF_STATIC_TOPIC]
    assert {t.child_frame_id for t in static.transforms} == set(FRAME_IDS.values())
    for tf in static.transforms:
        assert tf.header.frame_id == "base_link" and stamp_ns(tf.header) == ns(0.0)
        calib = next(c for c in sim.calibration.values() if c.frame_id == tf.child_frame_id)
        tr, q = tf.transform.translation, tf.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], calib.base_from_sensor[:3, 3])
        np.testing.assert_allclose(rotation_from_quaternion(q.x, q.y, q.z, q.w), calib.base_from_sensor[:3, :3],
                                   atol=1e-12)
    (qos,) = conns[T.TF_STATIC_TOPIC].ext.offered_qos_profiles
    assert qos.durability == QosDurability.TRANSIENT_LOCAL
    assert conns[T.TF_TOPIC].ext.offered_qos_profiles[0].durability == QosDurability.VOLATILE

    for msg, frame in zip(msgs[T.TF_TOPIC], frames, strict=True):
        (tf,) = msg.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
        x, y, yaw = frame.ego_pose_xyyaw
        q = tf.transform.rotation
        np.testing.assert_allclose([tf.transform.translation.x, tf.transform.translation.y], [x, y])
        np.testing.assert_allclose(2 * np.arctan2(q.z, q.w), yaw, atol=1e-9)
    for msg, frame in zip(msgs[T.ODOM_TOPIC], frames, strict=True):
        assert msg.twist.twist.linear.x == pytest.approx(frame.ego_speed_mps)
        assert msg.twist.twist.angular.z == pytest.approx(frame.ego_yaw_rate_radps)

    imu_cfg = sim.config.sensors.imu
    for msg, r in zip(msgs[T.IMU_TOPIC], readings_of(frames, "imu"), strict=True):
        assert msg.orientation_covariance[0] == -1.0
        np.testing.assert_allclose(np.diag(msg.linear_acceleration_covariance.reshape(3, 3)), imu_cfg.accel_noise_mps2**2)
        np.testing.assert_allclose(np.diag(msg.angular_velocity_covariance.reshape(3, 3)), imu_cfg.gyro_noise_radps**2)
        a, g = msg.linear_acceleration, msg.angular_velocity
        assert [a.x, a.y, a.z, g.x, g.y, g.z] == r.data.tolist()


def test_ground_truth_detections_and_markers(clean_bag):
    msgs, frames = clean_bag["msgs"], clean_bag["frames"]
    for det, markers, frame in zip(msgs[T.GT_DETECTIONS_TOPIC], msgs[T.GT_MARKERS_TOPIC], frames, strict=True):
        n = len(frame.gt_boxes)
        assert n > 0
        assert len(det.detections) == n
        assert [d.id for d in det.detections] == [str(i) for i in frame.gt_track_ids]
        for d, box in zip(det.detections, frame.gt_boxes):
            (res,) = d.results
            assert res.hypothesis.class_id == CLASS_NAMES[int(box[CLASS_ID])] and res.hypothesis.score == 1.0
            np.testing.assert_allclose([d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], box[[L, W, H]], rtol=1e-6)
        assert markers.markers[0].action == 3  # DELETEALL
        rest = markers.markers[1:]
        assert len(rest) == 3 * n
        assert [m.ns for m in rest[:3]] == ["boxes", "labels", "velocity"]
        assert [m.type for m in rest[:3]] == [1, 9, 0]  # CUBE, TEXT_VIEW_FACING, ARROW
        assert rest[1].text == f"{CLASS_NAMES[int(frame.gt_boxes[0, CLASS_ID])]} #{frame.gt_track_ids[0]}"


def test_labels_topic_clean_run(clean_bag):
    for msg, frame in zip(clean_bag["msgs"][T.LABELS_TOPIC], clean_bag["frames"], strict=True):
        cond, *sensors = msg.status
        assert (cond.name, cond.message) == ("condition", frame.condition)
        assert {kv.key: kv.value for kv in cond.values} == {"severity": f"{frame.severity:g}"}
        assert [s.name for s in sensors] == [f"sensor/{n}" for n in SENSORS]
        for s in sensors:
            assert (s.level, s.message) == (0, "ok")
            assert {kv.key: kv.value for kv in s.values} == {"fault": "none", "dropped": "0"}


def test_log_times_non_decreasing_in_file(clean_bag):
    order = file_order_log_times(clean_bag["path"] / "clean.mcap")
    assert order[0][0] == T.TF_STATIC_TOPIC
    log = [t for _, t in order]
    assert log == sorted(log)


# ---------------------------------------------------------------------------------- (b) mcap_ros2
def test_mcap_ros2_decodes_every_type(clean_bag):
    mcap_path = clean_bag["path"] / "clean.mcap"
    first = {}
    n_msgs = 0
    for m in read_ros2_messages(mcap_path):
        n_msgs += 1
        first.setdefault(m.channel.topic, m)
    assert set(first) == set(T.TOPIC_TYPES)
    assert n_msgs == sum(clean_bag["counts"].values())
    frame0 = clean_bag["frames"][0]

    img = first[T.RGB_IMAGE_TOPIC]
    assert img.schema.name == "sensor_msgs/msg/Image"
    assert img.ros_msg.encoding == "rgb8"
    np.testing.assert_array_equal(np.frombuffer(img.ros_msg.data, np.uint8).reshape(frame0.latest("rgb").data.shape),
                                  frame0.latest("rgb").data)
    cloud = first[T.LIDAR_TOPIC].ros_msg
    assert cloud.point_step == 18 and [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
    pts = np.frombuffer(cloud.data, T.LIDAR_POINT_DTYPE)
    np.testing.assert_array_equal(pts["ring"], frame0.latest("lidar").data[:, 4])
    imu = first[T.IMU_TOPIC].ros_msg
    assert imu.orientation_covariance[0] == -1.0
    tf_static = first[T.TF_STATIC_TOPIC]
    assert len(tf_static.ros_msg.transforms) == 5
    assert "transient_local" in tf_static.channel.metadata["offered_qos_profiles"]
    assert first[T.TF_TOPIC].ros_msg.transforms[0].child_frame_id == "base_link"
    markers = first[T.GT_MARKERS_TOPIC].ros_msg
    assert markers.markers[0].action == 3 and len(markers.markers) == 1 + 3 * len(frame0.gt_boxes)
    det = first[T.GT_DETECTIONS_TOPIC]
    assert det.schema.name == "vision_msgs/msg/Detection3DArray"
    assert len(det.ros_msg.detections) == len(frame0.gt_boxes)
    assert det.ros_msg.detections[0].results[0].hypothesis.class_id in CLASS_NAMES
    assert det.ros_msg.detections[0].id == str(frame0.gt_track_ids[0])
    assert first[T.LABELS_TOPIC].ros_msg.status[0].name == "condition"
    assert first[T.ODOM_TOPIC].ros_msg.child_frame_id == "base_link"


def test_vision_msgs_definitions_are_embedded():
    store = ros2_typestore()
    assert set(VISION_MSGS_DEFINITIONS) <= set(store.types)
    text = message_definition(T.DETECTION3D_ARRAY_TYPE, store)
    for dep in ("vision_msgs/Detection3D", "vision_msgs/ObjectHypothesisWithPose", "vision_msgs/BoundingBox3D",
                "vision_msgs/ObjectHypothesis", "geometry_msgs/PoseWithCovariance"):
        assert f"MSG: {dep}\n" in text


# ---------------------------------------------------------------------------------- (c) faults
def test_dropout_window_leaves_no_lidar_message_and_is_labelled(tmp_path):
    start, end = 0.2, 0.5
    cfg = ScenarioConfig(faults=(FaultConfig(sensor="lidar", kind="dropout", start_s=start, end_s=end),))
    frames, counts, _ = record(tmp_path / "dropout", cfg, 8)
    msgs, _, _ = read_all(tmp_path / "dropout")
    stamps = [stamp_ns(m.header) for m in msgs[T.LIDAR_TOPIC]]
    assert stamps and not [s for s in stamps if ns(start) <= s < ns(end)]
    assert counts[T.LIDAR_TOPIC] == 8 - 3 == len(stamps)
    assert counts[T.RGB_IMAGE_TOPIC] == 8  # other sensors unaffected
    for msg, frame in zip(msgs[T.LABELS_TOPIC], frames, strict=True):
        lidar = next(s for s in msg.status if s.name == "sensor/lidar")
        values = {kv.key: kv.value for kv in lidar.values}
        if start <= frame.time_s < end:
            assert (lidar.level, lidar.message, values["fault"], values["dropped"]) == (1, "dropout", "dropout", "1")
        else:
            assert (lidar.level, lidar.message, values["fault"], values["dropped"]) == (0, "ok", "none", "0")


def test_latency_fault_keeps_log_times_non_decreasing(tmp_path):
    faults = (
        FaultConfig(sensor="imu", kind="latency", start_s=0.1, end_s=0.6, latency_ms=150.0, jitter_ms=60.0),
        FaultConfig(sensor="lidar", kind="latency", start_s=0.0, end_s=0.8, latency_ms=250.0, jitter_ms=30.0),
    )
    frames, counts, _ = record(tmp_path / "latency", ScenarioConfig(faults=faults), 8)
    path = tmp_path / "latency"
    log = [t for _, t in file_order_log_times(path / "latency.mcap")]
    assert log == sorted(log)
    assert counts[T.IMU_TOPIC] == 160 and counts[T.LIDAR_TOPIC] == 8  # delayed, nothing lost
    msgs, times, _ = read_all(path)
    delays = [t - stamp_ns(m.header) for m, t in zip(msgs[T.LIDAR_TOPIC], times[T.LIDAR_TOPIC])]
    assert min(delays) > 0.1e9  # every lidar scan is late; the last ones arrive after the last frame
    sent = {ns(r.capture_time_s): ns(r.receive_time_s) for r in readings_of(frames, "imu")}
    got = {stamp_ns(m.header): t for m, t in zip(msgs[T.IMU_TOPIC], times[T.IMU_TOPIC])}
    assert got == sent
    # jitter reorders IMU samples: in log-time order their stamps are no longer sorted
    imu_stamps_in_log_order = [stamp_ns(m.header) for m in msgs[T.IMU_TOPIC]]
    assert imu_stamps_in_log_order != sorted(imu_stamps_in_log_order)


# ---------------------------------------------------------------------------------- (d) overwrite
def test_existing_path_needs_overwrite(tmp_path):
    path = tmp_path / "bag"
    _, counts, _ = record(path, ScenarioConfig(), 2)
    assert counts[T.LIDAR_TOPIC] == 2
    sim = Simulator(ScenarioConfig())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        RosbagWriter(path, sim)
    assert (path / "metadata.yaml").is_file()  # untouched
    _, counts, _ = record(path, ScenarioConfig(), 1, overwrite=True)
    assert counts[T.LIDAR_TOPIC] == 1
    msgs, _, _ = read_all(path)
    assert len(msgs[T.LIDAR_TOPIC]) == 1


def test_overwrite_refuses_to_delete_a_directory_that_is_not_a_bag(tmp_path):
    path = tmp_path / "not_a_bag"
    path.mkdir()
    (path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not part of a rosbag2"):
        RosbagWriter(path, Simulator(ScenarioConfig()), overwrite=True)
    assert (path / "notes.txt").read_text() == "keep me"


def test_frames_must_arrive_in_order_and_not_after_close(tmp_path):
    sim = Simulator(ScenarioConfig())
    frames = list(sim.run(2))
    bag = RosbagWriter(tmp_path / "order", sim)
    bag.write_frame(frames[1])
    with pytest.raises(ValueError, match="in order"):
        bag.write_frame(frames[0])
    bag.close()
    with pytest.raises(RuntimeError):
        bag.write_frame(frames[1])
