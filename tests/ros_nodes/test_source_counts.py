"""The source's published counts and the transport loss the run record derives from them."""
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


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not JSON"),
    (json.dumps([1, 2]), "expected"),
    (json.dumps({"node": "sim_node", "published": {"/a": -1}}), "non-negative"),
    (json.dumps({"node": "sim_node", "published": {"/a": 1.5}}), "non-negative"),
])
def test_malformed_counts_are_refused_with_the_reason(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        decode_source_counts(text)
