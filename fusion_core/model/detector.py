"""The multi-exit fusion detector: stems -> experts -> weighted fusion -> multi-exit head.

Skipping is real: a stem runs only when some frame of the batch has its sensor, an expert only
when the expert mask selects it and one of its sensors is present, and exits beyond
``last_exit`` are never computed. ``FusionDetector.calls`` counts what actually ran.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from fusion_core.model.config import DETECTION_SENSORS, ModelConfig
from fusion_core.model.experts import FusionExpert
from fusion_core.model.head import ExitOutput, MultiExitHead
from fusion_core.model.inputs import ModelInputs
from fusion_core.model.stems import ImuStem, PointStem, RgbStem


@dataclass
class DetectorOutput:
    exits: list[ExitOutput]          # exits 0..last_exit, shallow to deep
    distill_students: list[ExitOutput]  # exits 0..last_exit-1 on detached trunk features (empty unless asked)
    expert_weights: torch.Tensor     # (B, E) fusion weight of each expert (0 for experts that did not run)
    active_experts: torch.Tensor     # (B, E) bool: the expert ran for this frame
    context: torch.Tensor            # (B, D) IMU context vector
    has_input: torch.Tensor          # (B,) bool: at least one expert ran (else the outputs carry no evidence)


class FusionDetector(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        g, cs, cp = config.grid, config.stem_channels, config.point_feature_channels
        self.stems = nn.ModuleDict({
            "lidar": PointStem(1, g, cp, cs),
            "radar": PointStem(2, g, cp, cs),
            "depth": PointStem(1, g, cp, cs),
            "rgb": RgbStem(g, config.rgb_channels, cs, config.rgb_lift_heights_m),
        })
        self.imu = ImuStem(config.imu_context_channels)
        self.experts = nn.ModuleList(FusionExpert(e, g, cs, config.expert_channels) for e in config.experts)
        # Static fusion weights (the gates of later stages replace them per frame).
        self.expert_logits = nn.Parameter(torch.zeros(len(config.experts)))
        self.context_bias = nn.Linear(config.imu_context_channels, config.expert_channels)
        self.head = MultiExitHead(config.expert_channels, config.head_channels, config.exit_blocks, len(config.classes))
        self.calls: Counter[str] = Counter()

    @property
    def expert_names(self) -> tuple[str, ...]:
        return self.config.expert_names

    def stem_features(self, inputs: ModelInputs) -> dict[str, torch.Tensor | None]:
        """BEV features (B, C, H, W) of every stem whose sensor some frame has; None otherwise."""
        b = inputs.batch_size
        out: dict[str, torch.Tensor | None] = {}
        for sensor in DETECTION_SENSORS:
            if not bool(inputs.sensor_present(sensor).any()):
                out[sensor] = None
                continue
            self.calls[f"stem:{sensor}"] += 1
            if sensor == "rgb":
                out[sensor] = self.stems["rgb"](inputs.rgb, inputs.rgb_camera)
            else:
                out[sensor] = self.stems[sensor](getattr(inputs, sensor), b)
        return out

    def forward(self, inputs: ModelInputs, expert_mask: torch.Tensor | None = None,
                last_exit: int | None = None, distill_students: bool = False) -> DetectorOutput:
        """``expert_mask``: (E,) or (B, E) bool of experts allowed to run (default: all).
        ``distill_students``: also return the early exits' self-distillation copies (training)."""
        b = inputs.batch_size
        e = len(self.experts)
        present = {s: inputs.sensor_present(s) for s in DETECTION_SENSORS}
        active = torch.stack([ex.available(present) for ex in self.experts], 1)  # (B, E)
        if expert_mask is not None:
            mask = torch.as_tensor(expert_mask, dtype=torch.bool)
            if mask.shape[-1] != e:
                raise ValueError(f"expert_mask has {mask.shape[-1]} entries, the model has {e} experts")
            active = active & mask.expand(b, e)
        needed = {s for k, ex in enumerate(self.experts) if bool(active[:, k].any()) for s in ex.sensors}
        stems = self.stem_features(_only(inputs, needed)) if needed else {}
        context = self.imu(inputs.imu)

        # A large negative rather than -inf: a frame with no active expert must not produce NaN.
        weights = torch.softmax(self.expert_logits.expand(b, e).masked_fill(~active, -1e9), dim=1) * active
        has_input = active.any(1)
        h, w = self.config.grid.head_shape
        fused = torch.zeros(b, self.config.expert_channels, h, w)
        for k, expert in enumerate(self.experts):
            if not bool(active[:, k].any()):
                continue
            self.calls[f"expert:{expert.config.name}"] += 1
            fused = fused + weights[:, k, None, None, None] * expert(stems, present, b)
        fused = fused + self.context_bias(context)[:, :, None, None]
        exits, students = self.head(fused, last_exit, distill_students)
        for k in range(len(exits)):
            self.calls[f"exit:{k}"] += 1
        return DetectorOutput(exits, students, weights, active, context, has_input)


def _only(inputs: ModelInputs, sensors: set[str]) -> ModelInputs:
    """The inputs with sensors outside ``sensors`` marked absent (their stems are skipped)."""
    keep = torch.tensor([s in sensors for s in DETECTION_SENSORS])
    return ModelInputs(inputs.present & keep, inputs.lidar, inputs.radar, inputs.depth, inputs.rgb,
                       inputs.rgb_camera, inputs.imu, inputs.imu_present)
