"""Sensor power gating on synthetic 10 Hz frame sequences (no model: the gate's needs are scripted)."""
from __future__ import annotations

import dataclasses

import pytest

from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.runtime.power_gating import (
    PowerCommand,
    PowerGatingConfig,
    SensorPowerManager,
)

RATE_HZ = 10
CONFIG = PowerGatingConfig(enabled=True, standby_after_s=2.0, recheck_period_s=10.0, recheck_duration_s=1.0,
                           wake_on_context_change=True, always_on=("imu",), warmup_s=0.2)


def frame_times(duration_s: float):
    """Frame stamps 0, 0.1, ... duration_s (i / RATE_HZ keeps whole seconds exact)."""
    return [i / RATE_HZ for i in range(round(duration_s * RATE_HZ) + 1)]


def run(manager: SensorPowerManager, duration_s: float, needed=("rgb", "radar"), condition="clear", start_s=0.0):
    """Drive the manager like the fusion node: the gate needs ``needed`` whenever they are available."""
    for t in frame_times(duration_s):
        t = start_s + t
        available = manager.available_sensors(t)
        manager.update(t, set(needed) & available, condition)


def commands_for(manager: SensorPowerManager, sensor: str) -> list[tuple[float, str, str]]:
    return [(t, c.state, c.reason) for t, c in manager.history if c.sensor == sensor]


def test_unused_sensor_gets_exactly_one_standby_command():
    manager = SensorPowerManager(CONFIG)
    run(manager, 5.0)
    assert commands_for(manager, "lidar") == [(2.0, "standby", "unused_for_2.0s")]
    assert commands_for(manager, "depth") == [(2.0, "standby", "unused_for_2.0s")]
    assert commands_for(manager, "rgb") == commands_for(manager, "radar") == []
    assert manager.state("lidar") == "standby"
    assert manager.available_sensors(5.0) == {"rgb", "radar", "imu"}


def test_standby_sensor_is_rechecked_every_period_and_goes_back_if_still_unused():
    manager = SensorPowerManager(CONFIG)
    run(manager, 35.0)
    lidar = commands_for(manager, "lidar")
    back = "unused_during_recheck_1.0s"
    assert lidar == [(2.0, "standby", "unused_for_2.0s"),
                     (12.0, "on", "periodic_recheck"), (13.0, "standby", back),
                     (22.0, "on", "periodic_recheck"), (23.0, "standby", back),
                     (32.0, "on", "periodic_recheck"), (33.0, "standby", back)]


def test_recheck_the_gate_takes_keeps_the_sensor_on():
    manager = SensorPowerManager(CONFIG)
    run(manager, 11.9)                          # lidar in standby since 2.0
    run(manager, 10.0, needed=("rgb", "radar", "lidar"), start_s=12.0)  # the gate now wants lidar
    assert commands_for(manager, "lidar") == [(2.0, "standby", "unused_for_2.0s"), (12.0, "on", "periodic_recheck")]
    assert manager.state("lidar") == "on"
    # ... and when the gate stops using it, the normal standby_after_s hold applies again.
    run(manager, 3.0, start_s=22.1)
    assert commands_for(manager, "lidar")[-1] == (pytest.approx(24.0), "standby", "unused_for_2.0s")


def test_context_change_wakes_every_standby_sensor():
    manager = SensorPowerManager(CONFIG)
    run(manager, 5.0)
    commands = manager.update(5.1, {"rgb", "radar"}, "fog")
    assert sorted(commands, key=lambda c: c.sensor) == [PowerCommand("depth", "on", "context_change:fog"),
                                                        PowerCommand("lidar", "on", "context_change:fog")]
    assert manager.state("lidar") == manager.state("depth") == "warming"
    # Unused during the check: back to standby after recheck_duration_s, not standby_after_s.
    run(manager, 1.0, condition="fog", start_s=5.2)
    t, state, reason = commands_for(manager, "lidar")[-1]
    assert (t, state, reason) == (pytest.approx(6.1), "standby", "unused_during_recheck_1.0s")
    # The same condition again is no change; a sensor newly reported lost is.
    assert manager.update(6.3, {"rgb", "radar"}, "fog") == []
    commands = manager.update(6.4, {"radar"}, "fog", lost={"rgb"})
    assert {c.sensor for c in commands} == {"depth", "lidar"}
    assert {c.reason for c in commands} == {"sensor_lost:rgb"}


def test_sensor_missing_because_it_is_in_standby_is_not_a_context_change():
    manager = SensorPowerManager(CONFIG)
    run(manager, 5.0)
    # The node reports lidar absent: we switched it off, so nothing wakes.
    assert manager.update(5.1, {"rgb", "radar"}, "clear", lost={"lidar"}) == []


def test_no_context_wake_when_disabled_in_config():
    manager = SensorPowerManager(dataclasses.replace(CONFIG, wake_on_context_change=False))
    run(manager, 5.0)
    assert manager.update(5.1, {"rgb", "radar"}, "fog") == []


def test_context_change_waits_until_the_new_condition_holds():
    manager = SensorPowerManager(dataclasses.replace(CONFIG, context_change_min_s=0.5))
    run(manager, 5.0)                                   # lidar and depth in standby since 2.0
    # A one- or two-frame flicker of the estimate wakes nothing ...
    for t, condition in ((5.1, "night"), (5.2, "clear"), (5.3, "glare"), (5.4, "glare"), (5.5, "clear")):
        assert manager.update(t, {"rgb", "radar"}, condition) == []
    # ... another estimate in between restarts the wait ...
    for t, condition in ((5.6, "fog"), (5.7, "fog"), (5.8, "snow"), (5.9, "fog"), (6.0, "fog"), (6.1, "fog"),
                         (6.2, "fog"), (6.3, "fog")):
        assert manager.update(t, {"rgb", "radar"}, condition) == []
    # ... and a condition estimated on every frame for 0.5 s wakes every standby sensor.
    commands = manager.update(6.4, {"rgb", "radar"}, "fog")
    assert {(c.sensor, c.state, c.reason) for c in commands} == {("depth", "on", "context_change:fog"),
                                                               ("lidar", "on", "context_change:fog")}
    assert manager.update(6.5, {"rgb", "radar"}, "fog") == []  # fog is now the remembered condition
    # A newly lost sensor still wakes at once.
    run(manager, 1.0, condition="fog", start_s=6.6)      # lidar and depth back in standby after the check
    assert manager.state("lidar") == "standby"
    commands = manager.update(7.7, {"radar"}, "fog", lost={"rgb"})
    assert {c.reason for c in commands} == {"sensor_lost:rgb"}


def test_context_change_wakes_on_its_first_frame_by_default():
    assert CONFIG.context_change_min_s == 0.0  # the default: no wait
    manager = SensorPowerManager(CONFIG)
    run(manager, 5.0)
    manager.update(5.1, {"rgb", "radar"}, "night")        # a single frame of night ...
    run(manager, 2.0, condition="clear", start_s=5.2)
    # ... wakes at once (clear at 5.2 is a change too, but nothing stands by then)
    assert [(t, c.sensor, c.reason) for t, c in manager.history if c.state == "on"] == [
        (5.1, "depth", "context_change:night"), (5.1, "lidar", "context_change:night")]


def test_always_on_sensors_never_stand_by():
    manager = SensorPowerManager(dataclasses.replace(CONFIG, always_on=("imu", "lidar")))
    run(manager, 60.0)
    assert commands_for(manager, "imu") == commands_for(manager, "lidar") == []
    assert manager.standby_seconds["imu"] == manager.standby_seconds["lidar"] == 0.0
    assert commands_for(manager, "depth")[0] == (2.0, "standby", "unused_for_2.0s")


def test_needed_sensor_in_standby_is_woken_and_warms_up():
    manager = SensorPowerManager(CONFIG)
    run(manager, 5.0)
    assert manager.update(5.1, {"rgb", "lidar"}, "clear") == [PowerCommand("lidar", "on", "needed")]
    assert manager.state("lidar") == "warming"
    # Unavailable for warmup_s after the wake, available from 5.1 + 0.2 on.
    assert "lidar" not in manager.available_sensors(5.2)
    assert "lidar" in manager.available_sensors(5.1 + CONFIG.warmup_s)
    manager.update(5.3, {"rgb", "lidar"}, "clear")
    assert manager.state("lidar") == "on"


def test_rechecked_sensor_is_unavailable_during_warmup():
    manager = SensorPowerManager(CONFIG)
    run(manager, 11.9)
    manager.update(12.0, {"rgb", "radar"}, "clear")
    assert "lidar" not in manager.available_sensors(12.1)
    assert "lidar" in manager.available_sensors(12.0 + CONFIG.warmup_s)


def test_standby_seconds_add_up_over_a_minute():
    cfg, duration_s = CONFIG, 60.0
    manager = SensorPowerManager(cfg)
    run(manager, duration_s)
    first_standby_s = cfg.standby_after_s
    wakes = []
    t = first_standby_s + cfg.recheck_period_s
    while t < duration_s:
        wakes.append(t)
        t += cfg.recheck_period_s
    awake_for_checks_s = sum(min(cfg.recheck_duration_s, duration_s - w) for w in wakes)
    expected = duration_s - first_standby_s - awake_for_checks_s   # 60 - 2 - 5 x 1 = 53
    assert len(wakes) == 5
    assert manager.standby_seconds["lidar"] == pytest.approx(expected, abs=1e-9)
    assert manager.standby_seconds["depth"] == pytest.approx(expected, abs=1e-9)
    assert manager.standby_seconds["rgb"] == manager.standby_seconds["imu"] == 0.0


def test_disabled_config_never_commands():
    manager = SensorPowerManager(dataclasses.replace(CONFIG, enabled=False))
    run(manager, 30.0)
    assert manager.update(30.1, set(), "fog", lost={"rgb"}) == []
    assert manager.history == []
    assert manager.available_sensors(30.1) == {"rgb", "depth", "lidar", "radar", "imu"}
    assert all(manager.state(s) == "on" for s in manager.sensors)
    assert set(manager.standby_seconds.values()) == {0.0}


def test_time_going_backwards_raises():
    manager = SensorPowerManager(CONFIG)
    manager.update(1.0, {"rgb"}, "clear")
    manager.update(1.0, {"rgb"}, "clear")  # a repeated stamp is fine
    with pytest.raises(ValueError, match="backwards"):
        manager.update(0.9, {"rgb"}, "clear")
    with pytest.raises(ValueError, match="backwards"):
        manager.available_sensors(0.5)


def test_unknown_sensors_raise():
    with pytest.raises(ValueError, match="sonar"):
        SensorPowerManager(CONFIG, sensors=("rgb", "sonar"))
    manager = SensorPowerManager(CONFIG, sensors=("rgb", "lidar"))
    with pytest.raises(ValueError, match="radar"):
        manager.update(0.0, {"radar"}, None)
    with pytest.raises(ValueError, match="depth"):
        manager.state("depth")


@pytest.mark.parametrize("changes, key", [
    ({"standby_after_s": 0.0}, "standby_after_s"),
    ({"recheck_period_s": -1.0}, "recheck_period_s"),
    ({"recheck_duration_s": 0.1, "warmup_s": 0.2}, "recheck_duration_s"),
    ({"recheck_period_s": 1.0, "recheck_duration_s": 1.0}, "recheck_period_s"),
    ({"always_on": ("imu", "sonar")}, "always_on"),
    ({"context_change_min_s": -0.1}, "context_change_min_s"),
])
def test_bad_config_raises(changes, key):
    with pytest.raises(ConfigError, match=key):
        dataclasses.replace(CONFIG, **changes)


def test_config_loads_strictly_from_a_mapping():
    cfg = from_mapping(PowerGatingConfig, {"enabled": True, "always_on": ["imu", "radar"], "warmup_s": 0.5})
    assert cfg.always_on == ("imu", "radar") and cfg.warmup_s == 0.5
    with pytest.raises(ConfigError, match="warmup_s"):
        from_mapping(PowerGatingConfig, {"warmup_s": 120.0})
