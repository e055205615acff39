"""Checkpoints: plain tensors and plain data only, so they load with ``weights_only=True``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fusion_core.config_io import ConfigError, from_mapping, to_mapping
from fusion_core.model.config import ModelConfig
from fusion_core.model.detector import FusionDetector
from fusion_core.shipped import resolve_input
from fusion_core.training.config import TrainConfig

FORMAT = "dyn_fusion.checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    step: int
    model_config: ModelConfig
    train_config: TrainConfig | None
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    scheduler_state: dict[str, Any] | None


def save_checkpoint(path: Path, model: FusionDetector, step: int, train_config: TrainConfig | None = None,
                    optimizer=None, scheduler=None) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "version": VERSION, "step": int(step),
        "model_config": to_mapping(model.config),
        "train_config": to_mapping(train_config) if train_config is not None else None,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path | str) -> Checkpoint:
    """The checkpoint at ``path`` (a relative path missing from the working directory is looked
    up among the shipped files: fusion_core.shipped.resolve_input)."""
    path = resolve_input(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ConfigError(f"{path}: not a readable dyn_fusion checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a dyn_fusion checkpoint")
    if payload.get("version") != VERSION:
        raise ConfigError(f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    train = payload["train_config"]
    return Checkpoint(
        step=int(payload["step"]),
        model_config=from_mapping(ModelConfig, payload["model_config"], "model_config"),
        train_config=from_mapping(TrainConfig, train, "train_config") if train is not None else None,
        model_state=payload["model"], optimizer_state=payload["optimizer"], scheduler_state=payload["scheduler"],
    )


def load_detector(path: Path | str) -> FusionDetector:
    """A detector in eval mode from a checkpoint."""
    ckpt = load_checkpoint(path)
    model = FusionDetector(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    return model.eval()
