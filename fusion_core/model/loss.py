"""Detection losses per exit, and self-distillation of the early exits from the last one.

Heatmaps use CenterNet's penalty-reduced focal loss; regression an L1 loss at the ground-truth
centre cells. Early exits additionally follow the last exit's (detached) heatmap and regression.
The distillation term is applied to the "students" (each early exit head run again on detached
trunk features, see ``MultiExitHead.forward``), so it trains the early exit heads only and
leaves everything the last exit depends on to the detection losses.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fusion_core.model.head import N_REGRESSION, ExitOutput
from fusion_core.model.targets import DetectionTargets

# Velocity targets span tens of m/s: a lower weight keeps them from dominating the L1 sum.
REGRESSION_WEIGHTS = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 0.2, 0.2])
assert len(REGRESSION_WEIGHTS) == N_REGRESSION


@dataclass
class ExitLoss:
    heatmap: torch.Tensor       # scalar focal loss
    regression: torch.Tensor    # scalar weighted L1
    distillation: torch.Tensor  # scalar (0 for the last exit)


@dataclass
class LossBreakdown:
    total: torch.Tensor
    per_exit: list[ExitLoss]

    def as_floats(self) -> dict[str, float]:
        """Flat name -> value for logs (the only place losses become a dict)."""
        out = {"loss": float(self.total.detach())}
        for k, e in enumerate(self.per_exit):
            out[f"exit{k}_heatmap"] = float(e.heatmap)
            out[f"exit{k}_regression"] = float(e.regression)
            out[f"exit{k}_distill"] = float(e.distillation)
        return out


def focal_loss_cells(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """(B, C, H, W) CenterNet penalty-reduced focal loss of every heatmap cell."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 1.0 - 1e-6
    pos_loss = -F.logsigmoid(logits) * (1 - prob) ** alpha
    neg_loss = -F.logsigmoid(-logits) * prob**alpha * (1 - target) ** beta
    return torch.where(pos, pos_loss, neg_loss)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, n_objects: int) -> torch.Tensor:
    """CenterNet focal loss summed over cells, divided by the number of objects (at least 1)."""
    return focal_loss_cells(logits, target).sum() / max(1, n_objects)


def gather_cells(regression: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """(B, R, H, W) map, (B, M) flat cells -> (B, M, R)."""
    flat = regression.flatten(2)
    return torch.gather(flat, 2, cell[:, None, :].expand(-1, flat.shape[1], -1)).permute(0, 2, 1)


def regression_loss_slots(regression: torch.Tensor, targets: DetectionTargets) -> torch.Tensor:
    """(B, M) weighted L1 regression error of every ground-truth slot (0 for empty slots)."""
    pred = gather_cells(regression, targets.cell)
    return ((pred - targets.regression).abs() * REGRESSION_WEIGHTS).sum(-1) * targets.valid


def regression_loss(regression: torch.Tensor, targets: DetectionTargets) -> torch.Tensor:
    return regression_loss_slots(regression, targets).sum() / max(1, targets.n_objects)


def detection_loss(exits: list[ExitOutput], targets: DetectionTargets, distill_weight: float = 0.0,
                   exit_weights: tuple[float, ...] | None = None,
                   students: list[ExitOutput] | None = None) -> LossBreakdown:
    """``students``: the early exits on detached trunk features, required when ``distill_weight`` > 0."""
    n = targets.n_objects
    if distill_weight > 0 and (students is None or len(students) != len(exits) - 1):
        got = "none" if students is None else len(students)
        raise ValueError(f"distillation needs {len(exits) - 1} student exits (forward with distill_students=True), "
                         f"got {got}")
    last = exits[-1]
    teacher_prob = torch.sigmoid(last.heatmap_logits).detach()
    teacher_reg = gather_cells(last.regression, targets.cell).detach()
    weights = exit_weights or (1.0,) * len(exits)
    total = torch.zeros(())
    per_exit = []
    for k, out in enumerate(exits):
        hm = focal_loss(out.heatmap_logits, targets.heatmap, n)
        reg = regression_loss(out.regression, targets)
        distill = torch.zeros(())
        if distill_weight > 0 and k < len(exits) - 1:
            student = students[k]
            distill = ((torch.sigmoid(student.heatmap_logits) - teacher_prob) ** 2).sum() / max(1, n)
            pred = gather_cells(student.regression, targets.cell)
            distill = distill + (((pred - teacher_reg).abs() * REGRESSION_WEIGHTS).sum(-1) * targets.valid).sum() / max(1, n)
        total = total + weights[k] * (hm + reg + distill_weight * distill)
        per_exit.append(ExitLoss(hm.detach(), reg.detach(), distill.detach()))
    return LossBreakdown(total, per_exit)


def per_frame_detection_loss(out: ExitOutput, targets: DetectionTargets) -> torch.Tensor:
    """(B,) detection loss of one exit for each frame separately (focal + regression, each divided
    by that frame's object count, at least 1): the quantity the loss gate predicts and the oracle
    minimises, so a configuration's quality is judged frame by frame."""
    n_per_frame = targets.valid.sum(1).clamp(min=1).to(out.heatmap_logits.dtype)  # (B,)
    focal = focal_loss_cells(out.heatmap_logits, targets.heatmap).flatten(1).sum(1)
    reg = regression_loss_slots(out.regression, targets).sum(1)
    return (focal + reg) / n_per_frame
