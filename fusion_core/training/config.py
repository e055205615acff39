"""Training configuration (``configs/train/*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import load_yaml, param


@dataclass(frozen=True)
class TrainConfig:
    name: str = param("default", "run name (logs, checkpoints)")
    seed: int = param(0, "seed of initialisation, data order, sensor dropout and expert masks", lo=0)
    steps: int = param(2000, "optimiser steps", lo=1)
    batch_size: int = param(8, "frames per step (per process under torchrun)", lo=1, hi=1024)
    learning_rate: float = param(2e-3, "peak AdamW learning rate", lo=1e-6, hi=1.0)
    weight_decay: float = param(1e-4, "AdamW weight decay", lo=0.0, hi=1.0)
    warmup_steps: int = param(100, "linear warm-up, then cosine decay to 5% of the peak", lo=0)
    grad_clip_norm: float = param(5.0, "gradient norm clip (0 = off)", lo=0.0)
    sensor_dropout_prob: float = param(0.2, "chance each detection sensor is made absent in a training frame", lo=0.0, hi=0.9)
    single_sensor_prob: float = param(0.15, "chance a training frame keeps only one detection sensor (trains every single-sensor path)", lo=0.0, hi=1.0)
    expert_keep_prob: float = param(0.6, "chance each expert runs in a training step (at least one always does)", lo=0.05, hi=1.0)
    full_model_prob: float = param(0.3, "chance a step runs every expert (so static fusion is trained too)", lo=0.0, hi=1.0)
    weight_jitter_prob: float = param(0.0, "chance a step perturbs each frame's fusion weights "
                                      "(trains the head for a gate's per-frame weights)", lo=0.0, hi=1.0)
    weight_jitter_std: float = param(1.0, "standard deviation of the Gaussian noise added to the expert logits when jittering", lo=0.0, hi=10.0)
    camera_depth_weight: float = param(1.0, "weight of the depth lift's LiDAR-supervised depth loss (models with rgb_lift: depth)", lo=0.0, hi=100.0)
    distill_weight: float = param(0.5, "self-distillation weight of the early exits (0 = off)", lo=0.0, hi=100.0)
    val_fraction: float = param(0.1, "share of the data held out for validation when no --val is given", lo=0.0, hi=0.5)
    val_every_steps: int = param(250, "validate every this many steps (and at the end)", lo=1)
    val_max_frames: int = param(200, "frames used per validation", lo=1)
    checkpoint_every_steps: int = param(250, "write a checkpoint every this many steps (and at the end)", lo=1)
    keep_checkpoints: int = param(2, "periodic checkpoints kept (the final one is always kept)", lo=1)
    log_every_steps: int = param(10, "write a log row every this many steps", lo=1)
    threads: int = param(2, "torch CPU threads of the training process", lo=1, hi=256)
    loader_workers: int = param(1, "data-loading worker processes (0 = load in the training process)", lo=0, hi=64)


def load_train_config(path: Path | str) -> TrainConfig:
    return load_yaml(TrainConfig, path)
