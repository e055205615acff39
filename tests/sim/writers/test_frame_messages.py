"""FrameMessageBuilder: the messages of simulated frames (real frames, real CDR), and the bag
writer writing exactly those messages in log-time order."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from mcap.reader import make_reader

from fusion_core.data import topics as T
from fusion_core.data.ros_types import shared_typestore
from sim.calibration import FRAME_IDS
from sim.config import FaultConfig
from sim.readings import SensorReading
from sim.simulator import Simulator
from sim.writers.frame_messages import FrameMessageBuilder, TimedMessage
from sim.writers.rosbag import RosbagWriter, epoch_to_ns
from tests.conftest import straight_scenario

EPOCH_S = 1_650_000_000.25
EPOCH_NS = 1_650_000_000_250_000_000
N_FRAMES = 6
GROUND_TRUTH_TOPICS = [T.TF_TOPIC, T.ODOM_TOPIC, T.GT_MARKERS_TOPIC, T.GT_DETECTIONS_TOPIC, T.LABELS_TOPIC]
READING_TOPICS = {
    "rgb": [T.RGB_IMAGE_TOPIC, T.RGB_INFO_TOPIC],
    "depth": [T.DEPTH_IMAGE_TOPIC, T.DEPTH_INFO_TOPIC],
    "lidar": [T.LIDAR_TOPIC],
    "radar": [T.RADAR_TOPIC],
    "imu": [T.IMU_TOPIC],
}


def ns(t_s: float) -> int:
    return EPOCH_NS + round(t_s * 1e9)


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def as_bytes(m: TimedMessage) -> tuple[str, int, int, bytes]:
    """A record with its message as CDR bytes (message objects holding arrays do not compare)."""
    return m.topic, m.stamp_ns, m.log_ns, bytes(shared_typestore().serialize_cdr(m.msg, m.msgtype))


@pytest.fixture(scope="module")
def run():
    """Frames of a short run whose radar and IMU deliver late (latency faults), and the builder."""
    config = straight_scenario(faults=(
        FaultConfig(sensor="radar", kind="latency", start_s=0.1, end_s=0.5, latency_ms=150.0, jitter_ms=30.0),
        FaultConfig(sensor="imu", kind="latency", start_s=0.0, end_s=0.3, latency_ms=20.0, jitter_ms=5.0),
    ))
    sim = Simulator(config)
    frames = list(sim.run(N_FRAMES))
    return sim, frames, FrameMessageBuilder(sim, EPOCH_NS)


def test_static_messages_are_the_sensor_mounts(run):
    sim, _, builder = run
    (tf_static,) = builder.static_messages()
    assert (tf_static.topic, tf_static.msgtype) == (T.TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage")
    assert tf_static.stamp_ns == tf_static.log_ns == EPOCH_NS
    assert {t.child_frame_id for t in tf_static.msg.transforms} == set(FRAME_IDS.values())
    for tf in tf_static.msg.transforms:
        calib = next(c for c in sim.calibration.values() if c.frame_id == tf.child_frame_id)
        tr = tf.transform.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], calib.base_from_sensor[:3, 3])
        assert tf.header.frame_id == "base_link" and stamp_ns(tf.header) == EPOCH_NS


def test_frame_messages_ground_truth_first_then_each_reading_in_capture_order(run):
    _, frames, builder = run
    for frame in frames:
        messages = builder.frame_messages(frame)
        expected = GROUND_TRUTH_TOPICS + [t for r in frame.readings for t in READING_TOPICS[r.sensor]]
        assert [m.topic for m in messages] == expected
        assert all(m.msgtype == T.TOPIC_TYPES[m.topic] for m in messages)
        for m in messages[:len(GROUND_TRUTH_TOPICS)]:
            assert m.stamp_ns == m.log_ns == ns(frame.time_s)
        parts = builder.ground_truth_messages(frame) + [m for r in frame.readings for m in builder.reading_messages(r)]
        assert [as_bytes(m) for m in messages] == [as_bytes(m) for m in parts]


def test_reading_stamps_are_capture_times_and_log_times_delivery_times(run):
    _, frames, builder = run
    late = 0
    for reading in (r for f in frames for r in f.readings):
        for m in builder.reading_messages(reading):
            assert m.stamp_ns == ns(reading.capture_time_s) == stamp_ns(m.msg.header)
            assert m.log_ns == ns(reading.receive_time_s) >= m.stamp_ns
            assert m.msg.header.frame_id == reading.frame_id
            late += m.log_ns > m.stamp_ns
            assert (m.log_ns > m.stamp_ns) == (reading.fault == "latency")
    assert late > 10  # radar and IMU readings under the latency faults


def test_payloads_and_camera_info_match_the_readings(run):
    sim, frames, builder = run
    frame = frames[2]
    for reading in frame.readings:
        msgs = builder.reading_messages(reading)
        if reading.sensor == "rgb":
            image, info = (m.msg for m in msgs)
            assert (image.height, image.width, image.encoding) == (*reading.data.shape[:2], "rgb8")
            np.testing.assert_array_equal(image.data.reshape(reading.data.shape), reading.data)
            np.testing.assert_allclose(info.k.reshape(3, 3), sim.calibration["rgb"].intrinsics.matrix)
            assert stamp_ns(info.header) == stamp_ns(image.header)
        elif reading.sensor == "lidar":
            points = np.frombuffer(msgs[0].msg.data.tobytes(), T.LIDAR_POINT_DTYPE)
            np.testing.assert_array_equal(points["x"], reading.data[:, 0])
            np.testing.assert_array_equal(points["ring"], reading.data[:, 4].astype(np.uint16))
        elif reading.sensor == "imu":
            a = msgs[0].msg.linear_acceleration
            np.testing.assert_array_equal([a.x, a.y, a.z], reading.data[:3])


def test_every_message_serialises_with_its_type_and_records_are_frozen(run):
    _, frames, builder = run
    store = shared_typestore()
    for m in builder.static_messages() + builder.frame_messages(frames[0]):
        cdr = bytes(store.serialize_cdr(m.msg, m.msgtype))
        assert bytes(store.serialize_cdr(store.deserialize_cdr(cdr, m.msgtype), m.msgtype)) == cdr
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.log_ns = 0
    assert isinstance(m, TimedMessage)


def test_unknown_sensor_is_an_error(run):
    _, frames, builder = run
    reading = dataclasses.replace(frames[0].readings[0], sensor="thermal")
    assert isinstance(reading, SensorReading)
    with pytest.raises(ValueError, match="unknown sensor 'thermal'"):
        builder.reading_messages(reading)


def test_bag_writer_writes_exactly_the_builders_messages_in_log_time_order(run, tmp_path):
    sim, frames, _ = run
    path = tmp_path / "bag"
    with RosbagWriter(path, sim, epoch_s=EPOCH_S) as bag:
        for frame in frames:
            bag.write_frame(frame)
    assert epoch_to_ns(EPOCH_S) == EPOCH_NS

    builder = FrameMessageBuilder(sim, EPOCH_NS)
    order = itertools.count()
    queued = [(m.log_ns, next(order), m) for f in frames for m in builder.frame_messages(f)]
    expected = [(m.topic, m.log_ns, as_bytes(m)[3]) for m in builder.static_messages()]
    expected += [(m.topic, m.log_ns, as_bytes(m)[3]) for _, _, m in sorted(queued, key=lambda q: q[:2])]

    with open(path / "bag.mcap", "rb") as f:
        written = [(ch.topic, msg.log_time, bytes(msg.data))
                   for _, ch, msg in make_reader(f).iter_messages(log_time_order=False)]
    assert [(t, log) for t, log, _ in written] == [(t, log) for t, log, _ in expected]
    assert written == expected
    log_times = [log for _, log, _ in written]
    assert log_times == sorted(log_times)
