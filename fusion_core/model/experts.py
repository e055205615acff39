"""Fusion experts: each fuses a fixed subset of stems by concatenation (early fusion) and two
convolutions. An expert is available for a frame when at least one of its sensors is present;
absent inputs are zeros and a presence channel tells the expert which ones are real."""
from __future__ import annotations

import torch
from torch import nn

from fusion_core.model.config import BevGridConfig, ExpertConfig
from fusion_core.model.layers import ResidualBlock, conv_bn_relu


def coordinate_channels(grid: BevGridConfig) -> torch.Tensor:
    """(1, 2, H, W) cell-centre x and y on the head grid, scaled to about [-1, 1]: lets the
    convolutions learn range-dependent behaviour (a camera's blur with distance, radar sparsity)."""
    h, w = grid.head_shape
    x = torch.linspace(-1.0, 1.0, h)[:, None].expand(h, w)
    y = torch.linspace(-1.0, 1.0, w)[None, :].expand(h, w)
    return torch.stack([x, y])[None]


class FusionExpert(nn.Module):
    """stem features {sensor: (B, Cs, H, W)} -> (B, Ce, H, W)."""

    def __init__(self, config: ExpertConfig, grid: BevGridConfig, stem_channels: int, out_channels: int,
                 extra_blocks: int = 0):
        super().__init__()
        self.config = config
        self.sensors = config.sensors
        n = len(self.sensors)
        self.stem_channels = stem_channels
        self.register_buffer("coords", coordinate_channels(grid), persistent=False)
        self.body = nn.Sequential(conv_bn_relu(n * (stem_channels + 1) + 2, out_channels),
                                  conv_bn_relu(out_channels, out_channels),
                                  *[ResidualBlock(out_channels) for _ in range(extra_blocks)])

    def available(self, present: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) bool: at least one of this expert's sensors is present."""
        return torch.stack([present[s] for s in self.sensors], 1).any(1)

    def forward(self, stem_features: dict[str, torch.Tensor | None], present: dict[str, torch.Tensor],
                batch_size: int) -> torch.Tensor:
        h, w = self.coords.shape[-2:]
        parts = []
        for s in self.sensors:
            feats = stem_features.get(s)
            here = present[s].to(self.coords.dtype).view(batch_size, 1, 1, 1)
            if feats is None:
                # No frame of the batch has this sensor: the stem did not run.
                feats = self.coords.new_zeros(batch_size, self.stem_channels, h, w)
            parts += [feats * here, here.expand(batch_size, 1, h, w)]
        parts.append(self.coords.expand(batch_size, -1, -1, -1))
        return self.body(torch.cat(parts, 1))
