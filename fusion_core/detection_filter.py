"""What a consumer of the stack's detections gets: the model's boxes above a score, one box per
object.

The model reports every box scoring >= its ``score_threshold`` (0.05), which is what average
precision integrates over; on a frame with ~17 objects that is up to 64 boxes, several of them on
one object under different classes (the heatmap has one peak per class, so a pedestrian can also
peak as a cyclist). A planner or a tracker downstream wants the boxes a detection stack stands
behind: :func:`filter_detections` keeps those scoring >= ``min_score`` and then suppresses, in
score order and across classes, every box whose bird's-eye rotated IoU with a kept box exceeds
``nms_iou`` (two real objects do not overlap in bird's-eye view; one object seen as two classes
does). The unfiltered boxes stay available for evaluation (``fusion_node`` publishes both).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_core.box_fusion import rotated_bev_iou
from fusion_core.boxes import BOX_DIM, SCORE
from fusion_core.config_io import param


@dataclass(frozen=True)
class DetectionFilterSettings:
    """Which boxes are published as the stack's detections (run-time settings)."""

    # 0.4 and 0.2: the best F1 on the test collection (benchmarks/publish_filter.py: precision 0.97,
    # recall 0.87, 6.1 boxes per frame for 6.7 visible objects; 61 boxes without the filter)
    min_score: float = param(0.4, "boxes scoring below this are left out (the model reports down to its "
                                  "score_threshold, 0.05, for evaluation)", lo=0.0, hi=1.0)
    nms_iou: float = param(0.2, "a box whose bird's-eye IoU with a higher-scoring box of any class exceeds "
                                "this is suppressed (1 = no suppression)", lo=0.0, hi=1.0)
    max_boxes: int = param(100, "at most this many boxes per frame, highest scores first", lo=1, hi=10_000)


def filter_detections(boxes: np.ndarray, settings: DetectionFilterSettings) -> tuple[np.ndarray, np.ndarray]:
    """(the kept boxes, highest score first, and their row indices in ``boxes``) of an (N, BOX_DIM)
    box array (fusion_core.boxes layout); see the module doc."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, BOX_DIM)
    candidates = np.flatnonzero(boxes[:, SCORE] >= settings.min_score)
    candidates = candidates[np.argsort(-boxes[candidates, SCORE], kind="stable")]
    if settings.nms_iou < 1.0 and len(candidates) > 1:
        iou = rotated_bev_iou(boxes[candidates], boxes[candidates])
        kept_mask = np.ones(len(candidates), bool)
        for i in range(len(candidates)):
            if kept_mask[i]:
                # everything after i that overlaps it too much goes (i outranks it)
                kept_mask[i + 1:] &= iou[i, i + 1:] <= settings.nms_iou
        candidates = candidates[kept_mask]
    kept = candidates[: settings.max_boxes]
    return boxes[kept], kept
