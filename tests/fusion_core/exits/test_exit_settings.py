"""Contract tests over every registered exit policy (``POLICIES``): the torch-free settings list
exactly those names, every policy builds from ``ExitSettings`` with its settings applied, says
what it lacks in one line, and the settings' ranges hold."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.exits.calibration import ExitCalibration
from fusion_core.exits.error_predictor import fit_error_predictor
from fusion_core.exits.policies import (
    POLICIES,
    ExitPolicy,
    ExitResources,
    exit_policy_from_settings,
)
from fusion_core.exits.settings import EXIT_POLICY_NAMES, ExitSettings

N_EXITS = 3
STAGE_MS = (4.0, 5.0, 6.0)


def calibration() -> ExitCalibration:
    gen = torch.Generator().manual_seed(0)
    confidences = torch.rand(40, N_EXITS, generator=gen)
    errors = (1.0 - confidences + 0.1 * torch.rand(40, N_EXITS, generator=gen)).clamp(0, 1).double()
    return ExitCalibration(confidences, errors, (1e9, 2e9, 3e9), fit_error_predictor(confidences, errors))


def everything() -> ExitResources:
    return ExitResources(calibration(), lambda: STAGE_MS)


def test_the_settings_choices_are_the_registry():
    assert EXIT_POLICY_NAMES == tuple(POLICIES)
    assert ExitSettings.__dataclass_fields__["policy"].metadata["choices"] == tuple(POLICIES)
    for name, cls in POLICIES.items():
        assert issubclass(cls, ExitPolicy) and cls.name == name


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_builds_from_settings_and_decides(name):
    settings = ExitSettings(policy=name, deadline_ms=50.0)
    policy = exit_policy_from_settings(settings, everything())
    assert isinstance(policy, POLICIES[name])
    confidences = torch.tensor([[0.2, 0.9, 0.95], [0.99, 0.99, 0.99]])
    stopped = [policy.decide(k, confidences[:, : k + 1], n_exits=N_EXITS, elapsed_ms=10.0).stop for k in range(N_EXITS)]
    assert bool(stopped[-1].all())  # the last exit always stops


def test_each_policy_takes_its_own_setting():
    resources = everything()
    build = lambda **kw: exit_policy_from_settings(ExitSettings(**kw), resources)
    assert build(policy="confidence", threshold=0.3).thresholds == 0.3
    assert build(policy="error", lam=0.7).lam == 0.7
    assert build(policy="deadline", deadline_ms=12.5).predicted_stage_ms == STAGE_MS
    cheap, dear = build(policy="budget", budget=0.5), build(policy="budget", budget=1.0)
    assert cheap.target_mean_cost < dear.target_mean_cost


def test_the_stage_times_are_measured_only_for_the_deadline_policy():
    measured = []
    resources = ExitResources(calibration(), lambda: measured.append(1) or STAGE_MS)
    for name in POLICIES:
        exit_policy_from_settings(ExitSettings(policy=name, deadline_ms=50.0), resources)
    assert measured == [1]


@pytest.mark.parametrize("settings, resources, message", [
    (ExitSettings(policy="budget"), ExitResources(), "needs gates trained with exit calibration"),
    (ExitSettings(policy="error"), ExitResources(), "needs gates trained with exit calibration"),
    (ExitSettings(policy="deadline"), everything(), "needs a deadline"),
    (ExitSettings(policy="deadline", deadline_ms=10.0), ExitResources(), "a frame to time its stages on"),
])
def test_a_policy_says_what_it_lacks(settings, resources, message):
    with pytest.raises(ConfigError, match=message):
        exit_policy_from_settings(settings, resources)


def test_exit_settings_ranges_and_choices_are_enforced():
    for f in dataclasses.fields(ExitSettings):
        if f.metadata.get("lo") is not None:
            with pytest.raises(ConfigError, match=f.name):
                ExitSettings(**{f.name: f.metadata["lo"] - 1.0})
        if f.metadata.get("hi") is not None:
            with pytest.raises(ConfigError, match=f.name):
                ExitSettings(**{f.name: f.metadata["hi"] + 1.0})
    with pytest.raises(ConfigError, match="policy"):
        ExitSettings(policy="sometimes")
    with pytest.raises(ConfigError, match="exit.threshold: 1.5 is above"):
        from_mapping(ExitSettings, {"threshold": 1.5}, "exit")
    assert from_mapping(ExitSettings, {"deadline_ms": None}).deadline_ms is None
