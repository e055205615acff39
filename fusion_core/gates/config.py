"""Gate configuration (``configs/gates/*.yaml``): the knowledge rule table, the configurations the
loss gate and the oracle choose between, and how the learned gates are trained."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import ConfigError, load_yaml, param
from fusion_core.gates.frame_target import FRAME_TARGETS
from fusion_core.gates.loss_gate import ExpertConfiguration
from fusion_core.vocabulary import CONDITIONS


@dataclass(frozen=True)
class KnowledgeRule:
    condition: str = param("clear", "estimated condition this rule applies to", choices=CONDITIONS)
    experts: tuple[str, ...] = param(("all",), "experts run in that condition")


@dataclass(frozen=True)
class GateTrainConfig:
    seed: int = param(0, "seed of data order, sensor dropout, Gumbel noise and initialisation", lo=0)
    max_frames: int = param(1500, "training frames used by the gate stages (spread over the whole set)", lo=1)
    batch_size: int = param(8, "frames per step", lo=1, hi=256)
    sensor_dropout_prob: float = param(0.2, "chance each detection sensor is made absent in a frame", lo=0.0, hi=0.9)
    single_sensor_prob: float = param(0.15, "chance a frame keeps only one detection sensor", lo=0.0, hi=1.0)
    imu_dropout_prob: float = param(0.1, "chance a frame's IMU window is made absent (the IMU context shifts every "
                                    "fused feature map, so gates must see frames without it)", lo=0.0, hi=1.0)
    context_steps: int = param(800, "full-batch steps of the context head", lo=1)
    attention_steps: int = param(400, "optimiser steps of the attention gate", lo=1)
    attention_k: tuple[int, ...] = param((1, 2, 3, 7), "experts kept per frame while training the attention gate: each step draws one "
                                         "(k is a run-time setting, so the gate learns every k it will meet)")
    attention_warmup_steps: int = param(60, "first steps with random top-k masks", lo=0)
    temperature_start: float = param(2.0, "Gumbel-softmax temperature at the end of the warm-up", lo=0.01)
    temperature_floor: float = param(0.3, "lowest temperature (colder: vanishing gradients)", lo=0.01)
    temperature_decay_steps: int = param(250, "steps from the start temperature to the floor", lo=0)
    energy_weight: float = param(0.0, "attention: loss added per unit of expected expert energy share (energy-aware objective)", lo=0.0)
    loss_target: str = param("detection_loss", "what the loss predictor learns and the oracle minimises per configuration "
                             "(gates/frame_target.py); λ and γ are in its unit", choices=FRAME_TARGETS)
    loss_predictor_steps: int = param(1500, "optimiser steps of each loss predictor member", lo=1)
    loss_predictor_members: int = param(5, "loss predictor ensemble size: each member learns from its own bootstrap "
                                        "resample of the frames; their disagreement is the gate's uncertainty "
                                        "(GateSettings.spread_weight)", lo=1, hi=32)
    learning_rate: float = param(2e-3, "AdamW learning rate of every gate stage", lo=1e-6, hi=1.0)


@dataclass(frozen=True)
class GatesConfig:
    name: str = param("default", "name (reports, checkpoints)")
    knowledge_rules: tuple[KnowledgeRule, ...] = param((), "condition -> experts table of the knowledge gate")
    configurations: tuple[ExpertConfiguration, ...] = param((), "expert sets the loss gate and the oracle choose between")
    training: GateTrainConfig = param(GateTrainConfig(), "how the context head, attention gate and loss predictor are trained")

    def __post_init__(self):
        if not self.training.attention_k or min(self.training.attention_k) < 1:
            raise ConfigError(f"training.attention_k: need at least one k >= 1, got {self.training.attention_k}")
        names = [c.name for c in self.configurations]
        if len(set(names)) != len(names):
            raise ConfigError(f"configurations: names must be unique, got {names}")
        conds = [r.condition for r in self.knowledge_rules]
        if sorted(conds) != sorted(CONDITIONS):
            raise ConfigError(f"knowledge_rules: need one rule per condition {', '.join(CONDITIONS)}, got {conds}")
        if not self.configurations:
            raise ConfigError("configurations: at least one is needed")

    def rules_by_condition(self) -> dict[str, tuple[str, ...]]:
        return {r.condition: r.experts for r in self.knowledge_rules}


def load_gates_config(path: Path | str) -> GatesConfig:
    return load_yaml(GatesConfig, path)
