"""One builder for a ready :class:`DynamicFusion`: the CLI (evaluate --gate, compare), fusion_node
and the benchmarks all assemble their runner here, so the cost table, the exit policy (with the
deadline policy's stage timing) and the warm-up are wired the same way everywhere.

Both measurements run on a *reference frame*: one frame (batch 1) with every detection sensor,
so every stem, expert and exit has a cost and a time. :func:`reference_inputs` picks one from a
dataset; fusion_node reads a stored one.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fusion_core.config_io import ConfigError
from fusion_core.data.sample import FusionSample
from fusion_core.energy.profile import DeviceProfile, load_device_profile
from fusion_core.exits.policies import (
    ExitPolicy,
    ExitResources,
    exit_policy_from_settings,
)
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.modules import GateModules, load_gates
from fusion_core.gates.settings import GateSettings
from fusion_core.model.batch import BatchCollator
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import ModelInputs
from fusion_core.runtime.cost_table import measure_cost_table
from fusion_core.runtime.dynamic_fusion import DynamicFusion
from fusion_core.runtime.stage_timing import measure_stage_ms
from fusion_core.training.checkpoint import load_detector
from fusion_core.vocabulary import DETECTION_SENSORS


def reference_inputs(source: Sequence[FusionSample], frames: Sequence[int], detector: FusionDetector,
                     where: str | Path) -> ModelInputs:
    """ModelInputs (batch 1) of the first of ``frames`` of ``source`` with every detection sensor;
    ConfigError naming ``where`` (the data) if none has."""
    full = next((i for i in frames if all(source[i].present(s) for s in DETECTION_SENSORS)), None)
    if full is None:
        raise ConfigError(f"{where}: no frame has every detection sensor; the cost table needs one")
    return BatchCollator(detector.config)([source[full]]).inputs


def build_exit_policy(settings: ExitSettings, detector: FusionDetector, gates: GateModules | None,
                      reference_frame: ModelInputs) -> ExitPolicy:
    """The exit policy ``settings`` name: the budget and error policies from the gates' exit
    calibration, the deadline policy with the head's stage times measured on ``reference_frame``
    (only when it is the one asked for). ConfigError naming what is missing."""
    calibration = gates.exit_calibration if gates is not None else None
    return exit_policy_from_settings(settings, ExitResources(calibration, lambda: measure_stage_ms(detector, reference_frame)))


def build_dynamic_fusion(detector: FusionDetector | str | Path, gates: GateModules | str | Path | None,
                         gate_settings: GateSettings, exit_settings: ExitSettings, profile: DeviceProfile | str,
                         reference_frame: ModelInputs, *, frame_period_s: float = 0.1,
                         warm_up: bool = False) -> DynamicFusion:
    """A runner from a detector (or its checkpoint), gates (their file, or None for the static and
    late modes), the run-time settings and a device profile (or its name), its cost table and
    exit policy measured on ``reference_frame`` (batch 1, every detection sensor). ``warm_up``:
    run the reference frame through it first (a live node; see ``DynamicFusion.warm_up``).
    ConfigError (one line) when the settings ask for something these parts cannot do."""
    if not isinstance(detector, FusionDetector):
        detector = load_detector(detector)
    if gates is not None and not isinstance(gates, GateModules):
        gates = load_gates(gates, detector.config)
    if not isinstance(profile, DeviceProfile):
        profile = load_device_profile(profile)
    policy = build_exit_policy(exit_settings, detector, gates, reference_frame)
    table = measure_cost_table(detector, gates, reference_frame)
    try:
        fusion = DynamicFusion(detector, gates, gate_settings, policy, table, profile, frame_period_s)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if warm_up:
        fusion.warm_up(reference_frame)
    return fusion
