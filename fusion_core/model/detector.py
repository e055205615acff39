"""The multi-exit fusion detector: stems -> experts -> weighted fusion -> multi-exit head.

Three stages a gate can sit between: ``encode`` (stems, IMU context), ``fuse`` (the chosen experts,
weighted) and the head. Skipping is real: a stem runs only when some frame of the batch has its
sensor (and the caller asked for it), an expert only when it is active for some frame, and exits
beyond ``last_exit`` are never computed. ``FusionDetector.calls`` counts what actually ran.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from fusion_core.model.config import ModelConfig
from fusion_core.model.experts import FusionExpert
from fusion_core.model.head import ExitOutput, MultiExitHead
from fusion_core.model.inputs import ModelInputs
from fusion_core.model.stems import STEMS
from fusion_core.vocabulary import DETECTION_SENSORS, SENSOR_SPECS, exit_component, expert_component, stem_component

_STEM_BUILD_ORDER = ("lidar", "radar", "depth", "rgb")  # a new detection sensor goes last


@dataclass
class EncodedFrames:
    """Stage 1 of the detector (stems and IMU context): what a gate sees before choosing experts."""

    stems: dict[str, torch.Tensor | None]  # sensor -> (B, Cs, H, W) BEV features; None = not computed
    present: dict[str, torch.Tensor]       # sensor -> (B,) bool: the sensor's data is in the frame
    imu_context: torch.Tensor              # (B, D) IMU context vector
    imu_present: torch.Tensor              # (B,) bool: the IMU window is in the frame
    signals: torch.Tensor                  # (B, N_CONTEXT_SIGNALS) cheap context signals
    batch_size: int
    stem_channels: int                     # Cs
    camera_depth_logits: torch.Tensor | None = None  # (B, D, Hf, Wf) of a depth-lift RGB stem that ran

    def pooled_stems(self) -> torch.Tensor:
        """(B, 2 * 4 * Cs) mean- and max-pooled BEV features of every detection stem, zeros for a
        sensor absent from the frame (or not encoded); the gates' summary of the scene."""
        parts = []
        for sensor in DETECTION_SENSORS:
            feats = self.stems[sensor]
            if feats is None:
                parts.append(torch.zeros(self.batch_size, 2 * self.stem_channels))
                continue
            here = self.present[sensor].to(feats.dtype)[:, None]
            parts.append(torch.cat([feats.mean((2, 3)), feats.amax((2, 3))], 1) * here)
        return torch.cat(parts, 1)


@dataclass
class DetectorOutput:
    exits: list[ExitOutput]          # exits 0..last_exit, shallow to deep
    distill_students: list[ExitOutput]  # exits 0..last_exit-1 on detached trunk features (empty unless asked)
    expert_weights: torch.Tensor     # (B, E) fusion weight of each expert (0 for experts that did not run)
    active_experts: torch.Tensor     # (B, E) bool: the expert ran for this frame
    context: torch.Tensor            # (B, D) IMU context vector
    has_input: torch.Tensor          # (B,) bool: at least one expert ran (else the outputs carry no evidence)
    camera_depth_logits: torch.Tensor | None = None  # (B, D, Hf, Wf) of a depth-lift RGB stem (training's depth loss)


class FusionDetector(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        g, cs = config.grid, config.stem_channels
        # Built in _STEM_BUILD_ORDER, not DETECTION_SENSORS order: construction order decides which
        # seeded random numbers initialise which stem, so trained models stay reproducible.
        self.stems = nn.ModuleDict({s: STEMS[SENSOR_SPECS[s].stem](config) for s in _STEM_BUILD_ORDER})
        self.imu = STEMS[SENSOR_SPECS["imu"].stem](config)
        self.experts = nn.ModuleList(FusionExpert(e, g, cs, config.expert_channels, config.expert_blocks) for e in config.experts)
        # Static fusion weights (the gates of later stages replace them per frame).
        self.expert_logits = nn.Parameter(torch.zeros(len(config.experts)))
        self.context_bias = nn.Linear(config.imu_context_channels, config.expert_channels)
        self.head = MultiExitHead(config.expert_channels, config.head_channels, config.exit_blocks, len(config.classes))
        self.calls: Counter[str] = Counter()

    inference_only = False  # fusion_core.model.inference_form sets it: BatchNorm folded away

    def train(self, mode: bool = True) -> FusionDetector:
        if mode and self.inference_only:
            raise RuntimeError("this detector is an inference form (BatchNorm folded into the convolutions); "
                               "train the checkpoint's detector instead")
        return super().train(mode)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return self.config.expert_names

    def stem_features(self, inputs: ModelInputs) -> tuple[dict[str, torch.Tensor | None], torch.Tensor | None]:
        """BEV features (B, C, H, W) of every stem whose sensor some frame has (None otherwise), and
        the (B, D, Hf, Wf) depth logits of a depth-lift RGB stem that ran (None otherwise)."""
        b = inputs.batch_size
        out: dict[str, torch.Tensor | None] = {}
        depth_logits = None
        for sensor in DETECTION_SENSORS:
            if not bool(inputs.sensor_present(sensor).any()):
                out[sensor] = None
                continue
            self.calls[stem_component(sensor)] += 1
            stem = self.stems[sensor]
            if sensor == "rgb":
                out[sensor], depth_logits = stem.encode(inputs.rgb, inputs.rgb_camera)
            else:
                out[sensor] = stem(getattr(inputs, sensor), b)
        return out, depth_logits

    def available_experts(self, present: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, E) bool: the expert has at least one of its sensors in the frame."""
        return torch.stack([ex.available(present) for ex in self.experts], 1)

    def encode(self, inputs: ModelInputs, sensors: set[str] | None = None) -> EncodedFrames:
        """Stage 1: the stems of ``sensors`` (default: every present detection sensor) and the IMU
        context. A sensor left out is treated as absent from here on."""
        if sensors is not None:
            inputs = _only(inputs, set(sensors))
        present = {s: inputs.sensor_present(s) for s in DETECTION_SENSORS}
        stems, depth_logits = self.stem_features(inputs)
        self.calls[stem_component("imu")] += 1
        return EncodedFrames(stems, present, self.imu(inputs.imu), inputs.imu_present, inputs.signals,
                             inputs.batch_size, self.config.stem_channels, depth_logits)

    def static_weights(self, active: torch.Tensor, logit_noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, E) learned static fusion weights renormalised over the ``active`` (B, E) experts;
        ``logit_noise`` (B, E), added to the logits, is training's weight jitter."""
        b, e = active.shape
        logits = self.expert_logits.expand(b, e)
        if logit_noise is not None:
            logits = logits + logit_noise
        # A large negative rather than -inf: a frame with no active expert must not produce NaN.
        return torch.softmax(logits.masked_fill(~active, -1e9), dim=1) * active

    def expert_outputs(self, encoded: EncodedFrames, active: torch.Tensor) -> dict[int, torch.Tensor]:
        """Expert index -> (B, C, H, W) output, for the experts ``active`` (B, E) for some frame;
        the others are not computed."""
        b = encoded.batch_size
        outputs = {}
        for k, expert in enumerate(self.experts):
            if not bool(active[:, k].any()):
                continue
            missing = [s for s in expert.sensors if encoded.stems[s] is None and bool(encoded.present[s].any())]
            if missing:
                raise ValueError(f"expert {expert.config.name} needs stems {missing} that were not encoded")
            self.calls[expert_component(expert.config.name)] += 1
            outputs[k] = expert(encoded.stems, encoded.present, b)
        return outputs

    def combine(self, outputs: dict[int, torch.Tensor], weights: torch.Tensor, imu_context: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) fused features: the ``weights`` (B, E)-weighted sum of expert ``outputs``
        plus the IMU context bias. Experts with a non-zero weight must be in ``outputs``."""
        b = weights.shape[0]
        h, w = self.config.grid.head_shape
        fused = torch.zeros(b, self.config.expert_channels, h, w)
        for k, out in outputs.items():
            fused = fused + weights[:, k, None, None, None] * out
        return fused + self.context_bias(imu_context)[:, :, None, None]

    def fuse(self, encoded: EncodedFrames, active: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Stage 2: (B, C, H, W) weighted sum of the experts ``active`` (B, E) for some frame, with
        ``weights`` (B, E) (zero where inactive); experts active for no frame are not computed."""
        return self.combine(self.expert_outputs(encoded, active), weights, encoded.imu_context)

    def forward(self, inputs: ModelInputs, expert_mask: torch.Tensor | None = None,
                last_exit: int | None = None, distill_students: bool = False,
                expert_logit_noise: torch.Tensor | None = None) -> DetectorOutput:
        """Static fusion. ``expert_mask``: (E,) or (B, E) bool of experts allowed to run (default: all).
        ``distill_students``: also return the early exits' self-distillation copies (training).
        ``expert_logit_noise``: (B, E) jitter of the fusion weights (training; see ``static_weights``)."""
        b = inputs.batch_size
        e = len(self.experts)
        present = {s: inputs.sensor_present(s) for s in DETECTION_SENSORS}
        active = self.available_experts(present)
        if expert_mask is not None:
            mask = torch.as_tensor(expert_mask, dtype=torch.bool)
            if mask.shape[-1] != e:
                raise ValueError(f"expert_mask has {mask.shape[-1]} entries, the model has {e} experts")
            active = active & mask.expand(b, e)
        needed = {s for k, ex in enumerate(self.experts) if bool(active[:, k].any()) for s in ex.sensors}
        encoded = self.encode(inputs, needed)
        weights = self.static_weights(active, expert_logit_noise)
        fused = self.fuse(encoded, active, weights)
        exits, students = self.head(fused, last_exit, distill_students)
        for k in range(len(exits)):
            self.calls[exit_component(k)] += 1
        return DetectorOutput(exits, students, weights, active, encoded.imu_context, active.any(1),
                              encoded.camera_depth_logits)


def _only(inputs: ModelInputs, sensors: set[str]) -> ModelInputs:
    """The inputs with sensors outside ``sensors`` marked absent (their stems are skipped)."""
    keep = torch.tensor([s in sensors for s in DETECTION_SENSORS])
    return ModelInputs(inputs.present & keep, inputs.lidar, inputs.radar, inputs.depth, inputs.rgb,
                       inputs.rgb_camera, inputs.imu, inputs.imu_present, inputs.signals)
