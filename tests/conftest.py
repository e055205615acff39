"""Shared fixtures: small, fast scenario configs built from the shipped defaults."""
from __future__ import annotations

import dataclasses

import pytest

from sim.config import RoadConfig, RoadSegmentConfig, ScenarioConfig, WeatherConfig


def straight_scenario(**overrides) -> ScenarioConfig:
    """A straight 1.2 km road (headings are 0, so world and ego axes align), seed 5."""
    base = ScenarioConfig(seed=5, road=RoadConfig(segments=(RoadSegmentConfig(length_m=1200.0),)))
    return dataclasses.replace(base, **overrides)


def with_weather(config: ScenarioConfig, condition: str, severity: float = 0.75) -> ScenarioConfig:
    return dataclasses.replace(config, weather=WeatherConfig(condition=condition, severity=severity))


@pytest.fixture
def straight():
    return straight_scenario()
