"""Sliding-window maximum over the last two dimensions (a max filter), for peak finding.

``F.max_pool2d(x, 2r + 1, stride=1, padding=r)`` gives the same values, but on CPU it goes
through ``max_pool2d_with_indices`` and cost 0.49 ms on one (1, 3, 64, 64) heatmap: about 5 ms
of every frame's 10 calls (box decoding and exit confidence). The window maximum is separable
(rows, then columns) and elementwise maxima of shifted views are exact, so this is the same
result at about a sixth of the time (0.08 ms for that heatmap, one core here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_filter2d(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., H, W) -> (..., H, W): the maximum of each cell's (2 radius + 1)^2 window, cells
    outside the grid ignored (as max_pool2d's padding). ``radius`` >= 0 cells."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    if radius == 0 or x.numel() == 0:
        return x.clone()
    h, w = x.shape[-2:]
    rows = F.pad(x, (radius, radius), value=float("-inf"))
    out = rows[..., :, 0:w]
    for shift in range(1, 2 * radius + 1):
        out = torch.maximum(out, rows[..., :, shift:shift + w])
    cols = F.pad(out, (0, 0, radius, radius), value=float("-inf"))
    out = cols[..., 0:h, :]
    for shift in range(1, 2 * radius + 1):
        out = torch.maximum(out, cols[..., shift:shift + h, :])
    return out
