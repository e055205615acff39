"""Command-line flags generated from the settings dataclasses: every field has its flag, the
README's flag names still parse to the same settings, bad values name the flag, and building the
parser imports no torch (``dyn-fusion --help`` stays fast)."""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from dyn_fusion.cli import build_parser
from dyn_fusion.cli_dynamic import GATE_FLAG_ALIASES
from dyn_fusion.settings_flags import (
    add_settings_options,
    flag_name,
    settings_from_args,
)
from fusion_core.config_io import ConfigError, parameter_names
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.settings import GateSettings

SETTINGS = (GateSettings, ExitSettings)


def evaluate(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["evaluate", "--checkpoint", "m.pt", "--data", "d", "--json", "o.json", *flags])


def given(cls, field: dataclasses.Field) -> list[str]:
    """The flag of ``field`` with a valid value that is not its default."""
    parameter = parameter_names(cls)[field.name]
    if field.type in (bool, "bool"):
        return [flag_name(parameter)]
    choices, lo, hi = field.metadata.get("choices"), field.metadata.get("lo"), field.metadata.get("hi")
    if choices:
        value = next(c for c in choices if c != field.default)
    elif hi is not None:
        value = (lo + hi) // 2 if field.type in (int, "int") else (lo + hi) / 2
    else:
        value = (lo or 0) + 1 if field.default is None else field.default + 1
    assert value != field.default
    return [flag_name(parameter), str(value)]


@pytest.mark.parametrize("cls", SETTINGS)
def test_every_field_has_a_flag_on_evaluate(cls):
    for field in dataclasses.fields(cls):
        args = evaluate(*given(cls, field))
        assert getattr(settings_from_args(args, cls), field.name) != getattr(cls(), field.name), field.name
    assert settings_from_args(evaluate(), cls) == cls()  # nothing given: the class's defaults


def test_compare_has_every_exit_flag():
    for field in dataclasses.fields(ExitSettings):
        args = build_parser().parse_args(["compare", "--checkpoint", "m.pt", "--data", "d", "--out", "o",
                                          *given(ExitSettings, field)])
        assert getattr(settings_from_args(args, ExitSettings), field.name) != getattr(ExitSettings(), field.name)


def test_the_readme_flags_still_parse():
    args = evaluate("--gate", "loss", "--lam", "30", "--k", "3", "--gamma", "0.25", "--exit-policy", "budget",
                    "--exit-budget", "0.6", "--exit-threshold", "0.5", "--exit-lam", "0.1", "--deadline-ms", "60")
    assert settings_from_args(args, GateSettings) == GateSettings(mode="loss", k=3, gamma=0.25, lam_per_j=30.0)
    assert settings_from_args(args, ExitSettings) == ExitSettings(policy="budget", threshold=0.5, budget=0.6,
                                                                  lam=0.1, deadline_ms=60.0)
    long = evaluate("--gate-mode", "loss", "--lam-per-j", "30", "--price-sensors")
    assert settings_from_args(long, GateSettings) == GateSettings(mode="loss", lam_per_j=30.0, price_sensors=True)
    assert set(GATE_FLAG_ALIASES) <= {f.name for f in dataclasses.fields(GateSettings)}


def test_given_flags_lie_over_a_base_and_bad_values_name_the_flag():
    parser = argparse.ArgumentParser()
    add_settings_options(parser, GateSettings, {"mode": "--gate"})
    base = GateSettings(mode="loss", lam_per_j=5.0)
    assert settings_from_args(parser.parse_args(["--k", "1"]), GateSettings, base) == GateSettings("loss", 1, 0.5, 5.0)
    with pytest.raises(ConfigError, match="--k: 0 is below the minimum 1"):
        settings_from_args(parser.parse_args(["--k", "0"]), GateSettings)
    with pytest.raises(ConfigError, match="--exit-threshold: 2.0 is above"):
        settings_from_args(evaluate("--exit-threshold", "2"), ExitSettings)
    with pytest.raises(SystemExit):  # argparse refuses a mode that is not registered
        parser.parse_args(["--gate", "teleport"])


def test_building_the_parser_imports_no_torch():
    probe = "import sys; from dyn_fusion.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
