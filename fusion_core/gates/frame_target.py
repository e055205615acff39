"""What the loss gate predicts for each configuration, and what the oracle minimises: one number
per frame, measured at the last exit.

    detection_loss   focal + box regression loss (``model.loss.per_frame_detection_loss``), the
                     EcoFusion quantity; differentiable, but it can disagree with mAP: a sharp
                     single-sensor heatmap may score a lower loss than a fusion that finds more
    detection_error  1 - F1 of the decoded boxes against the visible ground truth, averaged over
                     the AP distance thresholds (``exits.error_predictor.mean_frame_detection_error``);
                     in [0, 1], closer to what mAP rewards

The two live on different scales (loss of a few units, error in [0, 1]): λ and γ are in the
target's unit, so the useful λ range differs by the target.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fusion_core.exits.error_predictor import mean_frame_detection_error
from fusion_core.model.config import ModelConfig
from fusion_core.model.decode import decode_exit
from fusion_core.model.head import ExitOutput
from fusion_core.model.loss import per_frame_detection_loss
from fusion_core.model.targets import DetectionTargets

FRAME_TARGETS: tuple[str, ...] = ("detection_loss", "detection_error")


def frame_target(kind: str, output: ExitOutput, targets: DetectionTargets,
                 visible_ground_truth: Sequence[np.ndarray] | None, config: ModelConfig) -> torch.Tensor:
    """(B,) the ``kind`` target of each frame of ``output`` (one exit's output for B frames).
    ``visible_ground_truth``: per frame the (G, BOX_DIM) boxes that count (in the detection region,
    not hidden); needed by ``detection_error`` only."""
    if kind == "detection_loss":
        return per_frame_detection_loss(output, targets)
    if kind != "detection_error":
        raise ValueError(f"unknown frame target {kind!r}; choose one of {', '.join(FRAME_TARGETS)}")
    if visible_ground_truth is None:
        raise ValueError("the detection_error target needs the visible ground-truth boxes of every frame")
    boxes = decode_exit(output, config.grid, config.max_detections, config.score_threshold)
    if len(boxes) != len(visible_ground_truth):
        raise ValueError(f"{len(boxes)} frames of output but {len(visible_ground_truth)} ground-truth sets")
    return torch.tensor([mean_frame_detection_error(d, g) for d, g in zip(boxes, visible_ground_truth)],
                        dtype=torch.float32)

