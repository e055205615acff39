"""Strict config loading: every error names the key, the file and what was wrong."""
from __future__ import annotations

import re

import pytest

from fusion_core.config_io import ConfigError, from_mapping, load_yaml, to_mapping
from sim.config import ScenarioConfig, load_scenario, resolve_scenario, scenario_dir


def _load(tmp_path, text: str) -> ScenarioConfig:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_unknown_key_is_named_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"sensors\.lidar\.beamz: unknown key"):
        _load(tmp_path, "sensors:\n  lidar:\n    beamz: 32\n")


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"sensors\.lidar\.beams: expected an integer, got str 'many'"):
        _load(tmp_path, "sensors:\n  lidar:\n    beams: many\n")
    with pytest.raises(ConfigError, match=r"weather\.severity: expected a number"):
        _load(tmp_path, "weather:\n  severity: [1]\n")
    with pytest.raises(ConfigError, match=r"road\.segments: expected a list"):
        _load(tmp_path, "road:\n  segments: 5\n")


def test_out_of_range_and_bad_choice_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"weather\.severity: 1\.5 is above the maximum 1"):
        _load(tmp_path, "weather:\n  severity: 1.5\n")
    with pytest.raises(ConfigError, match=r"sensors\.imu\.rate_hz: 50\.0 is below the minimum 100"):
        _load(tmp_path, "sensors:\n  imu:\n    rate_hz: 50\n")
    with pytest.raises(ConfigError, match=r"weather\.condition: 'hail' is not one of clear, night"):
        _load(tmp_path, "weather:\n  condition: hail\n")
    with pytest.raises(ConfigError, match=r"faults\[0\]\.sensor: 'sonar' is not one of"):
        _load(tmp_path, "faults:\n  - {sensor: sonar, kind: dropout, start_s: 0, end_s: 1}\n")


def test_cross_field_errors(tmp_path):
    with pytest.raises(ConfigError, match="end_s .* must be after start_s"):
        _load(tmp_path, "faults:\n  - {sensor: lidar, kind: dropout, start_s: 2, end_s: 1}\n")
    from sim.simulator import Simulator

    config = _load(tmp_path, "faults:\n  - {sensor: imu, kind: occlusion, start_s: 0, end_s: 1}\n")
    with pytest.raises(ConfigError, match=r"faults\[0\]\.kind: occlusion does not apply to sensor imu"):
        Simulator(config)


def test_bad_yaml_and_missing_file_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("weather: {condition: fog\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(ScenarioConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not_a_scenario: no such scenario file .*shipped scenarios: .*fog"):
        resolve_scenario("not_a_scenario")


def test_every_shipped_scenario_loads_and_round_trips():
    paths = sorted(scenario_dir().glob("*.yaml"))
    names = {p.stem for p in paths}
    assert {"default", "clear", "night", "rain", "fog", "snow", "glare", "faults"} <= names
    for path in paths:
        config = load_scenario(path)
        assert from_mapping(ScenarioConfig, to_mapping(config)) == config
    assert load_scenario(resolve_scenario("faults")).faults


def test_road_geometry_that_folds_over_itself_is_refused(tmp_path):
    from sim.simulator import Simulator

    tight = _load(tmp_path, "road:\n  segments:\n    - {length_m: 50}\n    - {length_m: 300, curvature_1pm: 0.1}\n")
    with pytest.raises(ConfigError, match=r"road\.segments\[1\]\.curvature_1pm: radius 10\.0 m is tighter"):
        Simulator(tight)
    # A full circle of radius 50 m: every bend is wide enough, but the road meets itself.
    loop = _load(tmp_path, "road:\n  segments:\n    - {length_m: 400, curvature_1pm: 0.02}\n    - {length_m: 500}\n")
    with pytest.raises(ConfigError, match=r"road\.segments: the road comes back within"):
        Simulator(loop)


def test_runs_longer_than_the_road_are_refused():
    from sim.session import load_with_seed
    from sim.simulator import Simulator

    sim = Simulator(load_with_seed("default", None))
    with pytest.raises(ConfigError, match=r"road\.segments: the road .* is too short for 20000 frames"):
        list(sim.run(20000))


@pytest.mark.parametrize("content, message", [
    # an "anchor bomb": nine aliases per level, nine levels: 9^9 values once expanded
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join(['*' + chr(97 + k)] * 9)}]\n" for k in range(8)),
     "aliases expand to more than"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 100 levels"),
    (b"name: caf\xe9\n", "not UTF-8 text (byte 9)"),
    ("a: [1, 2\n", "not valid YAML"),
])
def test_hostile_yaml_is_a_one_line_error_without_expanding_it(tmp_path, content, message):
    import tracemalloc

    from fusion_core.config_io import read_yaml
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            read_yaml(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert peak < 200e6  # the bomb is measured, not built (it would take gigabytes)


def test_yaml_with_ordinary_aliases_still_loads(tmp_path):
    from fusion_core.config_io import read_yaml
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: [1, 2]}\nuse: *b\nmore: [*b, *b]\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": [1, 2]}, "use": {"x": 1, "y": [1, 2]},
                               "more": [{"x": 1, "y": [1, 2]}] * 2}
