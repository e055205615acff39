"""fusion_node's stored reference frame (``fusion.reference_frame``): the shipped one is the frame
the node used to simulate at start-up, and a bad path is a one-line error that names it."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from fusion_core.config_io import ConfigError
from fusion_core.data.shard_format import NO_CAPTURE
from fusion_core.data.shard_source import ShardSource
from fusion_core.model.config import ModelConfig
from fusion_core.vocabulary import DETECTION_SENSORS
from ros_nodes.fusion_node import FusionNodeConfig, reference_frame
from sim.config import load_scenario, resolve_scenario
from sim.session import simulate_to_path

SHIPPED = FusionNodeConfig().reference_frame


def test_shipped_reference_frame_is_the_default_scenarios_first_full_frame(tmp_path):
    """What fusion_node simulated before it shipped the frame: 3 frames of the default scenario,
    the first with every detection sensor (if this fails after a simulator change, run
    scripts/write_reference_frame.py)."""
    simulate_to_path(load_scenario(resolve_scenario("default")), 3, tmp_path / "frames", "shards", progress=False)
    frames = ShardSource(tmp_path / "frames")
    simulated = next(s for s in frames if all(s.present(x) for x in DETECTION_SENSORS))
    stored = ShardSource(SHIPPED)[0]
    for field in dataclasses.fields(simulated):
        a, b = getattr(simulated, field.name), getattr(stored, field.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=field.name)
        else:
            assert a == b, field.name


def test_shipped_reference_frame_has_every_sensor():
    inputs = reference_frame(SHIPPED, ModelConfig())
    assert inputs.batch_size == 1 and bool(inputs.present.all()) and bool(inputs.imu_present.all())


def _one_line_naming(err: pytest.ExceptionInfo, path) -> None:
    message = str(err.value)
    assert "\n" not in message and str(path) in message and message.startswith("fusion.reference_frame: ")


def test_missing_reference_frame_is_a_one_line_config_error(tmp_path):
    path = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as err:
        reference_frame(str(path), ModelConfig())
    _one_line_naming(err, path)


@pytest.mark.parametrize("damage", ["index", "shard", "no_full_frame"])
def test_damaged_reference_frame_is_a_one_line_config_error(tmp_path, damage):
    path = tmp_path / "reference"
    shutil.copytree(SHIPPED, path)
    if damage == "index":
        (path / "index.json").write_text('{"format": "dyn_fusion.sha')
    elif damage == "shard":
        shard = path / "shard_00000.npz"
        shard.write_bytes(shard.read_bytes()[:1000])
    else:
        # the frame without its radar scan: the node needs a frame with every detection sensor
        radar = json.loads((path / "index.json").read_text())["sensors"].index("radar")
        with np.load(path / "shard_00000.npz") as npz:
            arrays = dict(npz)
        arrays["present"][0, radar] = False
        arrays["absence"][0, radar] = NO_CAPTURE
        np.savez(path / "shard_00000.npz", **arrays)
    with pytest.raises(ConfigError) as err:
        reference_frame(str(path), ModelConfig())
    _one_line_naming(err, path)
