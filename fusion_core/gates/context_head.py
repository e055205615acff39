"""The context head: estimates the driving condition and each sensor's health from cheap signals
(``context_signals``, IMU window statistics, which sensors delivered), never from the
simulator's label. Gates read its estimate; the labels are only its training targets.

"Degraded" means a fault the frame still carries data through (frozen, noise burst, occlusion,
calibration drift, latency): an absent sensor is known without estimation. A frozen camera or a
drifted calibration leaves few traces in one frame, so health accuracy is reported per fault.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fusion_core.data.sample import FusionSample
from fusion_core.gates.fitting import FeatureScaler, fit_full_batch
from fusion_core.model.context_signals import N_CONTEXT_SIGNALS
from fusion_core.model.inputs import IMU_FEATURES, ModelInputs
from fusion_core.vocabulary import (  # CONDITIONS: the order of the head's outputs
    CONDITIONS,
    DETECTION_SENSORS,
)

N_CONTEXT_INPUTS = N_CONTEXT_SIGNALS + IMU_FEATURES + len(DETECTION_SENSORS) + 1


@dataclass
class ContextEstimate:
    condition_prob: torch.Tensor  # (B, len(CONDITIONS)) softmax over conditions
    degraded_prob: torch.Tensor   # (B, len(DETECTION_SENSORS)) chance each present sensor is degraded (0 if absent)

    @property
    def condition_index(self) -> torch.Tensor:
        """(B,) int64 most likely condition."""
        return self.condition_prob.argmax(1)

    def condition_names(self) -> list[str]:
        return [CONDITIONS[int(i)] for i in self.condition_index]

    def features(self) -> torch.Tensor:
        """(B, len(CONDITIONS) + len(DETECTION_SENSORS)) the estimate as gate input features."""
        return torch.cat([self.condition_prob, self.degraded_prob], 1)


def context_inputs(inputs: ModelInputs) -> torch.Tensor:
    """(B, N_CONTEXT_INPUTS) what the context head reads: signals, IMU statistics, presence flags."""
    return torch.cat([inputs.signals, inputs.imu, inputs.present.float(), inputs.imu_present.float()[:, None]], 1)


class ContextHead(nn.Module):
    """(B, N_CONTEXT_INPUTS) -> ContextEstimate; a two-layer MLP (a few thousand FLOPs)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(N_CONTEXT_INPUTS, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.condition = nn.Linear(hidden, len(CONDITIONS))
        self.degraded = nn.Linear(hidden, len(DETECTION_SENSORS))
        self.scaler = FeatureScaler(N_CONTEXT_INPUTS)

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(self.scaler(x))
        return self.condition(h), self.degraded(h)

    def estimate(self, x: torch.Tensor, present: torch.Tensor) -> ContextEstimate:
        """From (B, N_CONTEXT_INPUTS) inputs and (B, 4) bool presence of the detection sensors."""
        cond, degraded = self.logits(x)
        return ContextEstimate(torch.softmax(cond, 1), torch.sigmoid(degraded) * present.float())

    def forward(self, inputs: ModelInputs) -> ContextEstimate:
        return self.estimate(context_inputs(inputs), inputs.present)


@dataclass
class ContextLabels:
    condition: torch.Tensor  # (N,) int64 index into CONDITIONS
    degraded: torch.Tensor   # (N, len(DETECTION_SENSORS)) float 0/1: a fault is active on the present sensor
    present: torch.Tensor    # (N, len(DETECTION_SENSORS)) bool


def context_labels(samples: Sequence[FusionSample]) -> ContextLabels:
    """Training targets from the source's labels; a frame without a condition label is an error."""
    cond, degraded, present = [], [], []
    for s in samples:
        if s.condition not in CONDITIONS:
            raise ValueError(f"frame at t={s.time_s:.3f} s has condition {s.condition!r}; "
                             f"the context head needs one of {CONDITIONS}")
        cond.append(CONDITIONS.index(s.condition))
        here = [s.present(x) for x in DETECTION_SENSORS]
        present.append(here)
        degraded.append([float(p and x in s.faults) for x, p in zip(DETECTION_SENSORS, here)])
    return ContextLabels(torch.tensor(cond), torch.tensor(degraded), torch.tensor(present))


@dataclass
class ContextAccuracy:
    condition_accuracy: dict[str, float]     # true condition -> share of its frames estimated right
    condition_confusion: np.ndarray          # (C, C) counts, rows true, columns estimated
    degraded_accuracy: dict[str, float]      # sensor -> accuracy of the degraded flag over present frames
    n_frames: int

    def to_json(self) -> dict:
        return {"condition_accuracy": self.condition_accuracy, "conditions": list(CONDITIONS),
                "condition_confusion": self.condition_confusion.tolist(),
                "degraded_accuracy": self.degraded_accuracy, "n_frames": self.n_frames}


def score_context(estimate: ContextEstimate, labels: ContextLabels) -> ContextAccuracy:
    pred = estimate.condition_index
    confusion = np.zeros((len(CONDITIONS), len(CONDITIONS)), np.int64)
    np.add.at(confusion, (labels.condition.numpy(), pred.numpy()), 1)
    per_condition = {c: float(confusion[i, i] / confusion[i].sum()) for i, c in enumerate(CONDITIONS) if confusion[i].sum()}
    flags = (estimate.degraded_prob > 0.5).float()
    degraded = {}
    for j, sensor in enumerate(DETECTION_SENSORS):
        here = labels.present[:, j]
        if bool(here.any()):
            degraded[sensor] = float((flags[here, j] == labels.degraded[here, j]).float().mean())
    return ContextAccuracy(per_condition, confusion, degraded, len(labels.condition))


def fit_context_head(head: ContextHead, x: torch.Tensor, labels: ContextLabels, *, steps: int = 600,
                     learning_rate: float = 3e-3, seed: int = 0) -> list[float]:
    """Full-batch training on (N, N_CONTEXT_INPUTS) inputs; returns the loss per step. Conditions
    are weighted by inverse frequency so a rare condition is not ignored."""
    if len(x) != len(labels.condition) or len(x) == 0:
        raise ValueError(f"need matching, non-empty inputs and labels, got {len(x)} and {len(labels.condition)}")
    torch.manual_seed(seed)
    head.scaler.fit(x)
    counts = torch.bincount(labels.condition, minlength=len(CONDITIONS)).float()
    class_weight = torch.where(counts > 0, counts.sum() / (len(CONDITIONS) * counts.clamp(min=1)), torch.zeros(()))
    present = labels.present.float()

    def loss_of() -> torch.Tensor:
        cond, degraded = head.logits(x)
        health = nn.functional.binary_cross_entropy_with_logits(degraded, labels.degraded, reduction="none")
        return (nn.functional.cross_entropy(cond, labels.condition, weight=class_weight)
                + (health * present).sum() / present.sum().clamp(min=1))

    return fit_full_batch(head, loss_of, steps, learning_rate)
