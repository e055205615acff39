"""Weather makes the sensors complementary: measured effects against clear weather, same world."""
from __future__ import annotations

import numpy as np
import pytest

from sim.simulator import Simulator
from tests.conftest import straight_scenario, with_weather
from tests.sim.helpers import readings_of

FRAMES = 8


def _frames(condition: str, severity: float = 0.75):
    config = straight_scenario() if condition == "clear" else with_weather(straight_scenario(), condition, severity)
    return list(Simulator(config).run(FRAMES))


@pytest.fixture(scope="module")
def clear():
    return _frames("clear")


def _lidar_stats(frames):
    ranges = np.concatenate([np.linalg.norm(r.data[:, :3], axis=1) for r in readings_of(frames, "lidar")])
    count = np.mean([len(r.data) for r in readings_of(frames, "lidar")])
    return np.percentile(ranges, 99), count


def _radar_count(frames):
    return np.mean([len(r.data) for r in readings_of(frames, "radar")])


def _luminance(frames):
    return np.mean([r.data.mean() for r in readings_of(frames, "rgb")])


def _depth_valid(frames):
    return np.mean([np.isfinite(r.data).mean() for r in readings_of(frames, "depth")])


def test_fog_collapses_lidar_range_but_not_radar(clear):
    fog = _frames("fog")
    clear_range, clear_count = _lidar_stats(clear)
    fog_range, fog_count = _lidar_stats(fog)
    assert fog_range < 0.6 * clear_range, (fog_range, clear_range)
    assert fog_count < 0.8 * clear_count, (fog_count, clear_count)
    assert 0.75 < _radar_count(fog) / _radar_count(clear) < 1.33
    assert _depth_valid(fog) < 0.7 * _depth_valid(clear)


def test_night_darkens_only_the_camera(clear):
    night = _frames("night")
    assert _luminance(night) < 0.5 * _luminance(clear)
    clear_range, clear_count = _lidar_stats(clear)
    night_range, night_count = _lidar_stats(night)
    assert abs(night_count / clear_count - 1) < 0.02
    assert abs(_depth_valid(night) / _depth_valid(clear) - 1) < 0.05
    assert 0.75 < _radar_count(night) / _radar_count(clear) < 1.33


def test_glare_blinds_depth_and_washes_out_rgb(clear):
    glare = _frames("glare")
    assert _depth_valid(glare) < 0.3 * _depth_valid(clear)
    # Washed out: brighter and with less contrast between pixels.
    contrast = lambda fr: np.mean([r.data.std() for r in readings_of(fr, "rgb")])
    assert _luminance(glare) > _luminance(clear) and contrast(glare) < contrast(clear)
    assert abs(_lidar_stats(glare)[1] / _lidar_stats(clear)[1] - 1) < 0.02


def _airborne_returns(frames, max_range_m: float) -> float:
    """Mean LiDAR returns per scan floating in the air near the sensor: above the ground and in
    no ground-truth box (drops, flakes). Clear air has (almost) none."""
    from fusion_core.boxes import points_in_boxes
    from sim.calibration import rig_calibration
    from sim.geometry import apply

    base_from_lidar = rig_calibration(straight_scenario().sensors)["lidar"].base_from_sensor
    counts = []
    for f in frames:
        pts = f.latest("lidar").data
        near = pts[np.linalg.norm(pts[:, :3], axis=1) < max_range_m]
        base = apply(base_from_lidar, near[:, :3])
        in_box = points_in_boxes(base, f.gt_boxes, margin_m=0.3).any(1)
        counts.append(np.sum((base[:, 2] > 0.3) & ~in_box))
    return float(np.mean(counts))


@pytest.mark.parametrize("condition", ["rain", "snow"])
def test_precipitation_adds_spurious_near_lidar_returns(clear, condition):
    wet = _frames(condition)
    intensity = lambda fr: np.concatenate([r.data[:, 3] for r in readings_of(fr, "lidar")])
    clear_air, wet_air = _airborne_returns(clear, 6.0), _airborne_returns(wet, 6.0)
    assert clear_air < 5 and wet_air > clear_air + 30, (clear_air, wet_air)
    assert np.mean(intensity(wet) < 15) > np.mean(intensity(clear) < 15)
    assert 0.7 < _radar_count(wet) / _radar_count(clear) < 1.6


def test_conditions_change_the_rgb_image(clear):
    base = readings_of(clear, "rgb")[0].data.astype(float)
    for condition in ("rain", "fog", "snow"):
        img = readings_of(_frames(condition), "rgb")[0].data.astype(float)
        assert np.abs(img - base).mean() > 10, condition
        assert img.std() < base.std(), condition  # contrast falls
