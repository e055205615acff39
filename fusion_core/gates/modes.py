"""The gate modes, one class each, and ``GATES``: name -> class, in the order comparisons list them.

    static     every available expert, the detector's static weights (what every gate is measured against)
    late       HydraFusion's late fusion: every available single-sensor expert alone, boxes fused
    knowledge  rules per estimated condition and sensor health (the gates file's rules)
    attention  learned scores choose the top-k available experts; static weights fuse them (or the
               gate's mixture-of-experts weights: attention_weights=gate)
    loss       EcoFusion: predicted loss per configuration (an ensemble: mean + spread_weight x its
               members' disagreement), within γ of the best, argmin loss + λ·energy
    oracle     the loss gate's choice with the true loss (ground truth: offline only, a bound)

The module imports no torch at import time (the settings' choices and the CLI read ``GATES``):
each ``decide`` imports the torch code it calls.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fusion_core.gates.gate import Gate, GateDecision, GateFrame, GateSetup
from fusion_core.vocabulary import gate_component

if TYPE_CHECKING:
    import torch

    from fusion_core.gates.settings import GateSettings


# The configuration a learned gate reports when it falls back to static fusion on unfamiliar input.
FALLBACK_CONFIGURATION = "static:unfamiliar_input"


def unfamiliar_input(scaler, features: torch.Tensor, settings: GateSettings) -> bool:
    """The frame's (1, F) gate features are far from the training frames': mean squared z-score
    under the gate's own feature scaler above ``settings.ood_z2``. A learned gate extrapolates
    there (measured: a frozen IMU gives about 13000 and sends the attention gate from 0.69 to 0.23
    mAP), while static fusion needs no such judgement."""
    return settings.ood_z2 > 0 and float((scaler(features) ** 2).mean()) > settings.ood_z2


class StaticGate(Gate):
    """Every available expert, fused with the detector's static weights."""

    name = "static"

    def decide(self, frame: GateFrame) -> GateDecision:
        return frame.static_decision(frame.available)


class LateGate(Gate):
    """Every available single-sensor expert runs the head alone; their boxes are fused (weighted
    box fusion). The decision's weights are not used."""

    name = "late"
    late_fusion = True

    def check(self, setup: GateSetup, settings: GateSettings) -> None:
        super().check(setup, settings)
        if not bool(setup.single_sensor.any()):
            raise ValueError("late fusion needs single-sensor experts; the model has none")

    def decide(self, frame: GateFrame) -> GateDecision:
        return frame.static_decision(frame.available & frame.setup.single_sensor[None])


class KnowledgeGate(Gate):
    """The gates file's experts for the estimated condition, less those of sensors estimated degraded."""

    name = "knowledge"
    needs_gates = True
    reads_context = True

    def decide(self, frame: GateFrame) -> GateDecision:
        from fusion_core.gates.knowledge import knowledge_active

        setup = frame.setup
        return frame.static_decision(knowledge_active(setup.gates.rules, frame.context, frame.available,
                                                      setup.expert_uses_sensor))


class TopKAttentionGate(Gate):
    """Scores from every stem's pooled features and the context estimate; the top k run."""

    name = "attention"
    needs_gates = True
    reads_context = True
    compute_component = gate_component("attention")

    @classmethod
    def label(cls, settings: GateSettings) -> str:
        # the MoE-weighted variant is marked; the default (static weights) keeps the plain label
        return f"{cls.name} k={settings.k}" + (" moe" if settings.attention_weights == "gate" else "")

    @classmethod
    def compare_settings(cls, defaults: GateSettings, *, k_values: Sequence[int], lams_per_j: Sequence[float],
                         gamma: float) -> list[GateSettings]:
        return [dataclasses.replace(defaults, mode=cls.name, k=k) for k in k_values]

    def decide(self, frame: GateFrame) -> GateDecision:
        from fusion_core.gates.attention import topk_mask
        from fusion_core.gates.modules import gate_features

        attention = frame.setup.gates.attention
        features = gate_features(frame.encode(), frame.context)
        if unfamiliar_input(attention.scaler, features, frame.settings):
            return frame.static_decision(frame.available, FALLBACK_CONFIGURATION)
        scores = attention(features)
        if frame.settings.attention_weights == "static":
            # The scores choose, the static weights fuse: a gate's weights alone can send a frame to
            # a broken branch (measured: -0.44 mAP at night with every expert computed), while the
            # static weights over any subset are what the head was trained with.
            return frame.static_decision(topk_mask(scores, frame.available, frame.settings.k))
        return attention.decide(scores, frame.available, frame.settings.k)


class _ConfigurationGate(Gate):
    """A choice among the gates file's configurations by a loss per configuration (γ, λ)."""

    needs_gates = True

    @classmethod
    def label(cls, settings: GateSettings) -> str:
        return f"{cls.name} λ={settings.lam_per_j:g}"

    @classmethod
    def compare_settings(cls, defaults: GateSettings, *, k_values: Sequence[int], lams_per_j: Sequence[float],
                         gamma: float) -> list[GateSettings]:
        return [dataclasses.replace(defaults, mode=cls.name, gamma=gamma, lam_per_j=lam) for lam in lams_per_j]

    def check(self, setup: GateSetup, settings: GateSettings) -> None:
        super().check(setup, settings)
        if settings.lam_per_j > 0 and not setup.priced:
            raise ValueError("lam_per_j > 0 needs a cost table and a device profile (energy per configuration)")

    @staticmethod
    def choose(frame: GateFrame, loss: torch.Tensor) -> GateDecision:
        """The configuration within γ of the best ``loss`` (1, C) minimising loss + λ·energy."""
        from fusion_core.gates.loss_gate import choose_configuration

        gates, available, settings = frame.setup.gates, frame.available, frame.settings
        masks = gates.configuration_masks
        configuration_available = (available[:, None, :] & masks[None]).any(2)  # (1, C)
        choice = int(choose_configuration(loss, configuration_available, frame.configuration_energy(available),
                                          settings.gamma, settings.lam_per_j)[0])
        return frame.static_decision(available & masks[choice][None], gates.configuration_names[choice])


class LossGate(_ConfigurationGate):
    """EcoFusion: the predicted loss of every configuration."""

    name = "loss"
    reads_context = True
    compute_component = gate_component("loss")

    def decide(self, frame: GateFrame) -> GateDecision:
        from fusion_core.gates.loss_gate import pessimistic_loss
        from fusion_core.gates.modules import gate_features

        predictor = frame.setup.gates.loss_predictor
        settings = frame.settings
        features = gate_features(frame.encode(), frame.context)
        if unfamiliar_input(predictor.scaler, features, settings):
            return frame.static_decision(frame.available, FALLBACK_CONFIGURATION)
        every_expert = frame.setup.gates.configuration_masks.all(1)  # (C,) the static configuration(s)
        return self.choose(frame, pessimistic_loss(predictor.member_losses(features), every_expert,
                                                   settings.spread_weight, settings.static_margin))


class OracleGate(_ConfigurationGate):
    """The true last-exit target (the gates' loss_target) of every configuration against ground
    truth. Its own work is not charged: the oracle is a bound, not a system."""

    name = "oracle"
    offline_only = True

    def decide(self, frame: GateFrame) -> GateDecision:
        from fusion_core.gates.loss_gate import true_configuration_targets

        gates = frame.setup.gates
        kind = gates.config.training.loss_target
        if frame.targets is None:
            raise ValueError("the oracle gate needs ground-truth targets")
        if kind == "detection_error" and frame.visible_ground_truth is None:
            raise ValueError("the oracle of gates trained on detection_error needs the visible ground-truth boxes")
        loss = true_configuration_targets(frame.setup.detector, frame.encode(), frame.available,
                                          gates.configuration_masks, kind, frame.targets, frame.visible_ground_truth)
        return self.choose(frame, loss)


GATES: dict[str, type[Gate]] = {g.name: g for g in (StaticGate, LateGate, KnowledgeGate, TopKAttentionGate,
                                                     LossGate, OracleGate)}
