"""EcoFusion-style loss gate and its oracle.

A *configuration* is a set of experts run together (fused with the detector's static weights
renormalised over the set). The loss gate predicts every configuration's detection loss for the
frame from the pooled stem features and the context estimate, keeps the configurations within
gamma of the best prediction, and runs the one minimising predicted loss + lambda * energy. The
oracle makes the same choice with the true loss (it needs ground truth: offline only), which
bounds what any gate could reach with these experts.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fusion_core.config_io import ConfigError, param
from fusion_core.gates.fitting import FeatureScaler
from fusion_core.gates.frame_target import frame_target
from fusion_core.model.detector import EncodedFrames, FusionDetector
from fusion_core.model.targets import DetectionTargets


@dataclass(frozen=True)
class ExpertConfiguration:
    name: str = param("all", "unique name (gate tables, usage maps)")
    experts: tuple[str, ...] = param((), "experts run together")

    def __post_init__(self):
        if not self.experts:
            raise ConfigError(f"configurations.{self.name}: at least one expert is needed")


def configuration_masks(configurations: Sequence[ExpertConfiguration], expert_names: Sequence[str]) -> torch.Tensor:
    """(C, E) bool: the experts of each configuration; an unknown expert name is an error."""
    masks = torch.zeros(len(configurations), len(expert_names), dtype=torch.bool)
    for c, conf in enumerate(configurations):
        for name in conf.experts:
            if name not in expert_names:
                raise ConfigError(f"configuration {conf.name}: unknown expert {name!r} (model has {', '.join(expert_names)})")
            masks[c, list(expert_names).index(name)] = True
    return masks


def choose_configuration(loss: torch.Tensor, available: torch.Tensor, energy_j: torch.Tensor, gamma: float,
                         lam_per_j: float) -> torch.Tensor:
    """(B,) index of the configuration each frame runs.

    ``loss`` (B, C) predicted (or true) losses, ``available`` (B, C) bool (some expert of the
    configuration has its sensors), ``energy_j`` (C,) energy of each configuration, or (B, C)
    when it depends on the frame (sensor pricing, ``configuration_sensor_j``).
    Among the available configurations within ``gamma`` of the frame's best loss, the argmin of
    loss + lam_per_j * energy_j. A frame with no available configuration gets index 0 (its
    experts will find no sensor and run nothing).
    """
    big = torch.finfo(loss.dtype).max / 4
    masked = loss.masked_fill(~available, big)
    best = masked.min(1, keepdim=True).values
    keep = available & (masked <= best + gamma)
    energy = energy_j if energy_j.dim() == 2 else energy_j[None, :]
    objective = (loss + lam_per_j * energy).masked_fill(~keep, big)
    return objective.argmin(1)


def configuration_sensor_j(active: torch.Tensor, expert_uses_sensor: torch.Tensor,
                           sensor_j: torch.Tensor) -> torch.Tensor:
    """(B, C) joules per frame of the sensors each configuration keeps on: every sensor read by
    an expert it would run this frame, counted once.

    ``active`` (B, C, E) bool: the experts each configuration runs this frame (its experts that are
    available); ``expert_uses_sensor`` (E, S) bool (``gates.knowledge.expert_sensor_matrix``);
    ``sensor_j`` (S,) a sensor's energy per frame while on (power x frame period). An expert
    reads all its sensors: one that stands by is woken when the expert is chosen (the power
    manager's "needed"), so it is charged too.
    """
    reads = (active[..., None] & expert_uses_sensor[None, None]).any(2)  # (B, C, S)
    return (reads.to(sensor_j.dtype) * sensor_j).sum(-1)


def true_configuration_targets(detector: FusionDetector, encoded: EncodedFrames, available: torch.Tensor,
                               masks: torch.Tensor, kind: str, targets: DetectionTargets,
                               visible_ground_truth: np.ndarray | None) -> torch.Tensor:
    """(1, C) the oracle's view of one frame: the last-exit ``kind`` target (``frame_target``) of
    every configuration ``masks`` (C, E) against ground truth; inf where none of a configuration's
    experts is ``available`` (1, E). ``visible_ground_truth`` (G, BOX_DIM) for detection_error.
    ``detector.calls`` is left as it was (the oracle is a bound: its work is not the frame's)."""
    visible = None if visible_ground_truth is None else [visible_ground_truth]
    calls = Counter(detector.calls)
    outputs = detector.expert_outputs(encoded, available)
    losses = []
    for mask in masks:
        active = available & mask[None]
        if not bool(active.any()):
            losses.append(torch.full((1,), float("inf")))
            continue
        exits, _ = detector.head(detector.combine(outputs, detector.static_weights(active), encoded.imu_context))
        losses.append(frame_target(kind, exits[-1], targets, visible, detector.config))
    detector.calls.clear()
    detector.calls.update(calls)
    return torch.stack(losses, 1)


def pessimistic_loss(member_losses: torch.Tensor, reference: torch.Tensor, spread_weight: float,
                     static_margin: float = 0.0) -> torch.Tensor:
    """(B, C) the loss the loss gate ranks configurations by.

    ``member_losses`` (B, M, C): each predictor member's loss per configuration; ``reference``
    (C,) bool: the configurations a gate falls back to (static fusion, every expert). Each
    configuration's loss is the members' mean plus ``spread_weight`` times the members' standard
    deviation of its loss *relative to the reference*: members trained on different resamples of
    the gate frames agree where those frames taught them and disagree on input unlike them, so
    leaving static fusion needs a predicted win the members agree on. The reference itself has no
    relative spread; without a reference in the table the plain spread is used. ``static_margin``
    is then taken off the reference's loss (a fixed price for leaving static fusion)."""
    loss = member_losses.mean(1)
    if spread_weight > 0 and member_losses.shape[1] > 1:
        relative = member_losses
        if bool(reference.any()):
            relative = member_losses - member_losses[:, :, reference].mean(2, keepdim=True)
        loss = loss + spread_weight * relative.std(1)
    return loss - static_margin * reference.to(loss.dtype)[None]


class LossPredictor(nn.Module):
    """(B, F) gate features (``gates.modules.gate_features``) -> (B, C) predicted per-frame loss,
    the mean of ``members`` small networks (an ensemble: :meth:`member_losses` gives each one's
    prediction, whose disagreement ``pessimistic_loss`` reads as uncertainty)."""

    def __init__(self, n_features: int, n_configurations: int, hidden: int = 96, members: int = 1):
        super().__init__()
        if members < 1:
            raise ValueError(f"a loss predictor needs at least one member, got {members}")
        self.members = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(inplace=True),
                          nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                          nn.Linear(hidden, n_configurations))
            for _ in range(members))
        self.scaler = FeatureScaler(n_features)

    def member_losses(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, M, C) every member's prediction."""
        x = self.scaler(features)
        return torch.stack([member(x) for member in self.members], 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.member_losses(features).mean(1)
