"""Turning one exit's outputs into boxes (fusion_core.boxes layout, base_link)."""
from __future__ import annotations

import numpy as np
import torch

from fusion_core.boxes import BOX_DIM, CLASS_ID, SCORE, VX, VY, YAW, H, L, W, X, Y, Z
from fusion_core.model.config import BevGridConfig
from fusion_core.model.head import ExitOutput
from fusion_core.model.max_filter import max_filter2d


def peak_scores(heatmap_logits: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) probabilities, zero except at 3x3 local maxima (the heatmap's own NMS)."""
    prob = torch.sigmoid(heatmap_logits)
    return prob * (max_filter2d(prob, 1) == prob)


def decode_exit(output: ExitOutput, grid: BevGridConfig, max_detections: int, score_threshold: float,
                has_input: torch.Tensor | None = None) -> list[np.ndarray]:
    """Per frame a (N, BOX_DIM) float32 array, highest score first. Frames whose ``has_input``
    is False (no expert ran) get no boxes: the head saw no evidence."""
    with torch.no_grad():
        peaks = peak_scores(output.heatmap_logits)
        b, c, hh, ww = peaks.shape
        k = min(max_detections, c * hh * ww)
        scores, flat = peaks.reshape(b, -1).topk(k, dim=1)
        cls = flat // (hh * ww)
        cell = flat % (hh * ww)
        reg = output.regression.reshape(b, output.regression.shape[1], -1)
        reg = torch.gather(reg, 2, cell[:, None, :].expand(-1, reg.shape[1], -1)).permute(0, 2, 1)  # (B, k, R)
        row = (cell // ww).float()
        col = (cell % ww).float()
    cellsize = grid.head_cell_m
    out = []
    for i in range(b):
        keep = scores[i] >= score_threshold
        if has_input is not None and not bool(has_input[i]):
            keep = torch.zeros_like(keep)
        r = reg[i][keep].numpy()
        boxes = np.zeros((int(keep.sum()), BOX_DIM), np.float32)
        boxes[:, X] = grid.x_min_m + (row[i][keep].numpy() + r[:, 0]) * cellsize
        boxes[:, Y] = grid.y_min_m + (col[i][keep].numpy() + r[:, 1]) * cellsize
        boxes[:, Z] = r[:, 2]
        boxes[:, [L, W, H]] = np.exp(np.clip(r[:, 3:6], -3.0, 3.0))
        boxes[:, YAW] = np.arctan2(r[:, 6], r[:, 7])
        boxes[:, VX] = r[:, 8]
        boxes[:, VY] = r[:, 9]
        boxes[:, CLASS_ID] = cls[i][keep].numpy()
        boxes[:, SCORE] = scores[i][keep].numpy()
        out.append(boxes)
    return out
