"""Dataset collections: a recipe of seeded simulator runs written by `dyn-fusion make-dataset`
and read back as one dataset; hidden ground truth kept out of training targets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dyn_fusion.cli import main as cli_main
from fusion_core.config_io import ConfigError
from fusion_core.data.collection_source import CollectionSource
from fusion_core.data.open_source import open_source, split_tail
from fusion_core.data.shard_source import ShardSource
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import ModelConfig
from sim.collection import CollectionRecipe, load_recipe

RECIPE = """
name: mini
entries:
  - {scenario: clear, seed: 3, frames: 12}
  - {scenario: fog, seed: 4, frames: 10, severity: 0.6}
"""


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    (root / "mini.yaml").write_text(RECIPE)
    assert cli_main(["make-dataset", "--recipe", str(root / "mini.yaml"), "--out", str(root / "mini"), "--no-progress"]) == 0
    return root / "mini"


def test_collection_reads_as_the_concatenation_of_its_members(collection):
    index = json.loads((collection / "collection.json").read_text())
    assert index["datasets"] == ["00_clear_s3", "01_fog_s4"] and index["frames"] == 22
    source = open_source(collection)
    assert isinstance(source, CollectionSource) and len(source) == 22
    fog = ShardSource(collection / "01_fog_s4")
    np.testing.assert_array_equal(source[12].lidar_xyzi, fog[0].lidar_xyzi)
    assert source[12].condition == "fog" and source[11].condition == "clear"
    assert source.member_of(12) == "01_fog_s4"
    # The severity override reached the simulator.
    assert json.loads((collection / "01_fog_s4" / "index.json").read_text())["scenario"]["weather"]["severity"] == 0.6
    # Read blocks are the members' shards (never spanning two members).
    assert [(b.start, b.stop) for b in source.blocks()] == [(0, 12), (12, 22)]
    # Validation takes the tail of every member, so every condition is validated.
    train, val = split_tail(source, 0.2)
    assert list(val.indices) == [10, 11, 20, 21] and len(train) == 18


def test_bad_recipes_and_damaged_collections_are_clear_errors(collection, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries:\n  - {scenario: nowhere, seed: 1, frames: 5}\n")
    assert cli_main(["make-dataset", "--recipe", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "entries[0]" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="at least one run"):
        CollectionRecipe(entries=())
    (tmp_path / "long.yaml").write_text("entries:\n  - {scenario: clear, seed: 1, frames: 5000}\n")
    with pytest.raises(ConfigError, match=r"entries\[0\].*too short"):
        from sim.collection import build_collection
        build_collection(load_recipe(tmp_path / "long.yaml"), tmp_path / "long")
    # An existing collection is not overwritten without being asked.
    assert cli_main(["make-dataset", "--recipe", str(bad), "--out", str(collection)]) == 2
    # A member listed in the index but missing on disk.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "collection.json").write_text(json.dumps({"format": "dyn_fusion.collection", "datasets": ["gone"]}))
    with pytest.raises(ConfigError, match="gone"):
        open_source(broken)


def test_hidden_ground_truth_is_not_a_training_target(collection):
    source = open_source(collection)
    i = next(k for k in range(len(source)) if source[k].gt_hidden().any() and (~source[k].gt_hidden()).any())
    sample = source[i]
    config = ModelConfig()
    batch = BatchCollator(config)([sample])
    everything = BatchCollator(config, min_visibility=0.0)([sample])
    assert batch.gt_hidden[0].tolist() == sample.gt_hidden().tolist()
    assert batch.targets.n_objects < everything.targets.n_objects
    assert len(batch.gt_boxes[0]) == len(sample.gt_boxes)  # evaluation still sees every box
