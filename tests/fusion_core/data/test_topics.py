"""Topic names that several nodes must agree on (fusion_core.data.topics)."""
from __future__ import annotations

from fusion_core.data.topics import power_request_topic, power_state_topic


def test_power_topic_names_use_the_short_sensor_name():
    assert power_request_topic("rgb") == "/sensors/rgb/power/request"
    assert power_state_topic("lidar") == "/sensors/lidar/power/state"
