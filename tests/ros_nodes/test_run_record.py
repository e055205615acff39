"""The run record: the source's published counts, the transport loss derived from them, frame statuses."""
from __future__ import annotations

import json

import pytest

from ros_nodes.run_record import RunRecorder
from ros_nodes.source_counts import decode_source_counts, encode_source_counts


def test_counts_round_trip_and_losses_are_published_minus_received():
    counts = decode_source_counts(encode_source_counts("sim_node", {"/lidar": 10, "/imu": 200, "/odom": 10}))
    assert counts.node == "sim_node" and counts.published == {"/imu": 200, "/lidar": 10, "/odom": 10}
    record = RunRecorder()
    assert record.transport_losses() == {}  # no counts from the source: nothing claimed
    record.add_source_counts(counts)
    record.received, record.role_topics = {"lidar": 8, "imu": 200}, {"lidar": "/lidar", "imu": "/imu", "radar": "/r"}
    assert record.transport_losses() == {"imu": 0, "lidar": 2, "radar": 0}


def test_the_sources_warnings_reach_the_run_record(tmp_path):
    """A bag player's warning (lying metadata.yaml) goes into drops.json, where the report reads it."""
    warning = "bag: metadata.yaml declares /lidar as sensor_msgs/msg/Image, but its storage records ..."
    counts = decode_source_counts(encode_source_counts("bag_player", {"/lidar": 3}, None, [warning]))
    assert counts.warnings == (warning,)
    assert decode_source_counts(json.dumps({"node": "sim_node", "published": {}})).warnings == ()  # optional
    record = RunRecorder()
    record.add_source_counts(counts)
    record.write(tmp_path)
    assert json.loads((tmp_path / "drops.json").read_text())["source_warnings"] == [warning]


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not JSON"),
    (json.dumps({"node": "n", "published": {}, "warnings": "one"}), "warnings must be a list"),
    (json.dumps([1, 2]), "expected"),
    (json.dumps({"node": "sim_node", "published": {"/a": -1}}), "non-negative"),
    (json.dumps({"node": "sim_node", "published": {"/a": 1.5}}), "non-negative"),
])
def test_malformed_counts_are_refused_with_the_reason(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        decode_source_counts(text)


def test_a_frame_stamped_ahead_of_the_receiver_clock_is_recorded_with_its_receive_latency():
    # a simulator faster than real time (or clock skew) makes stamp -> publish negative; the frame
    # must still be recorded (it was silently dropped as undecodable before)
    from ros_nodes import ros_io
    from ros_nodes.run_record import frame_record

    t = ros_io.types()
    kv = t["diagnostic_msgs/msg/KeyValue"]
    values = {"stamp_ns": "5", "pivot": "lidar", "gate_mode": "loss", "configuration": "all", "active_experts": "all",
              "exit_index": "2", "condition_estimate": "clear", "inference_ms": "60.0",
              "stamp_to_publish_ms": "-20.5", "receive_to_publish_ms": "70.0", "energy_j:stem:lidar": "0.01"}
    status = t["diagnostic_msgs/msg/DiagnosticStatus"](level=0, name="dyn_fusion: frame", message="", hardware_id="",
                                                       values=[kv(key=k, value=v) for k, v in values.items()])
    record = frame_record(status)
    assert record.stamp_to_publish_ms == -20.5 and record.energy.latency_ms == 70.0
