"""Contact sheet rendering on real simulator frames, including sensor dropouts."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from fusion_core.vocabulary import SENSORS
from sim.config import FaultConfig, ScenarioConfig, WeatherConfig
from sim.preview import render_contact_sheet
from sim.simulator import Simulator

# Pixel box (rows, cols) inside the LiDAR bird's-eye panel, away from its title and legend.
LIDAR_PANEL = (slice(400, 600), slice(560, 940))
NO_DATA_GREY = np.array([0xEE, 0xEE, 0xEE]) / 255.0


def _render(cfg: ScenarioConfig, n: int, out):
    sim = Simulator(cfg)
    frames = list(sim.run(n))
    return frames, render_contact_sheet(frames, sim, out)


def _grey_fraction(img: np.ndarray) -> float:
    patch = img[LIDAR_PANEL][..., :3]
    return float(np.all(np.abs(patch - NO_DATA_GREY) < 1e-3, axis=-1).mean())


def _check_png(path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 20_000
    img = imread(path)
    assert img.shape[:2] == (900, 1600)
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not blank
    assert (rgb.reshape(-1, 3).std(axis=0) > 0.05).all()  # colour content in every channel
    return img


def test_contact_sheet_normal(tmp_path):
    frames, out = _render(ScenarioConfig(name="preview_test"), 3, tmp_path / "sheet.png")
    assert out == tmp_path / "sheet.png"
    img = _check_png(out)
    assert frames[-1].latest("lidar") is not None
    assert _grey_fraction(img) < 0.05  # the BEV panel is drawn, not the no-data placeholder


def test_contact_sheet_lidar_dropout_on_last_frame(tmp_path):
    cfg = ScenarioConfig(name="preview_dropout", weather=WeatherConfig(condition="rain"),
                         faults=(FaultConfig(sensor="lidar", kind="dropout", start_s=0.2, end_s=1.0),))
    frames, out = _render(cfg, 3, tmp_path / "sub" / "sheet.png")  # parent folder is created
    assert frames[-1].latest("lidar") is None and frames[0].latest("lidar") is not None
    img = _check_png(out)
    assert _grey_fraction(img) > 0.8  # the LiDAR panel is the "no data" placeholder


def test_contact_sheet_with_every_sensor_missing(tmp_path):
    faults = tuple(FaultConfig(sensor=s, kind="dropout", start_s=0.0, end_s=1.0) for s in SENSORS)
    frames, out = _render(ScenarioConfig(faults=faults), 1, tmp_path / "sheet.png")
    assert not frames[-1].readings
    img = _check_png(out)
    assert _grey_fraction(img) > 0.8


def test_contact_sheet_needs_frames(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        render_contact_sheet([], Simulator(ScenarioConfig()), tmp_path / "x.png")
