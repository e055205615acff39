"""Dataset formats as a registered family: every entry of ``FORMATS`` recognises a path written in
its own format (and no other format's), opens it as frames, and can be named explicitly."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fusion_core.config_io import ConfigError
from fusion_core.data.open_source import FORMATS, open_source
from sim.config import load_scenario, resolve_scenario
from sim.session import simulate_to_path

FRAMES = 6


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One small path per registered format, all from the same simulated run."""
    root = tmp_path_factory.mktemp("formats")
    config = load_scenario(resolve_scenario("default"))
    simulate_to_path(config, FRAMES, root / "shards", "shards", progress=False)
    simulate_to_path(config, FRAMES, root / "rosbag", "bag", progress=False)
    shutil.copytree(root / "shards", root / "collection" / "run_a")
    (root / "collection" / "collection.json").write_text(
        json.dumps({"format": "dyn_fusion.collection", "datasets": ["run_a"]}))
    return {name: root / name for name in ("shards", "rosbag", "collection")}


def test_every_format_has_a_fixture_here(written):
    # A new format must bring its own fixture to this test (and so its detection and reading).
    assert set(FORMATS) == set(written)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_recognises_only_its_own_paths_and_opens_them(written, name):
    fmt = FORMATS[name]
    assert fmt.detect(written[name])
    assert [other for other, path in written.items() if other != name and fmt.detect(path)] == []
    detected = open_source(written[name])
    named = open_source(written[name], format=name)
    assert type(detected) is type(named) and len(detected) >= FRAMES - 1
    frame = detected[1]
    assert frame.lidar_xyzi is not None and frame.lidar_xyzi.shape[1] == 4 and np.isfinite(frame.lidar_xyzi).all()


def test_same_frames_through_every_format(written):
    shards, bag, collection = (open_source(written[n]) for n in ("shards", "rosbag", "collection"))
    np.testing.assert_array_equal(shards[2].lidar_xyzi, collection[2].lidar_xyzi)
    assert shards[2].gt_boxes.shape == bag[2].gt_boxes.shape


def test_bad_paths_and_formats_are_one_line_errors(written, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="none of the known formats: collection") as err:
        open_source(tmp_path / "empty")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown format 'kitti' \(known: collection, shards, rosbag\)"):
        open_source(written["shards"], format="kitti")
