"""Exit calibration (the design's third training stage): run every exit of the static detector
on held-out frames, record each frame's confidence and detection error at every exit, and from
them build the ``budget`` policy (thresholds solved for a target share of the head's compute)
and the ``error`` policy (a QuEE error predictor). Head costs are FLOPs from the cost table,
cumulative: running up to exit k pays the head's entry and stages 0..k."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY, FusionSample
from fusion_core.exits.confidence import exit_confidences
from fusion_core.exits.error_predictor import (
    ErrorPredictor,
    fit_error_predictor,
    frame_detection_error,
)
from fusion_core.exits.policies import BudgetExit, ErrorExit
from fusion_core.metrics.model_eval import visible_ground_truth
from fusion_core.model.batch import BatchCollator
from fusion_core.model.decode import decode_exit
from fusion_core.model.detector import FusionDetector


@dataclass
class ExitCalibration:
    confidences: torch.Tensor        # (N, K) frame confidence at every exit, held-out frames
    errors: torch.Tensor             # (N, K) 1 - F1 at every exit
    head_flops: tuple[float, ...]    # (K,) cumulative head FLOPs up to and including exit k
    predictor: ErrorPredictor

    def budget_policy(self, head_fraction: float) -> BudgetExit:
        """Thresholds so the mean head compute is ``head_fraction`` of running every exit."""
        if not 0.0 < head_fraction <= 1.0:
            raise ValueError(f"head_fraction must be in (0, 1], got {head_fraction}")
        return BudgetExit(self.confidences, self.head_flops, head_fraction * self.head_flops[-1])

    def error_policy(self, lam_per_gflop: float) -> ErrorExit:
        """QuEE with lambda in error units per GFLOP of head compute."""
        return ErrorExit(self.predictor, tuple(f / 1e9 for f in self.head_flops), lam_per_gflop)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"confidences": self.confidences, "errors": self.errors,
                 "head_flops": torch.tensor(self.head_flops, dtype=torch.float64)}
        state.update({f"predictor.{k}": v for k, v in self.predictor.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ExitCalibration:
        predictor = ErrorPredictor.from_state_dict({k[len("predictor."):]: v for k, v in state.items()
                                                    if k.startswith("predictor.")})
        return cls(state["confidences"], state["errors"], tuple(state["head_flops"].tolist()), predictor)


def calibrate_exits(detector: FusionDetector, frames: Sequence[FusionSample], head_flops: Sequence[float], *,
                    batch_size: int = 8, min_visibility: float = DEFAULT_MIN_VISIBILITY,
                    progress: bool = True) -> ExitCalibration:
    """``frames`` must carry ground truth; ``head_flops`` (K,) cumulative head FLOPs per exit."""
    if len(head_flops) != detector.config.n_exits:
        raise ValueError(f"head_flops has {len(head_flops)} entries, the head {detector.config.n_exits} exits")
    collator = BatchCollator(detector.config, min_visibility)
    grid, cfg = detector.config.grid, detector.config
    confidences, errors = [], []
    detector.eval()
    with torch.no_grad():
        for i in tqdm(range(0, len(frames), batch_size), desc="calibrate exits", disable=not progress, leave=False):
            batch = collator([frames[j] for j in range(i, min(i + batch_size, len(frames)))])
            out = detector(batch.inputs)
            confidences.append(exit_confidences(out.exits))
            per_exit = [decode_exit(e, grid, cfg.max_detections, cfg.score_threshold, out.has_input) for e in out.exits]
            visible = visible_ground_truth(batch.gt_boxes, batch.gt_hidden, grid, "exit calibration")
            for f, gt in enumerate(visible):
                errors.append([frame_detection_error(boxes[f], gt) for boxes in per_exit])
    conf = torch.cat(confidences)
    err = torch.tensor(np.asarray(errors), dtype=torch.float64)
    return ExitCalibration(conf, err, tuple(float(f) for f in head_flops), fit_error_predictor(conf, err))
