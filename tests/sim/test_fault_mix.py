"""Seeded fault mixes: coverage of every fault kind and combination size, disjoint train and test
halves, faults the simulator accepts, and collections whose frames carry the mix as a group."""
from __future__ import annotations

import pytest

from fusion_core.config_io import ConfigError, load_yaml
from fusion_core.data.open_source import open_source
from fusion_core.data.sample import frame_groups
from sim.collection import CollectionRecipe, build_collection
from sim.config import FAULT_KINDS
from sim.fault_mix import APPLICABLE_SENSORS, FaultMixConfig, combination_split, sample_fault_mixes
from sim.faults import FaultSchedule


@pytest.mark.parametrize("seed", [0, 1, 77])
@pytest.mark.parametrize("split", ["all", "train", "test"])
def test_every_kind_and_every_size_is_drawn(seed, split):
    mixes = sample_fault_mixes(FaultMixConfig(seed=seed, runs=12, sizes=(1, 2, 3), split=split))
    assert len(mixes) == 12 and len({m.key for m in mixes}) == 12
    assert {f.kind for m in mixes for f in m.faults} == set(FAULT_KINDS)
    assert {len(m.faults) for m in mixes} == {1, 2, 3}
    for m in mixes:
        sensors = [f.sensor for f in m.faults]
        assert len(set(sensors)) == len(sensors)                      # one fault per sensor
        assert all(f.sensor in APPLICABLE_SENSORS[f.kind] for f in m.faults)
        FaultSchedule(m.faults)                                       # the simulator accepts them
        assert all(f.start_s == 0.0 and f.end_s > 1e3 for f in m.faults)  # active at once, whole run
        if split != "all":
            assert combination_split(m.key) == split


def test_train_and_test_never_share_a_combination_and_draws_are_seeded():
    train = sample_fault_mixes(FaultMixConfig(seed=5, runs=60, split="train"))
    test = sample_fault_mixes(FaultMixConfig(seed=5, runs=30, split="test"))
    assert not {m.key for m in train} & {m.key for m in test}
    assert sample_fault_mixes(FaultMixConfig(seed=5, runs=30, split="test")) == test
    assert sample_fault_mixes(FaultMixConfig(seed=6, runs=30, split="test")) != test


def test_impossible_draws_and_bad_settings_are_one_line_errors():
    # one condition x one kind x one size: only as many combinations as sensors the kind can hit
    with pytest.raises(ConfigError, match="only 5 of 9 distinct all combinations"):
        sample_fault_mixes(FaultMixConfig(runs=9, conditions=("clear",), kinds=("dropout",), sizes=(1,)))
    with pytest.raises(ConfigError, match="mixes.kinds.*unknown: melting"):
        FaultMixConfig(kinds=("dropout", "melting"))
    with pytest.raises(ConfigError, match="mixes.severity"):
        FaultMixConfig(severity=(0.9, 0.2))
    with pytest.raises(ConfigError, match="split"):
        FaultMixConfig(split="validation")


def test_a_collection_with_mixes_labels_its_frames_with_the_mix(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "name: m\nentries:\n  - {scenario: clear, seed: 3, frames: 4}\n"
        "mixes: {seed: 40, runs: 2, frames: 4, conditions: [night], sizes: [2]}\n")
    recipe = load_yaml(CollectionRecipe, tmp_path / "r.yaml")
    runs = recipe.runs()
    assert len(runs) == 3 and recipe.n_frames == 12 and [r.seed for r in runs[1:]] == [40, 41]
    configs = recipe.scenario_configs()
    assert configs[1].weather.condition == "night" and len(configs[1].faults) == 2
    names = build_collection(recipe, tmp_path / "out", progress=False)
    assert names[1:] == ["01_mix_s40", "02_mix_s41"]
    source = open_source(tmp_path / "out")
    mixes = sample_fault_mixes(recipe.mixes)
    frame = source[5]  # second frame of the first mix run
    expected = {f.sensor: f.kind for f in mixes[0].faults}
    assert frame.condition == "night"
    assert {s: k for s, k in frame.faults.items() if s in expected} == expected
    assert f"mix:{mixes[0].key}" in frame_groups(frame)
    assert not any(g.startswith("mix:") for g in frame_groups(source[0]))  # clear, no fault


def test_recipe_needs_entries_or_mixes():
    with pytest.raises(ConfigError, match="at least one run"):
        CollectionRecipe()


def test_few_kinds_still_fill_every_size():
    mixes = sample_fault_mixes(FaultMixConfig(runs=4, kinds=("occlusion",), sizes=(3,)))
    assert all(len(m.faults) == 3 and {f.kind for f in m.faults} == {"occlusion"} for m in mixes)


def test_the_shipped_test_recipe_draws_what_its_published_results_were_measured_on():
    # README's fault-mix table was measured on these runs; a change to the sampler that redraws
    # them must come with new results.
    from pathlib import Path

    from sim.collection import load_recipe
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "configs" / "datasets" / "fault_mix_test.yaml")
    keys = [m.key for m in sample_fault_mixes(recipe.mixes)]
    assert keys[:3] == ["clear+rgb:calibration_drift", "snow+depth:frozen+radar:noise_burst",
                        "rain+imu:dropout+lidar:latency+radar:occlusion"]
    assert len(keys) == 12
