"""Dataset collections: several seeded simulator runs (scenarios, seeds, severities) written as
shard datasets side by side, from one recipe YAML (``configs/datasets/*.yaml``).

Layout of a collection directory::

    collection.json           {"format": "dyn_fusion.collection", "version": 1, "recipe": {...},
                               "datasets": ["00_clear_s1001", ...]}   (order = frame order)
    00_clear_s1001/           a shard dataset (docs/shard_format.md)
    ...

``fusion_core.data.open_source`` reads a collection as one dataset whose read blocks are the
member datasets' shards.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import ConfigError, load_yaml, param, to_mapping
from fusion_core.vocabulary import CONDITIONS
from sim.config import FaultConfig, ScenarioConfig
from sim.fault_mix import FaultMixConfig, sample_fault_mixes
from sim.session import load_with_seed, prepare_output, simulate_to_path
from sim.simulator import Simulator

COLLECTION_FILE = "collection.json"
COLLECTION_FORMAT = "dyn_fusion.collection"
COLLECTION_VERSION = 1


@dataclass(frozen=True)
class CollectionEntry:
    """One simulator run of a collection."""

    scenario: str = param("default", "scenario YAML path or shipped name")
    seed: int = param(0, "scenario seed of this run (distinct seeds give distinct traffic)", lo=0, hi=2**31 - 1)
    frames: int = param(100, "frames to simulate", lo=1, hi=100_000)
    severity: float | None = param(None, "weather severity override in [0, 1] (default: the scenario's)", lo=0.0, hi=1.0)
    condition: str | None = param(None, "weather condition override (default: the scenario's)", choices=(None, *CONDITIONS))
    faults: tuple[FaultConfig, ...] | None = param(None, "fault schedule replacing the scenario's (default: the scenario's)")
    label: str | None = param(None, "member name part (default: the scenario's name)")


@dataclass(frozen=True)
class CollectionRecipe:
    name: str = param("dataset", "collection name")
    description: str = param("", "one line for humans")
    entries: tuple[CollectionEntry, ...] = param((), "the runs, in frame order")
    mixes: FaultMixConfig | None = param(None, "seeded fault-mix runs after the entries (sim/fault_mix.py)")

    def __post_init__(self):
        if not self.entries and self.mixes is None:
            raise ConfigError("entries: a collection needs at least one run (entries or mixes)")

    def runs(self) -> tuple[CollectionEntry, ...]:
        """Every run: the listed entries, then one per drawn fault mix (scenario seed mixes.seed + i)."""
        if self.mixes is None:
            return self.entries
        m = self.mixes
        return (*self.entries, *(
            CollectionEntry(scenario=m.scenario, seed=m.seed + i, frames=m.frames, severity=mix.severity,
                            condition=mix.condition, faults=mix.faults, label="mix")
            for i, mix in enumerate(sample_fault_mixes(m))))

    def scenario_configs(self) -> list[ScenarioConfig]:
        """The scenario of each run with its seed (and severity, condition, faults) applied."""
        out = []
        for i, e in enumerate(self.runs()):
            try:
                config = load_with_seed(e.scenario, e.seed)
                weather = dataclasses.replace(config.weather, **({} if e.severity is None else {"severity": e.severity}),
                                              **({} if e.condition is None else {"condition": e.condition}))
                config = dataclasses.replace(config, weather=weather, **({} if e.faults is None else {"faults": e.faults}),
                                             **({} if e.label is None else {"name": e.label}))
            except ConfigError as exc:
                raise ConfigError(f"entries[{i}]: {exc}") from exc
            out.append(config)
        return out

    @property
    def n_frames(self) -> int:
        return sum(e.frames for e in self.runs())


def load_recipe(path: Path | str) -> CollectionRecipe:
    return load_yaml(CollectionRecipe, path)


def build_collection(recipe: CollectionRecipe, out: Path, *, overwrite: bool = False, threads: int = 0,
                     progress: bool = True) -> list[str]:
    """Simulate every entry of ``recipe`` into ``out``; returns the member dataset names.

    The index is written last, so an interrupted build is never mistaken for a complete one.
    """
    runs = recipe.runs()
    configs = recipe.scenario_configs()  # fails on a bad scenario before anything is written
    for i, (entry, config) in enumerate(zip(runs, configs)):
        try:
            Simulator(config).check_frames(entry.frames)
        except ConfigError as exc:
            raise ConfigError(f"entries[{i}] ({entry.scenario}): {exc}") from exc
    prepare_output(out, overwrite)
    out.mkdir(parents=True)
    names = []
    start = time.perf_counter()
    for i, (entry, config) in enumerate(zip(runs, configs)):
        name = f"{i:02d}_{config.name}_s{entry.seed}"
        summary, _ = simulate_to_path(config, entry.frames, out / name, "shards", threads=threads, progress=progress)
        names.append(name)
        if progress:
            print(f"[{i + 1}/{len(configs)}] {name}: {summary.frames} frames ({config.weather.condition}, "
                  f"severity {config.weather.severity:.2f}) in {summary.wall_s:.1f} s")
    index = {"format": COLLECTION_FORMAT, "version": COLLECTION_VERSION, "recipe": to_mapping(recipe),
             "datasets": names, "frames": recipe.n_frames, "build_s": round(time.perf_counter() - start, 1)}
    (out / COLLECTION_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return names
