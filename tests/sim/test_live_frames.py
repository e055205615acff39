"""Live frames: the switchable simulator skips sensors that are not wanted (and only those), and
the producer thread hands out each frame's serialised messages (real simulation, real CDR)."""
from __future__ import annotations

import numpy as np
import pytest

from fusion_core.config_io import ConfigError
from fusion_core.data import topics as T
from fusion_core.data.ros_types import shared_typestore
from fusion_core.vocabulary import SENSORS
from sim.config import FaultConfig
from sim.live_frames import (
    NOT_CAPTURED,
    FrameProducer,
    SwitchableSimulator,
    frames_for_duration,
    was_captured,
)
from sim.simulator import Simulator
from sim.writers.frame_messages import FrameMessageBuilder
from tests.conftest import straight_scenario

EPOCH_NS = 1_700_000_000_000_000_000


def serialize(msg, msgtype: str) -> bytes:
    return bytes(shared_typestore().serialize_cdr(msg, msgtype))


def count_captures(sim: Simulator) -> dict[str, int]:
    """Count the ray-casting captures of each camera/LiDAR/radar model (the models still run)."""
    counts = dict.fromkeys(("rgb", "depth", "lidar", "radar"), 0)
    for sensor in counts:
        model = getattr(sim, sensor)

        def counted(ctx, _capture=model.capture, _sensor=sensor):
            counts[_sensor] += 1
            return _capture(ctx)
        model.capture = counted
    return counts


def test_unwanted_sensors_are_not_ray_cast_and_the_others_are_unchanged():
    config = straight_scenario(faults=(FaultConfig(sensor="lidar", kind="frozen", start_s=0.3, end_s=0.6),))
    reference = list(Simulator(config).run(6))
    wanted = set(SENSORS)
    sim = SwitchableSimulator(config, lambda: wanted)
    captures = count_captures(sim)
    frames = []
    for frame in sim.run(6):  # frames are simulated lazily: switch the LiDAR off after frame 1
        frames.append(frame)
        if frame.index == 1:
            wanted = set(SENSORS) - {"lidar", "rgb"}
    assert captures == {"rgb": 2, "depth": 6, "lidar": 2, "radar": 12}
    for frame, ref in zip(frames, reference, strict=True):
        assert [(r.sensor, r.seq) for r in frame.readings] == [(r.sensor, r.seq) for r in ref.readings]
        for r, r_ref in zip(frame.readings, ref.readings):
            if frame.index >= 2 and r.sensor in ("lidar", "rgb"):
                assert r.data is NOT_CAPTURED and not was_captured(r)  # frozen LiDAR included
            else:
                assert was_captured(r)
                np.testing.assert_array_equal(r.data, r_ref.data)  # same seeds, same data
        np.testing.assert_array_equal(frame.gt_boxes, ref.gt_boxes)
        if frame.index >= 2:
            assert (frame.gt_lidar_hits == -1).all()  # no scan, so no hit counts
    assert not NOT_CAPTURED.flags.writeable


def test_frames_for_duration():
    sim = Simulator(straight_scenario())  # 10 Hz
    assert frames_for_duration(sim, 1.0) == 10
    assert frames_for_duration(sim, 0.95) == 10
    assert frames_for_duration(sim, 1.01) == 11
    assert frames_for_duration(sim, 0.01) == 1
    longest = frames_for_duration(sim, 0.0)
    sim.check_frames(longest)
    with pytest.raises(ConfigError, match="too short"):
        sim.check_frames(longest + 1)
    with pytest.raises(ConfigError, match="too short"):
        frames_for_duration(sim, 1e5)


def test_producer_hands_out_each_frame_serialised_without_unwanted_sensors_and_topics():
    config = straight_scenario()
    reference = list(Simulator(config).run(4))
    sim = SwitchableSimulator(config, lambda: set(SENSORS) - {"radar"})
    builder = FrameMessageBuilder(sim, EPOCH_NS)
    topics = set(T.TOPIC_TYPES) - {T.TF_TOPIC, T.GT_DETECTIONS_TOPIC}
    producer = FrameProducer(sim, builder, 4, topics, serialize, lambda: set(SENSORS) - {"radar"})
    producer.start()
    try:
        for ref in reference:
            batch = producer.next_batch(timeout_s=30.0)
            assert (batch.index, batch.frame_ns) == (ref.index, builder.ns(ref.time_s))
            expected = [(None, m) for m in builder.ground_truth_messages(ref)]
            expected += [(r.sensor, m) for r in ref.readings if r.sensor != "radar"
                         for m in builder.reading_messages(r)]
            expected = [(s, m) for s, m in expected if m.topic in topics]
            assert [(m.topic, m.sensor, m.stamp_ns, m.due_ns) for m in batch.messages] == [
                (m.topic, s, m.stamp_ns, m.log_ns) for s, m in expected]
            assert [m.cdr for m in batch.messages] == [serialize(m.msg, m.msgtype) for _, m in expected]
        assert producer.next_batch(timeout_s=0.2) is None  # all frames handed out
    finally:
        producer.stop()


def test_producer_raises_the_simulators_error_in_the_consumer():
    sim = SwitchableSimulator(straight_scenario(), lambda: SENSORS)
    producer = FrameProducer(sim, FrameMessageBuilder(sim, EPOCH_NS), 10**6, set(T.TOPIC_TYPES), serialize,
                             lambda: SENSORS)
    producer.start()
    try:
        with pytest.raises(ConfigError, match="too short"):
            producer.next_batch(timeout_s=30.0)
    finally:
        producer.stop()
