"""Device profiles: the shipped YAML files load, cite their numbers, and errors name the key."""
from __future__ import annotations

import re

import pytest

from fusion_core.config_io import ConfigError
from fusion_core.energy import profile as profile_module
from fusion_core.energy.profile import (
    DeviceProfile,
    SensorPower,
    energy_profile_dir,
    load_device_profile,
)

SHIPPED = ("desktop_cpu", "jetson_orin", "drive_px2")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_by_name_and_by_path(name):
    by_name = load_device_profile(name)
    assert isinstance(by_name, DeviceProfile)
    assert by_name.name == name
    assert by_name.description
    assert by_name.compute_j_per_gflop > 0
    assert all(by_name.sensor_power.power_w(s) > 0 for s in SensorPower.sensor_names())
    assert load_device_profile(energy_profile_dir() / f"{name}.yaml") == by_name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_number_has_a_comment_above_it(name):
    """Each number is an estimate with a source; the comment right above it says which."""
    lines = (energy_profile_dir() / f"{name}.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*\w+:\s*[0-9.]+\s*$", line):
            assert lines[i - 1].strip().startswith("#"), f"{name}.yaml line {i + 1} has no comment: {line!r}"


def test_embedded_board_is_cheaper_per_flop_than_the_desktop_cpu():
    assert load_device_profile("jetson_orin").compute_j_per_gflop < load_device_profile("desktop_cpu").compute_j_per_gflop


def test_unknown_and_out_of_range_keys_are_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sensor_power:\n  sonar_w: 1.0\n")
    with pytest.raises(ConfigError, match=r"sensor_power\.sonar_w: unknown key"):
        load_device_profile(path)
    path.write_text("sensor_power:\n  lidar_w: -1\n")
    with pytest.raises(ConfigError, match=r"sensor_power\.lidar_w: -1\.0 is below the minimum 0"):
        load_device_profile(path)
    path.write_text("compute_j_per_gflop: 0\n")
    with pytest.raises(ConfigError, match=r"compute_j_per_gflop: 0\.0 is below the minimum"):
        load_device_profile(path)


def test_unknown_name_lists_the_shipped_profiles():
    with pytest.raises(ConfigError, match=r"tpu_pod: no such device profile.*drive_px2, jetson_orin"):
        load_device_profile("tpu_pod")


def test_missing_configs_folder_says_where_it_looked(tmp_path, monkeypatch):
    nowhere = tmp_path / "share" / "configs" / "energy"
    monkeypatch.setattr(profile_module, "energy_profile_dir", lambda: nowhere)
    with pytest.raises(ConfigError, match=re.escape(str(nowhere)) + " does not exist"):
        load_device_profile("jetson_orin")


def test_unknown_sensor_is_named():
    with pytest.raises(ValueError, match=r"unknown sensor 'sonar' \(known sensors: rgb, depth, lidar, radar, imu\)"):
        SensorPower().power_w("sonar")
