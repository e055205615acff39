"""The learned parts of the gates, trained after the detector and saved beside it: the context
head, the attention gate and the loss predictor. Their checkpoint records the detector's expert
names and stem width, so a gate file cannot silently be paired with a different detector."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fusion_core.config_io import ConfigError, from_mapping, to_mapping
from fusion_core.exits.calibration import ExitCalibration
from fusion_core.gates.attention import AttentionGate
from fusion_core.gates.config import GatesConfig
from fusion_core.gates.context_head import (
    CONDITIONS,
    ContextEstimate,
    ContextHead,
)
from fusion_core.gates.knowledge import rule_masks
from fusion_core.gates.loss_gate import LossPredictor, configuration_masks
from fusion_core.model.config import ModelConfig
from fusion_core.model.detector import EncodedFrames
from fusion_core.shipped import resolve_input
from fusion_core.vocabulary import DETECTION_SENSORS

FORMAT = "dyn_fusion.gates"
VERSION = 2  # 2: gate features carry the IMU context and presence; the loss predictor is an ensemble


CONTEXT_FEATURES = len(CONDITIONS) + len(DETECTION_SENSORS) + len(DETECTION_SENSORS)  # estimate + presence flags


def gate_feature_size(model_config: ModelConfig) -> int:
    """Width of ``gate_features``: mean and max of every detection stem, the context, then the
    IMU context vector and the IMU's presence flag."""
    return 2 * len(DETECTION_SENSORS) * model_config.stem_channels + CONTEXT_FEATURES + model_config.imu_context_channels + 1


def gate_features(encoded: EncodedFrames, context: ContextEstimate) -> torch.Tensor:
    """(B, gate_feature_size) what the attention gate and the loss predictor read: the pooled
    stem features, the context estimate, which sensors delivered, and the IMU context. The IMU
    context is added to every fused feature map, so a missing or frozen IMU changes what each
    configuration scores (measured: every subset lost 0.06-0.09 mAP to static under IMU dropout
    while gates that could not see the IMU kept choosing subsets)."""
    present = torch.stack([encoded.present[s] for s in DETECTION_SENSORS], 1).float()
    return torch.cat([encoded.pooled_stems(), context.features(), present, encoded.imu_context,
                      encoded.imu_present.float()[:, None]], 1)


class GateModules(nn.Module):
    def __init__(self, config: GatesConfig, model_config: ModelConfig):
        super().__init__()
        self.config = config
        self.expert_names = model_config.expert_names
        self.stem_channels = model_config.stem_channels
        f = gate_feature_size(model_config)
        # Seeded initialisation without touching the caller's random state: the same config
        # gives the same gates, whatever ran before in the process.
        with torch.random.fork_rng():
            torch.manual_seed(config.training.seed)
            self.context_head = ContextHead()
            self.attention = AttentionGate(f, len(self.expert_names))
            self.loss_predictor = LossPredictor(f, len(config.configurations),
                                                members=config.training.loss_predictor_members)
        # Validated here so a bad table fails at load time, not at the first frame of that condition.
        self.register_buffer("rules", rule_masks(config.rules_by_condition(), self.expert_names), persistent=False)
        self.register_buffer("configuration_masks", configuration_masks(config.configurations, self.expert_names),
                             persistent=False)
        # Filled by the exit-calibration stage (budget and error exit policies); None until then.
        self.exit_calibration: ExitCalibration | None = None

    @property
    def configuration_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.config.configurations)


def save_gates(path: Path | str, gates: GateModules, report: dict | None = None) -> Path:
    """Write atomically; ``report`` (plain data) records how the gates were trained."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": to_mapping(gates.config),
               "expert_names": list(gates.expert_names), "stem_channels": gates.stem_channels,
               "state": gates.state_dict(), "report": report or {},
               "exit_calibration": None if gates.exit_calibration is None else gates.exit_calibration.state_dict()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_gates(path: Path | str, model_config: ModelConfig) -> GateModules:
    """Gates for a detector with ``model_config``; a file trained for other experts is refused.
    A relative ``path`` missing from the working directory is looked up among the shipped files."""
    path = resolve_input(path)
    if not path.is_file():
        raise FileNotFoundError(f"gates checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files raise several types
        raise ConfigError(f"{path}: not a readable gates checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a dyn_fusion gates checkpoint")
    if payload.get("version") != VERSION:
        raise ConfigError(f"{path}: gates checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    if tuple(payload["expert_names"]) != model_config.expert_names or payload["stem_channels"] != model_config.stem_channels:
        raise ConfigError(f"{path}: gates were trained for experts {payload['expert_names']} with "
                          f"{payload['stem_channels']} stem channels; the detector has {list(model_config.expert_names)} "
                          f"with {model_config.stem_channels}")
    gates = GateModules(from_mapping(GatesConfig, payload["config"], "config"), model_config)
    gates.load_state_dict(payload["state"])
    if payload.get("exit_calibration") is not None:
        gates.exit_calibration = ExitCalibration.from_state_dict(payload["exit_calibration"])
    return gates.eval()
