"""Run-time gate settings and the gate's per-frame decision.

k, gamma and lambda are read at every frame, so they change at run time (a ROS parameter update,
a CLI flag) without retraining anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fusion_core.config_io import ConfigError, param

GATE_MODES: tuple[str, ...] = ("static", "late", "knowledge", "attention", "loss", "oracle")


@dataclass(frozen=True)
class GateSettings:
    mode: str = param("static", "which gate decides the experts", choices=GATE_MODES)
    k: int = param(2, "attention: experts kept per frame (top-k)", lo=1, hi=64)
    gamma: float = param(0.5, "loss/oracle: keep configurations whose (predicted) loss is within gamma of the best", lo=0.0)
    lam_per_j: float = param(0.0, "loss/oracle: loss units traded per joule of compute (0 = best predicted loss)", lo=0.0)
    price_sensors: bool = param(False, "loss/oracle: lam_per_j also prices the sensors each configuration keeps on "
                                "(their power x frame period); for sensor power gating, where unused sensors "
                                "stand by (without it every sensor is on anyway)")

    def __post_init__(self):
        if self.mode not in GATE_MODES:
            raise ConfigError(f"mode: expected one of {', '.join(GATE_MODES)}, got {self.mode!r}")


@dataclass
class GateDecision:
    """Which experts run for each frame, and with what fusion weight."""

    active: torch.Tensor   # (B, E) bool
    weights: torch.Tensor  # (B, E) float: zero where inactive, summing to 1 over a frame's active experts

    def __post_init__(self):
        if self.active.shape != self.weights.shape or self.active.dim() != 2:
            raise ValueError(f"active {tuple(self.active.shape)} and weights {tuple(self.weights.shape)} must be (B, E)")
