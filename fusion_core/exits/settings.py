"""Run-time exit settings: which policy lets a frame leave the head, and each policy's setting.
The single source of their defaults, ranges and one-line docs: fusion_node's ``fusion.*``
parameters and the CLI's exit flags are generated from this class. Importing it does not import
torch.

A policy is built from these settings by its class in ``fusion_core.exits.policies``
(``ExitPolicy.from_settings``), dispatched through that module's ``POLICIES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fusion_core.config_io import check_fields, param

# The names of fusion_core.exits.policies.POLICIES. Listed again because that module needs torch
# (its policies hold tensors) and these settings must not; tests/fusion_core/exits/
# test_exit_settings.py keeps the two equal.
EXIT_POLICY_NAMES: tuple[str, ...] = ("last", "confidence", "budget", "error", "deadline")


@dataclass(frozen=True)
class ExitSettings:
    policy: str = param("last", "when a frame leaves the head", choices=EXIT_POLICY_NAMES)
    threshold: float = param(0.8, "confidence policy: stop at this frame confidence", lo=0.0, hi=1.0)
    budget: float = param(0.7, "budget policy: mean head compute as a share of running every exit "
                               "(thresholds from the gates' calibration)", lo=0.0, hi=1.0)
    lam: float = param(0.05, "error policy (QuEE): predicted error traded per GFLOP of head compute", lo=0.0)
    deadline_ms: float | None = param(None, "deadline policy: per-frame time budget from the frame's start, ms "
                                            "(the head's stage times are measured on this machine first)", lo=0.0)

    # ROS parameters fusion.exit_* and CLI flags --exit-*: names older than this class
    PARAMETER_NAMES: ClassVar[dict[str, str]] = {"policy": "exit_policy", "threshold": "exit_threshold",
                                                 "budget": "exit_budget", "lam": "exit_lam"}

    def __post_init__(self):
        check_fields(self)
