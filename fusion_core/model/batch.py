"""Frames as a labelled model batch: inputs, detection targets and the ground truth they came from.

Training, evaluation, exit calibration and gate training all batch frames this way, so it lives
with the model (below every stage that uses it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY, FusionSample, frame_groups
from fusion_core.model.config import ModelConfig
from fusion_core.model.inputs import ModelInputs, collate
from fusion_core.model.targets import DetectionTargets, build_targets


@dataclass
class TrainingBatch:
    inputs: ModelInputs
    targets: DetectionTargets
    gt_boxes: list[np.ndarray | None]   # per frame (N, 11) base_link, None when the source has none
    gt_hidden: list[np.ndarray | None]  # per frame (N,) bool: too occluded to see (not targets, not misses)
    groups: list[tuple[str, ...]]       # per frame evaluation groups


class BatchCollator:
    """Picklable collate function for DataLoader workers. Boxes with visibility below
    ``min_visibility`` are left out of the training targets."""

    def __init__(self, config: ModelConfig, min_visibility: float = DEFAULT_MIN_VISIBILITY):
        self.config = config
        self.min_visibility = min_visibility

    def __call__(self, samples: list[FusionSample]) -> TrainingBatch:
        hidden = [s.gt_hidden(self.min_visibility) for s in samples]
        visible_boxes = [None if s.gt_boxes is None else s.gt_boxes[~h] for s, h in zip(samples, hidden)]
        return TrainingBatch(
            inputs=collate(samples, self.config.grid),
            targets=build_targets(visible_boxes, self.config.grid, len(self.config.classes)),
            gt_boxes=[s.gt_boxes for s in samples],
            gt_hidden=hidden,
            groups=[frame_groups(s) for s in samples],
        )
