"""Training the gates on top of a trained, frozen detector (the design's stage 2): the context
head on the simulator's labels, the attention gate end to end through the frozen experts and
head with straight-through Gumbel top-k masks, and the loss predictor on every configuration's
measured per-frame loss. The detector's weights never change here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from fusion_core.data.open_source import spread_indices
from fusion_core.data.sample import FusionSample
from fusion_core.exits.calibration import calibrate_exits
from fusion_core.gates.attention import (
    annealed_temperature,
    gumbel_topk_weights,
    random_topk_weights,
)
from fusion_core.gates.context_head import (
    context_inputs,
    context_labels,
    fit_context_head,
    score_context,
)
from fusion_core.gates.fitting import fit_full_batch
from fusion_core.gates.frame_target import frame_target
from fusion_core.gates.modules import GateModules, gate_features
from fusion_core.metrics.model_eval import visible_ground_truth
from fusion_core.model.batch import BatchCollator, TrainingBatch
from fusion_core.model.detector import FusionDetector
from fusion_core.model.loss import detection_loss
from fusion_core.training.data import drop_sensors
from fusion_core.vocabulary import TRAINING_DROPOUT


@dataclass
class GateTrainingReport:
    n_frames: int
    context_train_accuracy: dict = field(default_factory=dict)
    attention_losses: list[float] = field(default_factory=list)
    loss_predictor_losses: list[float] = field(default_factory=list)
    configuration_mean_loss: dict[str, float] = field(default_factory=dict)
    exit_calibration_frames: int = 0

    def to_json(self) -> dict:
        def every(values: list[float], n: int = 50) -> list[float]:
            return [round(v, 5) for v in values[:: max(1, len(values) // n)]]
        return {"n_frames": self.n_frames, "context_train_accuracy": self.context_train_accuracy,
                "attention_losses": every(self.attention_losses), "loss_predictor_losses": every(self.loss_predictor_losses),
                "configuration_mean_loss": self.configuration_mean_loss,
                "exit_calibration_frames": self.exit_calibration_frames}


def gate_training_frames(source: Sequence[FusionSample], max_frames: int, sensor_dropout_prob: float,
                         single_sensor_prob: float, seed: int, imu_dropout_prob: float = 0.0) -> list[FusionSample]:
    """Up to ``max_frames`` frames spread evenly over ``source`` (every run and condition), with
    the detector's training-time sensor absence applied so gates learn to route around it, and
    the IMU made absent in a share ``imu_dropout_prob`` of them."""
    if len(source) == 0:
        raise ValueError("no frames to train the gates on")
    idx = spread_indices(len(source), max_frames)
    rng = np.random.default_rng([seed, 0x6A7E])
    frames = []
    for i in idx:
        s = source[int(i)]
        if s.gt_boxes is None or s.condition is None:
            raise ValueError(f"frame {int(i)} has no ground truth or condition label: gates train on labelled data")
        s = drop_sensors(s, sensor_dropout_prob, rng, single_sensor_prob)
        if s.present("imu") and rng.random() < imu_dropout_prob:
            s = s.without("imu", TRAINING_DROPOUT)
        frames.append(s)
    return frames


def _batches(frames: Sequence[FusionSample], collator: BatchCollator, batch_size: int,
             order: np.ndarray) -> list[TrainingBatch]:
    return [collator([frames[int(j)] for j in order[i:i + batch_size]]) for i in range(0, len(order), batch_size)]


def train_gates(detector: FusionDetector, gates: GateModules, source: Sequence[FusionSample],
                calibration_frames: Sequence[FusionSample] | None = None, head_flops: Sequence[float] | None = None,
                progress: bool = True) -> GateTrainingReport:
    """Stages 2 and 3: the gates on ``source``, then (when ``calibration_frames``, frames the
    detector did not train on, and the cumulative ``head_flops`` per exit are given) the exit
    calibration."""
    c = gates.config.training
    torch.manual_seed(c.seed)
    detector.eval()
    for p in detector.parameters():
        p.requires_grad_(False)
    frames = gate_training_frames(source, c.max_frames, c.sensor_dropout_prob, c.single_sensor_prob, c.seed,
                                  c.imu_dropout_prob)
    collator = BatchCollator(detector.config)
    report = GateTrainingReport(len(frames))

    # 1. Context head: cheap inputs only, full batch.
    xs = []
    for i in tqdm(range(0, len(frames), 32), desc="gates: context inputs", disable=not progress, leave=False):
        xs.append(context_inputs(collator(frames[i:i + 32]).inputs))
    x = torch.cat(xs)
    labels = context_labels(frames)
    fit_context_head(gates.context_head, x, labels, steps=c.context_steps, learning_rate=c.learning_rate, seed=c.seed)
    with torch.no_grad():
        report.context_train_accuracy = score_context(gates.context_head.estimate(x, labels.present), labels).to_json()

    # 2. Loss predictor data: every configuration's per-frame target (loss or error) at the last exit.
    masks = gates.configuration_masks
    feats, losses, available = [], [], []
    order = np.arange(len(frames))
    with torch.no_grad():
        for batch in tqdm(_batches(frames, collator, c.batch_size, order), desc="gates: configuration losses",
                          disable=not progress, leave=False):
            encoded = detector.encode(batch.inputs)
            avail = detector.available_experts(encoded.present)
            outputs = detector.expert_outputs(encoded, avail)
            context = gates.context_head(batch.inputs)
            feats.append(gate_features(encoded, context))
            per_conf, conf_avail = [], []
            visible = visible_ground_truth(batch.gt_boxes, batch.gt_hidden, detector.config.grid, "gate training")
            for mask in masks:
                active = avail & mask[None]
                fused = detector.combine(outputs, detector.static_weights(active), encoded.imu_context)
                exits, _ = detector.head(fused)
                per_conf.append(frame_target(c.loss_target, exits[-1], batch.targets, visible, detector.config))
                conf_avail.append(active.any(1))
            losses.append(torch.stack(per_conf, 1))
            available.append(torch.stack(conf_avail, 1))
    pooled_ctx = torch.cat(feats)
    loss_table = torch.cat(losses)
    avail_table = torch.cat(available)
    for j, name in enumerate(gates.configuration_names):
        if bool(avail_table[:, j].any()):
            report.configuration_mean_loss[name] = float(loss_table[avail_table[:, j], j].mean())
    report.loss_predictor_losses = fit_loss_predictor(gates, pooled_ctx, loss_table, avail_table, c.loss_predictor_steps,
                                                      c.learning_rate, c.seed)

    # 3. Attention gate through the frozen experts and head.
    report.attention_losses = fit_attention_gate(detector, gates, frames, collator, pooled_ctx, progress)

    # 4. Exit calibration on held-out frames.
    if calibration_frames is not None and len(calibration_frames):
        if head_flops is None:
            raise ValueError("exit calibration needs the cumulative head FLOPs per exit")
        gates.exit_calibration = calibrate_exits(detector, calibration_frames, head_flops, progress=progress)
        report.exit_calibration_frames = len(calibration_frames)
    gates.eval()
    return report


def fit_loss_predictor(gates: GateModules, features: torch.Tensor, loss_table: torch.Tensor, available: torch.Tensor,
                       steps: int, learning_rate: float, seed: int) -> list[float]:
    """Full-batch Huber regression of (N, C) per-frame losses on (N, F) gate features, each
    member of the predictor on its own bootstrap resample of the N frames (frame weights drawn
    as multinomial counts; the first member sees every frame once, so one member is the plain
    fit); unavailable configurations carry no target. Returns the first member's loss per step."""
    predictor = gates.loss_predictor
    predictor.scaler.fit(features)
    n = features.shape[0]
    rng = np.random.default_rng([seed, 0xB007])
    x = predictor.scaler(features)
    history: list[float] = []
    for m, member in enumerate(predictor.members):
        counts = np.ones(n) if m == 0 else np.bincount(rng.integers(0, n, n), minlength=n)
        weight = available.float() * torch.as_tensor(counts, dtype=torch.float32)[:, None]

        def loss_of(member=member, weight=weight, x=x) -> torch.Tensor:
            err = torch.nn.functional.huber_loss(member(x), loss_table, reduction="none", delta=1.0)
            return (err * weight).sum() / weight.sum().clamp(min=1)

        losses = fit_full_batch(member, loss_of, steps, learning_rate)
        if m == 0:
            history = losses
    predictor.eval()
    return history


def fit_attention_gate(detector: FusionDetector, gates: GateModules, frames: Sequence[FusionSample],
                       collator: BatchCollator, all_features: torch.Tensor, progress: bool = True) -> list[float]:
    """Straight-through Gumbel top-k training of the attention gate through the frozen experts
    and head. ``all_features``: (N, F) gate features of every training frame (the input scaler's
    statistics). Each step draws its k from the config's list. The gate starts out close to static
    fusion (output bias = the detector's static logits, output weights scaled down), so it only
    has to learn departures from it."""
    c = gates.config.training
    gen = torch.Generator().manual_seed(c.seed)
    rng = np.random.default_rng([c.seed, 0xA77E])
    gate = gates.attention
    optimizer = torch.optim.AdamW(gate.parameters(), lr=c.learning_rate, weight_decay=1e-4)
    expert_params = torch.tensor([float(sum(p.numel() for p in ex.parameters())) for ex in detector.experts])
    energy_share = expert_params / expert_params.sum()  # parameter count tracks cost: every expert runs on one grid
    gate.scaler.fit(all_features)
    with torch.no_grad():
        last = gate.body[-1]
        last.weight.mul_(0.1)
        last.bias.copy_(detector.expert_logits)
    history = []
    gate.train()
    for step in tqdm(range(c.attention_steps), desc="gates: attention", disable=not progress, leave=False):
        batch = collator([frames[int(j)] for j in rng.choice(len(frames), c.batch_size, replace=False)])
        with torch.no_grad():
            encoded = detector.encode(batch.inputs)
            avail = detector.available_experts(encoded.present)
            outputs = detector.expert_outputs(encoded, avail)
            context = gates.context_head(batch.inputs)
            feats = gate_features(encoded, context)
        scores = gate(feats)
        k = int(rng.choice(c.attention_k))
        if step < c.attention_warmup_steps:
            weights = random_topk_weights(scores, avail, k, gen)
        else:
            tau = annealed_temperature(step - c.attention_warmup_steps, c.temperature_start, c.temperature_floor,
                                       c.temperature_decay_steps)
            weights = gumbel_topk_weights(scores, avail, k, tau, gen)
        fused = detector.combine(outputs, weights, encoded.imu_context)
        exits, _ = detector.head(fused)
        loss = detection_loss(exits, batch.targets).total
        if c.energy_weight > 0:
            soft = torch.softmax(scores.masked_fill(~avail, -1e9), 1)
            loss = loss + c.energy_weight * (soft * energy_share).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    gate.eval()
    return history
