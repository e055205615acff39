"""A small simulated shard dataset shared by the model and training tests (built once)."""
from __future__ import annotations

import pytest

from sim.config import load_scenario, resolve_scenario
from sim.session import simulate_to_path

TINY_FRAMES = 100


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """100 frames (10 s) of the default scenario as training shards."""
    out = tmp_path_factory.mktemp("data") / "default_shards"
    simulate_to_path(load_scenario(resolve_scenario("default")), TINY_FRAMES, out, "shards", progress=False)
    return out
