"""FLOPs of every component the dynamic runner can run, measured once on a full frame with
``FlopCounterMode`` (through ``fusion_core.energy.flops``, which adds the CPU attention kernels
torch 2.13 counts as 0). A frame's compute energy is then the sum over the components that ran
for it. The point stems' MLPs scale with the point count; their share is a few percent of a stem,
so one representative frame is close enough, and it keeps per-frame accounting free.

Component names follow ``fusion_core.energy.ledger``: ``stem:<sensor>``, ``stem:imu``,
``context``, ``gate:attention`` / ``gate:loss``, ``expert:<name>``, ``head:entry`` (with the IMU context bias and the
weighted sum), ``exit:<k>`` (trunk stage k and exit head k).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fusion_core.energy.flops import count_flops
from fusion_core.gates.modules import GateModules, gate_features
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import ModelInputs
from fusion_core.vocabulary import CONTEXT_COMPONENT, DETECTION_SENSORS, HEAD_ENTRY_COMPONENT, exit_component, expert_component, gate_component, stem_component


@dataclass(frozen=True)
class CostTable:
    flops: Mapping[str, int]  # component -> FLOPs for one frame

    def frame_flops(self, components: Mapping[str, int]) -> dict[str, int]:
        """component -> FLOPs for one frame that ran each component ``components[name]`` times."""
        unknown = sorted(set(components) - set(self.flops))
        if unknown:
            raise KeyError(f"components without a measured cost: {unknown}")
        return {name: self.flops[name] * n for name, n in components.items() if n}

    def total(self, components: Mapping[str, int]) -> int:
        return sum(self.frame_flops(components).values())

    def head_flops(self, n_exits: int) -> tuple[float, ...]:
        """(K,) cumulative head FLOPs: the entry and stages 0..k (what stopping at exit k costs)."""
        total, out = float(self.flops[HEAD_ENTRY_COMPONENT]), []
        for k in range(n_exits):
            total += self.flops[exit_component(k)]
            out.append(total)
        return tuple(out)

    def to_json(self) -> dict:
        return dict(self.flops)


def measure_cost_table(detector: FusionDetector, gates: GateModules | None, frame: ModelInputs) -> CostTable:
    """``frame``: one frame (batch 1) with every detection sensor present."""
    if frame.batch_size != 1 or not bool(frame.present.all()):
        raise ValueError("the cost table needs one frame with every detection sensor present")
    detector.eval()
    with torch.no_grad():
        counts = count_flops(detector, frame).by_module
    root = type(detector).__name__

    def module(path: str) -> int:
        return int(counts.get(f"{root}.{path}", 0))

    flops = {stem_component(s): module(f"stems.{s}") for s in DETECTION_SENSORS}
    flops[stem_component("imu")] = module("imu")
    for k, expert in enumerate(detector.experts):
        flops[expert_component(expert.config.name)] = module(f"experts.{k}")
    h, w = detector.config.grid.head_shape
    weighted_sum = 2 * len(detector.experts) * detector.config.expert_channels * h * w
    flops[HEAD_ENTRY_COMPONENT] = module("head.entry") + module("context_bias") + weighted_sum
    for k in range(detector.config.n_exits):
        flops[exit_component(k)] = module(f"head.stages.{k}") + module(f"head.exits.{k}")
    if gates is not None:
        with torch.no_grad():
            flops[CONTEXT_COMPONENT] = count_flops(gates.context_head, frame).total
            encoded = detector.encode(frame)
            features = gate_features(encoded, gates.context_head(frame))
            flops[gate_component("attention")] = count_flops(gates.attention, features).total
            flops[gate_component("loss")] = count_flops(gates.loss_predictor, features).total
    else:
        flops[CONTEXT_COMPONENT] = flops[gate_component("attention")] = flops[gate_component("loss")] = 0
    return CostTable(flops)
