"""Detection trunk with several exits. Exit k sits after the first sum(exit_blocks[:k]) residual
blocks; each exit is a small head producing complete detections (class-centre heatmaps and box
regression), so inference may stop at any exit."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fusion_core.model.layers import ResidualBlock, conv_bn_relu

REGRESSION_FIELDS = ("dx", "dy", "z_m", "log_l", "log_w", "log_h", "sin_yaw", "cos_yaw", "vx_mps", "vy_mps")
N_REGRESSION = len(REGRESSION_FIELDS)
_HEATMAP_PRIOR = 0.1  # initial centre probability (CenterNet's bias init keeps early focal losses sane)


@dataclass
class ExitOutput:
    """Raw outputs of one exit on the head grid."""

    heatmap_logits: torch.Tensor  # (B, n_classes, H, W)
    regression: torch.Tensor      # (B, N_REGRESSION, H, W) in REGRESSION_FIELDS order


class ExitHead(nn.Module):
    """(B, C, H, W) trunk features -> ExitOutput; one narrow 3x3 layer, then 1x1 outputs."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        hidden = max(8, channels // 2)
        self.shared = nn.Sequential(nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(hidden, n_classes, 1)
        self.regression = nn.Conv2d(hidden, N_REGRESSION, 1)
        nn.init.constant_(self.heatmap.bias, float(torch.logit(torch.tensor(_HEATMAP_PRIOR))))

    def forward(self, x: torch.Tensor) -> ExitOutput:
        h = self.shared(x)
        return ExitOutput(self.heatmap(h), self.regression(h))


class MultiExitHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, exit_blocks: tuple[int, ...], n_classes: int):
        super().__init__()
        self.entry = conv_bn_relu(in_channels, channels)
        self.stages = nn.ModuleList(nn.Sequential(*[ResidualBlock(channels) for _ in range(n)]) for n in exit_blocks)
        self.exits = nn.ModuleList(ExitHead(channels, n_classes) for _ in exit_blocks)

    @property
    def n_exits(self) -> int:
        return len(self.exits)

    def forward(self, fused: torch.Tensor, last_exit: int | None = None,
                distill_students: bool = False) -> tuple[list[ExitOutput], list[ExitOutput]]:
        """Outputs of exits 0..last_exit (default: all); deeper stages are not computed.

        With ``distill_students`` the second list holds every exit but the deepest computed one
        run again on *detached* trunk features: the self-distillation loss is applied to these
        copies, so its gradient trains only the early exit heads and never the stems, experts or
        trunk stages the last exit depends on (when it reached them, distillation cost the last
        exit 0.026 mAP). Otherwise the second list is empty.
        """
        last = self.n_exits - 1 if last_exit is None else last_exit
        if not 0 <= last < self.n_exits:
            raise ValueError(f"last_exit must be in [0, {self.n_exits - 1}], got {last_exit}")
        x = self.entry(fused)
        outs, students = [], []
        for k in range(last + 1):
            x, out = self.stage(k, x)
            outs.append(out)
            if distill_students and k < last:
                students.append(self.exits[k](x.detach()))
        return outs, students

    def stage(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, ExitOutput]:
        """Run trunk stage ``k`` on its input ``x`` (the entry's output for k = 0) and exit k:
        (trunk features for stage k + 1, exit k's outputs). For stepping one exit at a time."""
        x = self.stages[k](x)
        return x, self.exits[k](x)
