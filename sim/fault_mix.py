"""Seeded fault mixes: simulator runs that combine a weather condition with several sensor faults
active at once (night + frozen camera + radar noise burst), for training that sees what breaks
and for test collections of combinations training never drew.

A mix's *combination* is its condition plus its set of (sensor, fault kind) pairs, written as a
key such as ``night+radar:noise_burst+rgb:frozen``. Every combination falls in one of two fixed
halves of the space by a hash of its key (``TEST_SHARE`` of them are "test"): a recipe that draws
``split: train`` and one that draws ``split: test`` can never share a combination, whatever their
seeds, without either naming the other.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from fusion_core.config_io import ConfigError, check_fields, param
from fusion_core.data.sample import mix_key
from fusion_core.vocabulary import CONDITIONS, SENSORS
from sim.config import FAULT_KINDS, FaultConfig
from sim.faults import NOT_APPLICABLE

SPLITS: tuple[str, ...] = ("all", "train", "test")
TEST_SHARE = 5  # one combination in TEST_SHARE is a test combination
WHOLE_RUN_S = 1e6  # faults of a mix last the whole run (FaultConfig.end_s upper bound)
# Sensors each fault kind can hit (the simulator refuses the others).
APPLICABLE_SENSORS: dict[str, tuple[str, ...]] = {
    kind: tuple(s for s in SENSORS if (s, kind) not in NOT_APPLICABLE) for kind in FAULT_KINDS}


@dataclass(frozen=True)
class FaultMixConfig:
    """How to draw the runs of a collection's ``mixes`` section."""

    seed: int = param(0, "seed of the draw; run i also gets scenario seed seed + i", lo=0, hi=2**31 - 1_000_000)
    runs: int = param(12, "number of runs (one mix each)", lo=1, hi=10_000)
    frames: int = param(60, "frames per run", lo=1, hi=100_000)
    scenario: str = param("clear", "scenario giving road, traffic and sensors (its weather and faults are replaced)")
    conditions: tuple[str, ...] = param(CONDITIONS, "weather conditions to draw from")
    severity: tuple[float, float] = param((0.4, 0.9), "range the weather severity is drawn from", lo=0.0, hi=1.0)
    kinds: tuple[str, ...] = param(FAULT_KINDS, "fault kinds to draw from")
    sizes: tuple[int, ...] = param((1, 2, 3), "how many faults are active at once; runs cycle through them", lo=1, hi=4)
    split: str = param("all", "which half of the combination space to draw from (train and test never meet)",
                       choices=SPLITS)

    def __post_init__(self):
        check_fields(self)
        for field, values, known in (("conditions", self.conditions, CONDITIONS), ("kinds", self.kinds, FAULT_KINDS)):
            unknown = [v for v in values if v not in known]
            if not values or unknown:
                raise ConfigError(f"mixes.{field}: needs at least one of {', '.join(known)}"
                                  + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        if not self.sizes:
            raise ConfigError("mixes.sizes: needs at least one size")
        if self.severity[0] > self.severity[1]:
            raise ConfigError(f"mixes.severity: low {self.severity[0]} is above high {self.severity[1]}")


@dataclass(frozen=True)
class FaultMix:
    """One run's condition and its faults (each on its own sensor, active for the whole run)."""

    condition: str
    severity: float
    faults: tuple[FaultConfig, ...]

    @property
    def key(self) -> str:
        return mix_key(self.condition, {f.sensor: f.kind for f in self.faults})


def combination_split(key: str) -> str:
    """"test" or "train": the fixed half of the combination space ``key`` belongs to."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % TEST_SHARE
    return "test" if bucket == 0 else "train"


def _fault(rng: random.Random, sensor: str, kind: str) -> FaultConfig:
    """A whole-run fault with its strength drawn from ranges that visibly hurt the sensor."""
    return FaultConfig(
        sensor=sensor, kind=kind, start_s=0.0, end_s=WHOLE_RUN_S,
        noise_scale=round(rng.uniform(4.0, 12.0), 2),
        occluded_fraction=round(rng.uniform(0.25, 0.6), 2),
        drift_deg_per_s=round(rng.choice((-1, 1)) * rng.uniform(0.3, 1.0), 2),
        latency_ms=round(rng.uniform(60.0, 200.0), 1),
        jitter_ms=round(rng.uniform(10.0, 40.0), 1))


def sample_fault_mixes(config: FaultMixConfig) -> list[FaultMix]:
    """``config.runs`` mixes, distinct combinations from ``config.split``'s half. Sizes cycle in
    order; kinds and conditions are dealt from decks that are reshuffled, never thinned, when a draw
    is refused, so ``len(sizes)`` runs cover every size and runs holding ``len(kinds)`` faults
    between them cover every kind."""
    rng = random.Random(config.seed)
    kind_deck: list[str] = []
    condition_deck: list[str] = []
    seen: set[str] = set()
    mixes: list[FaultMix] = []
    for _ in range(200 * config.runs):
        if len(mixes) == config.runs:
            return mixes
        size = config.sizes[len(mixes) % len(config.sizes)]
        if not kind_deck:
            kind_deck = rng.sample(config.kinds, len(config.kinds))
        if not condition_deck:
            condition_deck = rng.sample(config.conditions, len(config.conditions))
        condition = condition_deck[-1]
        # the deck's top cards first, then a fresh deck's (a mix may straddle two decks); with few
        # kinds, more fresh decks, so one kind may hit several sensors (drawn only when needed, so
        # the usual draws stay as they are)
        offered = kind_deck[::-1] + rng.sample(config.kinds, len(config.kinds))
        faults: dict[str, str] = {}
        while True:
            for kind in offered:
                if len(faults) == size:
                    break
                free = [s for s in APPLICABLE_SENSORS[kind] if s not in faults]
                if free:
                    faults[rng.choice(free)] = kind
            if len(faults) == size or not any(s not in faults for k in config.kinds for s in APPLICABLE_SENSORS[k]):
                break
            offered = rng.sample(config.kinds, len(config.kinds))
        key = mix_key(condition, faults)
        if key in seen or (config.split != "all" and combination_split(key) != config.split):
            rng.shuffle(kind_deck)
            rng.shuffle(condition_deck)
            continue
        for kind in faults.values():
            if kind in kind_deck:
                kind_deck.remove(kind)
        condition_deck.pop()
        seen.add(key)
        severity = round(rng.uniform(*config.severity), 2)
        mixes.append(FaultMix(condition, severity, tuple(_fault(rng, s, k) for s, k in sorted(faults.items()))))
    if len(mixes) < config.runs:
        raise ConfigError(f"mixes: only {len(mixes)} of {config.runs} distinct {config.split} combinations "
                          "could be drawn; allow more conditions, kinds or sizes")
    return mixes
