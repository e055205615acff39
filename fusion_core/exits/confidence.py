"""Frame-level confidence of one exit, from its heatmap and the previous exit's heatmap.

Formula (per frame; ``p = sigmoid(heatmap_logits)``, ``f = peak_floor``, ``r = match_radius_cells``):

1. Peaks are the cells that are 3x3 local maxima of ``p`` (the decoder's own NMS, see
   :func:`fusion_core.model.decode.peak_scores`) with ``p > f``.
2. Certainty of a peak::

       c(p) = 2p - 1                            for p >= 0.5
       c(p) = min(1, (0.5 - p) / (0.5 - f))     for p <  0.5

   For a calibrated heatmap ``|2p - 1| = 1 - 2 P(the peak's object / no-object call is wrong)``,
   so 0.5 is a coin flip (certainty 0) and both a sharp object (p -> 1) and clear background
   (p -> 0) are certain. On the low side the scale is stretched so that it reaches 1 at the
   floor: bumps at or below ``f`` are background noise, and the ramp (instead of a hard cut)
   keeps the confidence continuous in the logits, which keeps thresholds and the budget
   solver's quantiles stable.
3. ``certainty = min`` over the frame's peaks (all classes), 1 when there is none. The minimum
   (not a mean) because one ambiguous object is exactly what a deeper exit is for, however
   many easy ones the frame also holds. Only peaks count: the shoulders of a sharp peak sit
   near 0.5 but are never decoded as boxes. An empty scene (every cell clearly low) therefore
   has certainty ~1, which max-class-probability confidence would call unconfident.
4. Agreement with the previous exit (when given): with ``P = maxpool_(2r+1)(p)`` the
   neighbourhood maximum of each exit's probabilities (a centre that moves by up to ``r``
   cells between exits still agrees), over the cells that are peaks of *either* exit::

       agreement = 1 - max |P_current - P_previous|      (1 when neither exit has a peak)

   A peak that appears or vanishes between exits, or whose probability jumps, lowers it: the
   exits disagree, so the current one is unlikely to be the last word. Without a previous
   exit (exit 0) the agreement is 1 and the per-exit threshold absorbs the difference.
5. ``confidence = certainty * agreement``, in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fusion_core.model.max_filter import max_filter2d

if TYPE_CHECKING:  # the head imports this package; a run-time import of the model would be a cycle
    from fusion_core.model.head import ExitOutput


@dataclass(frozen=True)
class ConfidenceConfig:
    peak_floor: float = 0.05      # probability at or below which a peak is background (certainty 1)
    match_radius_cells: int = 1   # a peak may move this many head cells between exits and still agree

    def __post_init__(self):
        if not 0.0 <= self.peak_floor < 0.5:
            raise ValueError(f"peak_floor must be in [0, 0.5), got {self.peak_floor}")
        if self.match_radius_cells < 0:
            raise ValueError(f"match_radius_cells must be >= 0, got {self.match_radius_cells}")


def peak_certainty(prob: torch.Tensor, peak_floor: float) -> torch.Tensor:
    """c(p) of the module docstring, elementwise; same shape as ``prob``, in [0, 1]."""
    high = 2.0 * prob - 1.0
    low = ((0.5 - prob) / (0.5 - peak_floor)).clamp(max=1.0)
    return torch.where(prob >= 0.5, high, low).clamp(0.0, 1.0)


def _peaks(prob: torch.Tensor, peak_floor: float) -> torch.Tensor:
    """(B, C, H, W) bool: 3x3 local maxima above the floor."""
    return (max_filter2d(prob, 1) == prob) & (prob > peak_floor)


def _probabilities(output: ExitOutput) -> torch.Tensor:
    logits = output.heatmap_logits
    if logits.dim() != 4:
        raise ValueError(f"heatmap_logits must be (B, n_classes, H, W), got shape {tuple(logits.shape)}")
    return torch.sigmoid(logits.detach().float())


def _reduce(per_cell: torch.Tensor, op, empty: float) -> torch.Tensor:
    """(B, C, H, W) -> (B,) with ``op`` over each frame's cells; ``empty`` for a 0-cell grid."""
    flat = per_cell.flatten(1)
    if flat.shape[1] == 0:
        return flat.new_full((flat.shape[0],), empty)
    return op(flat, dim=1)


def frame_confidence(current: ExitOutput, previous: ExitOutput | None = None,
                     config: ConfidenceConfig = ConfidenceConfig()) -> torch.Tensor:
    """(B,) confidence in [0, 1] of exit k (``current``) given exit k-1 (``previous``, None at
    exit 0); formula and reasons in the module docstring. Frames are independent."""
    prob = _probabilities(current)
    peaks = _peaks(prob, config.peak_floor)
    certainty = torch.where(peaks, peak_certainty(prob, config.peak_floor), torch.ones_like(prob))
    certainty = _reduce(certainty, torch.amin, empty=1.0)
    if previous is None:
        return certainty
    prev = _probabilities(previous)
    if prev.shape != prob.shape:
        raise ValueError(f"previous heatmap shape {tuple(prev.shape)} != current {tuple(prob.shape)}")
    r = config.match_radius_cells
    near_now = max_filter2d(prob, r)
    near_before = max_filter2d(prev, r)
    either = peaks | _peaks(prev, config.peak_floor)
    gap = torch.where(either, (near_now - near_before).abs(), torch.zeros_like(prob))
    disagreement = _reduce(gap, torch.amax, empty=0.0)
    return (certainty * (1.0 - disagreement)).clamp(0.0, 1.0)


def exit_confidences(outputs: Sequence[ExitOutput], config: ConfidenceConfig = ConfidenceConfig()) -> torch.Tensor:
    """(B, K) confidences of exits 0..K-1 computed together (offline evaluation, budget solving,
    error-predictor training); column k equals ``frame_confidence(outputs[k], outputs[k-1])``."""
    if not outputs:
        raise ValueError("need at least one exit output")
    columns = [frame_confidence(out, outputs[k - 1] if k else None, config) for k, out in enumerate(outputs)]
    return torch.stack(columns, dim=1)
