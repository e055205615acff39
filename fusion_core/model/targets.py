"""CenterNet-style training targets on the head grid.

Each ground-truth box inside the detection region puts a Gaussian peak (value 1 at its centre
cell) on its class's heatmap; its regression target is stored at that cell: the centre's offset
inside the cell, z, log size, yaw as (sin, cos), and velocity.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusion_core.boxes import CLASS_ID, VX, VY, YAW, H, L, W, X, Y, Z
from fusion_core.model.config import BevGridConfig
from fusion_core.model.head import N_REGRESSION

MIN_SIGMA_CELLS = 0.5


@dataclass
class DetectionTargets:
    heatmap: torch.Tensor     # (B, n_classes, H, W) float32 in [0, 1]
    regression: torch.Tensor  # (B, M, N_REGRESSION) float32, M = most boxes in a frame of the batch
    cell: torch.Tensor        # (B, M) int64 flat cell index row * W + col of each box's centre
    valid: torch.Tensor       # (B, M) bool: the slot holds a box

    @property
    def n_objects(self) -> int:
        return int(self.valid.sum())


def box_regression(boxes: np.ndarray, row: np.ndarray, col: np.ndarray, grid: BevGridConfig) -> np.ndarray:
    """(N, N_REGRESSION) regression targets of boxes (N, 11) whose centres are in cells (row, col)."""
    cell = grid.head_cell_m
    out = np.empty((len(boxes), N_REGRESSION), np.float32)
    out[:, 0] = (boxes[:, X] - grid.x_min_m) / cell - row
    out[:, 1] = (boxes[:, Y] - grid.y_min_m) / cell - col
    out[:, 2] = boxes[:, Z]
    out[:, 3:6] = np.log(np.maximum(boxes[:, [L, W, H]], 0.05))
    out[:, 6] = np.sin(boxes[:, YAW])
    out[:, 7] = np.cos(boxes[:, YAW])
    out[:, 8] = boxes[:, VX]
    out[:, 9] = boxes[:, VY]
    return out


def build_targets(gt_boxes: Sequence[np.ndarray | None], grid: BevGridConfig, n_classes: int) -> DetectionTargets:
    """Targets for a batch; frames without ground truth (None) contribute empty targets."""
    hh, ww = grid.head_shape
    cell = grid.head_cell_m
    b = len(gt_boxes)
    heatmap = np.zeros((b, n_classes, hh, ww), np.float32)
    per_frame = []
    for i, boxes in enumerate(gt_boxes):
        if boxes is None or len(boxes) == 0:
            per_frame.append((np.zeros((0, N_REGRESSION), np.float32), np.zeros(0, np.int64)))
            continue
        boxes = boxes.astype(np.float64)  # cell assignment in double precision, as decoding reads it
        fx = (boxes[:, X] - grid.x_min_m) / cell
        fy = (boxes[:, Y] - grid.y_min_m) / cell
        inside = (fx >= 0) & (fx < hh) & (fy >= 0) & (fy < ww)
        boxes, fx, fy = boxes[inside], fx[inside], fy[inside]
        row, col = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        # Peak width follows the object's footprint (a car's centre is less precise than a person's).
        sigma = np.maximum(np.minimum(boxes[:, L], boxes[:, W]) / cell / 2.0, MIN_SIGMA_CELLS)
        rr = np.arange(hh)[:, None] + 0.5
        cc = np.arange(ww)[None, :] + 0.5
        for k in range(len(boxes)):
            r0, c0, s = row[k] + 0.5, col[k] + 0.5, sigma[k]
            rad = int(np.ceil(3 * s))
            r_lo, r_hi = max(0, row[k] - rad), min(hh, row[k] + rad + 1)
            c_lo, c_hi = max(0, col[k] - rad), min(ww, col[k] + rad + 1)
            g = np.exp(-((rr[r_lo:r_hi] - r0) ** 2 + (cc[:, c_lo:c_hi] - c0) ** 2) / (2 * s * s))
            cls = int(boxes[k, CLASS_ID])
            np.maximum(heatmap[i, cls, r_lo:r_hi, c_lo:c_hi], g, out=heatmap[i, cls, r_lo:r_hi, c_lo:c_hi])
        per_frame.append((box_regression(boxes, row, col, grid), row * ww + col))
    m = max(1, max(len(c) for _r, c in per_frame))
    regression = np.zeros((b, m, N_REGRESSION), np.float32)
    cells = np.zeros((b, m), np.int64)
    valid = np.zeros((b, m), bool)
    for i, (reg, c) in enumerate(per_frame):
        regression[i, : len(c)] = reg
        cells[i, : len(c)] = c
        valid[i, : len(c)] = True
    return DetectionTargets(torch.from_numpy(heatmap), torch.from_numpy(regression), torch.from_numpy(cells),
                            torch.from_numpy(valid))
