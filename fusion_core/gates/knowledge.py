"""Knowledge gate: a rule table from the *estimated* condition to the experts to run
(HydraFusion's knowledge-based gate), with sensor health on top: an expert fed by a sensor the
context head believes degraded, or by an absent sensor, is dropped while another rule expert is
left. A frame whose rule leaves nothing runs every available expert (never run blind)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fusion_core.config_io import ConfigError
from fusion_core.gates.context_head import ContextEstimate
from fusion_core.vocabulary import CONDITIONS, DETECTION_SENSORS

DEGRADED_THRESHOLD = 0.5


def rule_masks(rules: dict[str, tuple[str, ...]], expert_names: Sequence[str]) -> torch.Tensor:
    """(len(CONDITIONS), E) bool from condition -> expert names; every condition needs a rule."""
    missing = [c for c in CONDITIONS if c not in rules]
    unknown = sorted(set(rules) - set(CONDITIONS))
    if missing or unknown:
        raise ConfigError(f"knowledge_rules: need exactly the conditions {', '.join(CONDITIONS)} "
                          f"(missing {missing}, unknown {unknown})")
    masks = torch.zeros(len(CONDITIONS), len(expert_names), dtype=torch.bool)
    for i, cond in enumerate(CONDITIONS):
        if not rules[cond]:
            raise ConfigError(f"knowledge_rules.{cond}: at least one expert is needed")
        for name in rules[cond]:
            if name not in expert_names:
                raise ConfigError(f"knowledge_rules.{cond}: unknown expert {name!r} (model has {', '.join(expert_names)})")
            masks[i, list(expert_names).index(name)] = True
    return masks


def expert_sensor_matrix(expert_sensors: Sequence[Sequence[str]]) -> torch.Tensor:
    """(E, len(DETECTION_SENSORS)) bool: expert e reads sensor s (built once, not per frame)."""
    return torch.tensor([[s in sensors for s in DETECTION_SENSORS] for sensors in expert_sensors])


def knowledge_active(rules: torch.Tensor, context: ContextEstimate, available: torch.Tensor,
                     uses: torch.Tensor) -> torch.Tensor:
    """(B, E) bool experts to run: the estimated condition's rule, minus experts fed by a degraded
    sensor (unless that empties the rule), restricted to available experts, falling back to every
    available expert when nothing is left. ``uses``: ``expert_sensor_matrix`` of the experts."""
    wanted = rules[context.condition_index] & available
    degraded = context.degraded_prob > DEGRADED_THRESHOLD  # (B, S)
    touches_degraded = (degraded[:, None, :] & uses[None]).any(2)  # (B, E)
    healthy = wanted & ~touches_degraded
    chosen = torch.where(healthy.any(1, keepdim=True), healthy, wanted)
    return torch.where(chosen.any(1, keepdim=True), chosen, available)

