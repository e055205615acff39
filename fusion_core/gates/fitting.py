"""What the small learned gate parts share: inputs standardised with statistics fitted on the
training features (kept as buffers, so they travel with the weights), and full-batch fitting."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_MIN_STD = 1e-3  # a constant feature (a sensor never absent in training) is left unscaled


class FeatureScaler(nn.Module):
    """(B, F) -> (B, F) standardised with the mean and std of the features it was fitted on."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: torch.Tensor) -> None:
        """Take the statistics of (N, F) training features."""
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp(min=_MIN_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def fit_full_batch(module: nn.Module, loss_of: Callable[[], torch.Tensor], steps: int,
                   learning_rate: float) -> list[float]:
    """``steps`` AdamW steps on ``loss_of()`` (the whole training set at once); the loss per
    step. Leaves ``module`` in eval mode."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=1e-4)
    history = []
    module.train()
    for _ in range(steps):
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    module.eval()
    return history
