"""The attention gate's fusion weights: with ``attention_weights=static`` the gate only chooses and
the detector's static weights fuse, so keeping every expert is static fusion exactly, and a gate
whose scores pile onto one branch cannot hand that branch the whole frame."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_core.data.shard_source import ShardSource
from fusion_core.gates.config import load_gates_config
from fusion_core.gates.gate import GateFrame
from fusion_core.gates.modes import GATES
from fusion_core.gates.modules import GateModules
from fusion_core.gates.settings import GateSettings
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.runtime.dynamic_fusion import DynamicFusion


@pytest.fixture(scope="module")
def tiny(tiny_shards):
    torch.manual_seed(3)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    with torch.no_grad():  # static weights that differ between experts, as a trained model's do
        detector.expert_logits.copy_(torch.linspace(-1.0, 1.0, len(model_config.experts)))
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config).eval()
    with torch.no_grad():  # a gate sure of one branch, the failure the safety is for
        gates.attention.body[-1].bias.zero_()
        gates.attention.body[-1].bias[0] = 50.0
    batch = BatchCollator(model_config)([ShardSource(tiny_shards)[7]])
    return detector, gates, batch


def _decision(tiny, **settings):
    detector, gates, batch = tiny
    fusion = DynamicFusion(detector, gates, GateSettings(mode="attention", **settings))
    seen = []
    gate = fusion.gate
    original = gate.decide

    def spy(frame: GateFrame):
        seen.append(original(frame))
        return seen[-1]

    gate.decide = spy
    result = fusion.run_frame(batch.inputs, batch.targets)
    return seen[0], result


def test_every_expert_kept_with_static_weights_is_static_fusion(tiny):
    detector, gates, batch = tiny
    n = len(detector.experts)
    decision, result = _decision(tiny, k=n, attention_weights="static")
    static = DynamicFusion(detector, gates, GateSettings(mode="static")).run_frame(batch.inputs, batch.targets)
    available = detector.available_experts(detector.encode(batch.inputs).present)
    assert torch.equal(decision.active, available)
    torch.testing.assert_close(decision.weights, detector.static_weights(available))
    assert result.active_experts == static.active_experts
    np.testing.assert_array_equal(result.boxes, static.boxes)


def test_gate_weights_follow_the_scores_static_weights_do_not(tiny):
    detector, _gates, _batch = tiny
    n = len(detector.experts)
    by_gate, _ = _decision(tiny, k=n, attention_weights="gate")
    by_static, _ = _decision(tiny, k=n, attention_weights="static")
    assert torch.equal(by_gate.active, by_static.active)
    assert float(by_gate.weights[0, 0]) > 0.99                 # the sure gate gives branch 0 everything
    assert float(by_static.weights[0, 0]) < 0.5                # static weights keep the others in
    assert float(by_static.weights.sum()) == pytest.approx(1.0)
    # with fewer experts kept, the scores still choose which ones
    chosen, _ = _decision(tiny, k=2, attention_weights="static")
    assert int(chosen.active.sum()) == 2 and bool(chosen.active[0, 0])


def test_the_setting_is_a_choice():
    assert GateSettings.__dataclass_fields__["attention_weights"].metadata["choices"] == ("static", "gate")
    assert GATES["attention"].label(GateSettings(k=2, attention_weights="gate")) == "attention k=2 moe"
    with pytest.raises(ValueError, match="attention_weights"):
        GateSettings(mode="attention", attention_weights="average")
