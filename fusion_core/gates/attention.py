"""HydraFusion-style attention gate: learned scores per expert from the pooled stem features and
the context estimate; the top-k available experts run, weighted by a softmax over the kept
scores (mixture of experts).

Training uses straight-through Gumbel-softmax top-k masks: the forward pass sees an exact hard
mask (so training computes what inference computes), the backward pass the gradient of the soft
relaxation. The temperature anneals towards a floor (too cold and the gradient vanishes), and the
first steps use random masks so every expert's weight is learned before the scores decide.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fusion_core.gates.fitting import FeatureScaler
from fusion_core.gates.gate import GateDecision

_NEG = -1e9  # a large negative instead of -inf keeps softmax and top-k NaN-free with no expert available


def topk_mask(scores: torch.Tensor, available: torch.Tensor, k: int) -> torch.Tensor:
    """(B, E) bool: the k highest-scoring available experts of each frame (all of them if fewer)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, scores.shape[1])
    masked = scores.masked_fill(~available, _NEG)
    idx = masked.topk(k, dim=1).indices
    return torch.zeros_like(available).scatter(1, idx, True) & available


def moe_weights(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, E) softmax of ``scores`` over the experts in ``mask`` (float or bool, (B, E)); a float
    mask carries gradient into the weights (straight-through training). Zero rows stay zero."""
    m = mask.to(scores.dtype)
    shifted = scores - scores.masked_fill(m <= 0, _NEG).amax(1, keepdim=True).detach()
    expo = torch.exp(shifted.clamp(max=30.0)) * m
    return expo / expo.sum(1, keepdim=True).clamp(min=1e-12)


def gumbel_topk_weights(scores: torch.Tensor, available: torch.Tensor, k: int, temperature: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, E) MoE weights from a straight-through Gumbel top-k mask: hard in the forward pass,
    with the soft mask's gradient in the backward pass."""
    u = torch.rand(scores.shape, generator=generator).clamp(1e-9, 1 - 1e-9)
    perturbed = (scores - torch.log(-torch.log(u))).masked_fill(~available, _NEG)
    hard = topk_mask(perturbed.detach(), available, k).to(scores.dtype)
    soft = torch.softmax(perturbed / temperature, dim=1) * available
    mask = hard + soft - soft.detach()
    return moe_weights(scores, mask)


def random_topk_weights(scores: torch.Tensor, available: torch.Tensor, k: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, E) MoE weights over k random available experts (the warm-up's masks)."""
    noise = torch.rand(scores.shape, generator=generator)
    return moe_weights(scores, topk_mask(noise, available, k))


def annealed_temperature(step: int, start: float, floor: float, decay_steps: int) -> float:
    """Exponential decay from ``start`` to ``floor`` over about ``decay_steps`` steps, then the floor."""
    if decay_steps <= 0:
        return floor
    return max(floor, start * math.exp(-step / decay_steps * math.log(max(start / floor, 1.0 + 1e-9))))


class AttentionGate(nn.Module):
    """(B, F) gate features (``gates.modules.gate_features``) -> (B, E) expert scores."""

    def __init__(self, n_features: int, n_experts: int, hidden: int = 64):
        super().__init__()
        self.n_experts = n_experts
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_experts))
        self.scaler = FeatureScaler(n_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(self.scaler(features))

    def decide(self, scores: torch.Tensor, available: torch.Tensor, k: int) -> GateDecision:
        """Inference: hard top-k over the available experts, MoE weights over the kept ones."""
        mask = topk_mask(scores, available, k)
        return GateDecision(mask, moe_weights(scores, mask))
