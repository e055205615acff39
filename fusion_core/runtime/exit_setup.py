"""An exit policy from its name and settings, as the command line and the fusion node choose it.

``last`` and ``confidence`` need nothing else; ``budget`` and ``error`` use the exit
calibration stored with the gates (``dyn-fusion train-gates``); ``deadline`` measures the head's
stage times on this machine first, on ``frame`` (one full frame, batch 1).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fusion_core.config_io import ConfigError

if TYPE_CHECKING:  # importing EXIT_POLICIES (the CLI's choices) must not pull in torch
    from fusion_core.exits.policies import ExitPolicy
    from fusion_core.gates.modules import GateModules
    from fusion_core.model.detector import FusionDetector
    from fusion_core.model.inputs import ModelInputs

EXIT_POLICIES = ("last", "confidence", "budget", "error", "deadline")


def build_exit_policy(name: str, *, gates: GateModules | None = None, detector: FusionDetector | None = None,
                      frame: ModelInputs | None = None, threshold: float = 0.8, budget: float = 0.7,
                      lam: float = 0.05, deadline_ms: float | None = None) -> ExitPolicy:
    """``threshold``: confidence policy; ``budget``: budget policy, mean head compute as a share
    of every exit; ``lam``: error policy, error per GFLOP; ``deadline_ms``: deadline policy.
    ConfigError naming what is missing (gates with calibration, a deadline, a frame to time)."""
    from fusion_core.exits.policies import make_exit_policy

    if name == "deadline":
        from fusion_core.runtime.stage_timing import measure_stage_ms

        if deadline_ms is None:
            raise ConfigError("exit policy deadline needs a deadline in ms")
        if detector is None or frame is None:
            raise ConfigError("exit policy deadline needs the detector and a frame to time its stages on")
        return make_exit_policy("deadline", deadline_ms=deadline_ms, predicted_stage_ms=measure_stage_ms(detector, frame))
    if name == "confidence":
        return make_exit_policy("confidence", thresholds=threshold)
    if name in ("budget", "error"):
        if gates is None or gates.exit_calibration is None:
            raise ConfigError(f"exit policy {name} needs gates trained with exit calibration (dyn-fusion train-gates)")
        if name == "budget":
            return gates.exit_calibration.budget_policy(budget)
        return gates.exit_calibration.error_policy(lam)
    return make_exit_policy(name)
