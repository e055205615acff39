"""Running a detector over a dataset and scoring every exit."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fusion_core.boxes import X, Y
from fusion_core.data.open_source import FrameSubset, source_blocks
from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY, FusionSample
from fusion_core.metrics.average_precision import DetectionEvaluator, GroupMetrics
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import BevGridConfig
from fusion_core.model.decode import decode_exit
from fusion_core.model.detector import FusionDetector
from fusion_core.vocabulary import DETECTION_SENSORS, EVALUATION_NOT_SELECTED


def in_region(boxes: np.ndarray, grid: BevGridConfig) -> np.ndarray:
    """(N,) bool: box centres inside the detection region (the model answers for nothing else)."""
    x, y = boxes[:, X], boxes[:, Y]
    return (x >= grid.x_min_m) & (x < grid.x_max_m) & (y >= grid.y_min_m) & (y < grid.y_max_m)


def visible_ground_truth(gt_boxes: Sequence[np.ndarray | None], gt_hidden: Sequence[np.ndarray | None],
                         grid: BevGridConfig, purpose: str) -> list[np.ndarray]:
    """Per frame the (G, BOX_DIM) ground truth that counts: inside the detection region and not
    hidden behind other objects. ValueError naming ``purpose`` for a frame without ground truth."""
    out = []
    for gt, hidden in zip(gt_boxes, gt_hidden):
        if gt is None:
            raise ValueError(f"{purpose} needs ground truth on every frame")
        out.append(gt[in_region(gt, grid) & ~hidden])
    return out


class SensorSubset(Sequence):
    """A view of a source in which only ``keep`` of the detection sensors are present (the
    others absent as "evaluation:not_selected"); the IMU, context rather than detection, stays."""

    def __init__(self, source: Sequence[FusionSample], keep: Sequence[str]):
        unknown = sorted(set(keep) - set(DETECTION_SENSORS))
        if unknown or not keep:
            raise ValueError(f"sensors: expected a non-empty subset of {', '.join(DETECTION_SENSORS)}, got {list(keep)}")
        self.source, self.keep = source, tuple(keep)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> FusionSample:
        sample = self.source[i]
        for sensor in DETECTION_SENSORS:
            if sensor not in self.keep and sample.present(sensor):
                sample = sample.without(sensor, EVALUATION_NOT_SELECTED)
        return sample

    def blocks(self) -> list[range]:
        return source_blocks(self.source)


@dataclass
class ModelEvaluation:
    per_exit: list[dict[str, GroupMetrics]]  # exit k -> group -> metrics ("all" always present)
    n_frames: int

    def mean_ap(self, exit_index: int = -1, group: str = "all") -> float | None:
        metrics = self.per_exit[exit_index].get(group)
        return None if metrics is None else metrics.mean_ap

    def to_json(self, pr_curve_points: int = 0) -> dict:
        return {"n_frames": self.n_frames,
                "exits": [{g: m.to_json(pr_curve_points) for g, m in groups.items()} for groups in self.per_exit]}


def evaluate_model(model: FusionDetector, source: Sequence[FusionSample], *, batch_size: int = 8,
                   expert_mask: torch.Tensor | None = None, max_frames: int | None = None,
                   progress: bool = True, workers: int = 0,
                   min_visibility: float = DEFAULT_MIN_VISIBILITY) -> ModelEvaluation:
    """mAP of every exit over ``source`` (frames without ground truth are skipped), grouped by
    condition and fault. ``expert_mask`` (E,) restricts which experts may run. Ground truth with
    visibility below ``min_visibility`` is "don't care" (hidden: neither found nor missed)."""
    n_frames = len(source) if max_frames is None else min(len(source), max_frames)
    loader = DataLoader(FrameSubset(source, range(n_frames)), batch_size=batch_size, collate_fn=BatchCollator(model.config, min_visibility),
                        num_workers=workers)
    evaluators = [DetectionEvaluator(model.config.classes) for _ in range(model.config.n_exits)]
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
                out = model(batch.inputs, expert_mask=expert_mask)
                for k, exit_out in enumerate(out.exits):
                    boxes = decode_exit(exit_out, model.config.grid, model.config.max_detections,
                                        model.config.score_threshold, out.has_input)
                    for det, gt, hidden, groups in zip(boxes, batch.gt_boxes, batch.gt_hidden, batch.groups):
                        if gt is not None:
                            keep = in_region(gt, model.config.grid)
                            evaluators[k].add_frame(det, gt[keep], groups, ignore=hidden[keep])
                n += sum(gt is not None for gt in batch.gt_boxes)
    finally:
        model.train(was_training)
    return ModelEvaluation([e.result() for e in evaluators], n)

