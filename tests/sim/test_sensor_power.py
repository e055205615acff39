"""SensorPowerSwitch: the simulated sensors' power states under requests, frame by frame."""
from __future__ import annotations

import pytest

from fusion_core.vocabulary import SENSORS
from sim.sensor_power import PowerStateChange, SensorPowerSwitch


def on(sensor: str) -> PowerStateChange:
    return PowerStateChange(sensor, "on")


def test_starts_on_and_publishes_everything():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.2)
    assert switch.initial_states() == [on(s) for s in SENSORS]
    assert switch.capture_sensors() == frozenset(SENSORS)
    assert switch.begin_frame(0.0) == []
    assert switch.admit("lidar", 0.0) == (True, [])


def test_standby_takes_effect_at_the_next_frame_boundary_and_withholds_even_late_deliveries():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.2)
    switch.begin_frame(0.0)
    assert switch.request("lidar", "standby") == []  # nothing changes mid-frame ...
    assert switch.admit("lidar", 0.05) == (True, [])
    assert switch.capture_sensors() == frozenset(SENSORS) - {"lidar"}  # ... but the next frames skip it
    assert switch.begin_frame(0.1) == [PowerStateChange("lidar", "standby")]
    assert switch.state("lidar") == "standby"
    assert switch.admit("lidar", 0.1) == (False, [])
    assert switch.admit("lidar", 0.05) == (False, [])  # captured before, delivered after: not sent
    assert switch.admit("radar", 0.1) == (True, [])
    assert switch.begin_frame(0.2) == []
    assert switch.standby_frames == {"lidar": 2}


def test_wake_up_reports_warming_at_once_then_on_with_the_first_valid_capture():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.25)
    switch.request("rgb", "standby")
    switch.begin_frame(0.0)
    assert switch.request("rgb", "on") == [PowerStateChange("rgb", "warming")]  # before any boundary
    assert switch.admit("rgb", 0.05) == (False, [])
    assert switch.capture_sensors() == frozenset(SENSORS)
    assert switch.begin_frame(0.1) == []  # already reported warming
    # warm-up counts from the boundary: data from 0.1 + 0.25 = 0.35 on
    for t in (0.1, 0.2, 0.3, 0.349):
        assert switch.admit("rgb", t) == (False, [])
    assert switch.state("rgb") == "warming"
    assert switch.admit("rgb", 0.35) == (True, [on("rgb")])
    assert switch.admit("rgb", 0.36) == (True, [])
    assert switch.state("rgb") == "on"


def test_capture_time_at_the_end_of_the_warm_up_is_not_lost_to_float_rounding():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.2)
    switch.request("depth", "standby")
    switch.begin_frame(0.0)
    switch.request("depth", "on")
    switch.begin_frame(0.1)
    assert 0.3 < 0.1 + 0.2  # the warm-up ends at 0.30000000000000004
    assert switch.admit("depth", 0.3) == (True, [on("depth")])


def test_zero_warm_up_turns_on_with_the_first_capture_of_the_next_frame():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.0)
    switch.request("imu", "standby")
    switch.begin_frame(0.0)
    switch.request("imu", "on")
    assert switch.admit("imu", 0.09) == (False, [])  # still in standby until the boundary
    switch.begin_frame(0.1)
    assert switch.admit("imu", 0.1) == (True, [on("imu")])


def test_repeated_requests_are_no_ops_and_the_last_request_before_a_boundary_wins():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.2)
    assert switch.request("radar", "on") == []
    assert switch.begin_frame(0.0) == []
    switch.request("radar", "standby")
    switch.request("radar", "on")
    assert switch.begin_frame(0.1) == []  # standby then on within one frame: stays on
    assert switch.state("radar") == "on"
    switch.request("radar", "standby")
    assert switch.begin_frame(0.2) == [PowerStateChange("radar", "standby")]
    switch.request("radar", "standby")
    assert switch.begin_frame(0.3) == []
    # on (reported warming at once), then standby again before the boundary: back to standby
    assert switch.request("radar", "on") == [PowerStateChange("radar", "warming")]
    switch.request("radar", "standby")
    assert switch.capture_sensors() == frozenset(SENSORS) - {"radar"}
    assert switch.begin_frame(0.4) == [PowerStateChange("radar", "standby")]


def test_standby_while_warming_cancels_the_wake_up():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.5)
    switch.request("lidar", "standby")
    switch.begin_frame(0.0)
    switch.request("lidar", "on")
    switch.begin_frame(0.1)
    switch.request("lidar", "on")  # repeated while warming: the warm-up does not restart
    switch.begin_frame(0.2)
    assert switch.admit("lidar", 0.6) == (True, [on("lidar")])
    switch.request("lidar", "standby")
    switch.begin_frame(0.7)
    switch.request("lidar", "on")
    switch.begin_frame(0.8)
    switch.request("lidar", "standby")
    assert switch.begin_frame(0.9) == [PowerStateChange("lidar", "standby")]
    assert switch.admit("lidar", 5.0) == (False, [])


def test_unknown_requests_are_counted_and_ignored():
    switch = SensorPowerSwitch(SENSORS, warmup_s=0.2)
    assert switch.request("rgb", "off") == []
    assert switch.request("depth", "off") == []
    assert switch.request("rgb", "ON") == []
    assert switch.unknown_requests == {"off": 2, "ON": 1}
    assert switch.begin_frame(0.0) == []
    assert all(switch.state(s) == "on" for s in SENSORS)
    with pytest.raises(KeyError, match="unknown sensor 'thermal'"):
        switch.request("thermal", "on")
    with pytest.raises(ValueError, match="warmup_s"):
        SensorPowerSwitch(SENSORS, warmup_s=-1.0)
