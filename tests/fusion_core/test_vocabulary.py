"""The vocabulary is the one definition every layer reads: its specs must match the sample type,
the model's stems, the energy profiles and the simulator's config choices."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from fusion_core import vocabulary as V
from fusion_core.data.sample import CameraGeometry, FusionSample
from fusion_core.energy.profile import SensorPower
from fusion_core.model.config import ModelConfig
from fusion_core.model.detector import FusionDetector
from fusion_core.model.stems import STEMS

ROOT = Path(__file__).resolve().parents[2]


def _sample() -> FusionSample:
    cam = CameraGeometry.from_arrays(4, 2, 1.0, 1.0, 2.0, 1.0, np.eye(4))
    return FusionSample(time_s=0.0, lidar_xyzi=np.zeros((1, 4), np.float32), radar_xyzdr=np.zeros((1, 5), np.float32),
                        depth_m=np.ones((2, 4), np.float32), depth_camera=cam, rgb=np.zeros((2, 4, 3), np.uint8),
                        rgb_camera=cam, imu=np.zeros((3, 6), np.float32))


def test_every_spec_names_real_sample_fields_and_stems():
    fields = {f.name for f in dataclasses.fields(FusionSample)}
    for spec in V.SENSOR_SPECS.values():
        assert set(spec.fields) <= fields, spec
        assert spec.stem in STEMS, spec
        assert set(spec.absence_reasons) <= set(V.ABSENCE_REASONS), spec
    assert V.DETECTION_SENSORS == ("rgb", "depth", "lidar", "radar")
    assert V.SENSORS == (*V.DETECTION_SENSORS, "imu")
    assert V.CAMERAS == ("rgb", "depth")


@pytest.mark.parametrize("sensor", V.SENSORS)
def test_without_clears_exactly_the_spec_fields(sensor):
    sample = _sample()
    gone = sample.without(sensor, V.TRAINING_DROPOUT)
    spec = V.SENSOR_SPECS[sensor]
    assert not gone.present(sensor) and gone.absence == {sensor: V.TRAINING_DROPOUT}
    for f in dataclasses.fields(FusionSample):
        if f.name in spec.fields:
            assert getattr(gone, f.name) is None
        elif f.name != "absence":
            assert getattr(gone, f.name) is getattr(sample, f.name)


def test_the_detector_builds_one_stem_per_detection_sensor():
    detector = FusionDetector(ModelConfig())
    assert set(detector.stems) == set(V.DETECTION_SENSORS)


def test_energy_profiles_price_every_sensor():
    assert SensorPower.sensor_names() == V.SENSORS


def test_names_are_not_spelled_out_again():
    """The sensor and condition tuples appear only in the vocabulary (tests excluded)."""
    literal = re.compile(r'\(\s*"rgb",\s*"depth",\s*"lidar",\s*"radar"|\(\s*"clear",\s*"night",\s*"rain"')
    found = [str(p.relative_to(ROOT)) for top in ("fusion_core", "sim", "ros_nodes", "dyn_fusion")
             for p in (ROOT / top).rglob("*.py") if p.name != "vocabulary.py" and literal.search(p.read_text())]
    assert found == []


def test_ledger_component_names_are_built_by_the_vocabulary():
    """Keys like "stem:lidar" or "head:entry" are spelled by the vocabulary's functions, so the
    cost table, the runner and the detector's call counts cannot drift apart."""
    spelled = re.compile(r'f"(stem|expert|exit|gate):\{|"(stem|gate):[a-z]+"|"head:entry"|\["context"\]')
    found = [f"{p.relative_to(ROOT)}:{n}" for top in ("fusion_core", "ros_nodes", "dyn_fusion", "benchmarks")
             for p in (ROOT / top).rglob("*.py") if p.name != "vocabulary.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if spelled.search(line)]
    assert found == []


def test_component_names():
    assert V.stem_component("lidar") == "stem:lidar"
    assert V.expert_component("all") == "expert:all"
    assert V.exit_component(2) == "exit:2"
    assert V.gate_component("loss") == "gate:loss"
    assert V.sensor_component("radar").startswith(V.SENSOR_COMPONENT_PREFIX)
