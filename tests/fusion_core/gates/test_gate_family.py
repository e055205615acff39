"""Contract tests over every registered gate mode (``GATES``): each runs a real frame on a tiny
model and returns a valid result, declares truthfully what it reads (gates file, context head,
ground truth), is refused where it cannot run, and has its compare columns and label. A new entry
in ``GATES`` is tested here without a line added."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.data.shard_source import ShardSource
from fusion_core.energy.profile import load_device_profile
from fusion_core.evaluation.compare import default_modes, mode_label
from fusion_core.gates.config import load_gates_config
from fusion_core.gates.gate import Gate, GateDecision, GateFrame
from fusion_core.gates.modes import GATES
from fusion_core.gates.modules import GateModules
from fusion_core.gates.settings import GateSettings
from fusion_core.metrics.model_eval import visible_ground_truth
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.runtime.cost_table import measure_cost_table
from fusion_core.runtime.dynamic_fusion import DynamicFusion

MODES = list(GATES)


@pytest.fixture(scope="module")
def tiny(tiny_shards):
    """An untrained tiny detector and gates (the contract holds for any weights), one frame with
    every sensor, its targets and visible ground truth, and the frame's cost table."""
    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config).eval()
    batch = BatchCollator(model_config)([ShardSource(tiny_shards)[7]])
    assert bool(batch.inputs.present.all())
    visible = visible_ground_truth(batch.gt_boxes, batch.gt_hidden, model_config.grid, "the test")[0]
    table = measure_cost_table(detector, gates, batch.inputs)
    return detector, gates, batch, visible, table


def runner(tiny, mode: str, **settings) -> DynamicFusion:
    detector, gates, _batch, _visible, table = tiny
    return DynamicFusion(detector, gates, GateSettings(mode=mode, **settings), cost_table=table,
                         profile=load_device_profile("jetson_orin"))


def test_the_registry_is_the_settings_choices_and_every_entry_is_a_gate():
    assert GateSettings.__dataclass_fields__["mode"].metadata["choices"] == tuple(GATES)
    for name, cls in GATES.items():
        assert issubclass(cls, Gate) and cls.name == name
        assert cls.compute_component is None or cls.compute_component.startswith("gate:")


@pytest.mark.parametrize("mode", MODES)
def test_every_gate_runs_a_frame_and_returns_a_valid_result(tiny, mode):
    detector, _gates, batch, visible, table = tiny
    fusion = runner(tiny, mode)
    gate = GATES[mode]
    decisions: list[GateDecision] = []
    decide = fusion.gate.decide

    def spy(frame: GateFrame) -> GateDecision:
        decisions.append(decide(frame))
        return decisions[-1]

    fusion.gate.decide = spy
    result = fusion.run_frame(batch.inputs, batch.targets, visible)

    decision, = decisions
    assert decision.active.shape == decision.weights.shape == (1, len(detector.experts))
    assert decision.active.dtype == torch.bool and bool(decision.active.any())
    assert bool((decision.weights[~decision.active] == 0).all())
    assert float(decision.weights.sum()) == pytest.approx(1.0, abs=1e-5)
    assert set(result.active_experts) == {n for n, on in zip(detector.expert_names, decision.active[0].tolist()) if on}
    assert result.configuration == decision.configuration
    assert result.boxes.ndim == 2 and result.boxes.shape[1] == 11
    assert 0 <= result.exit_index < detector.config.n_exits
    assert set(result.components) <= set(table.flops) and table.total(result.components) > 0
    # what it declares is what it did
    assert ("context" in result.components) == gate.reads_context
    assert (result.condition_estimate is not None) == gate.reads_context
    own = {c for c in result.components if c.startswith("gate:")}
    assert own == ({gate.compute_component} if gate.compute_component else set())
    if gate.late_fusion:  # each expert ran the head alone
        assert result.components["head:entry"] == len(result.active_experts)
    else:
        assert result.components["head:entry"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_gate_that_needs_gates_refuses_to_run_without_them(tiny, mode):
    detector, _gates, _batch, _visible, table = tiny
    make = lambda: DynamicFusion(detector, None, GateSettings(mode=mode), cost_table=table,
                                 profile=load_device_profile("jetson_orin"))
    if GATES[mode].needs_gates:
        with pytest.raises(ValueError, match="needs trained gates"):
            make()
    else:
        assert make().gate.name == mode


@pytest.mark.parametrize("mode", MODES)
def test_only_offline_gates_need_ground_truth(tiny, mode):
    _detector, _gates, batch, _visible, _table = tiny
    fusion = runner(tiny, mode)
    if GATES[mode].offline_only:
        with pytest.raises(ValueError, match="ground-truth"):
            fusion.run_frame(batch.inputs)
    else:
        fusion.run_frame(batch.inputs)  # a robot has no ground truth


@pytest.mark.parametrize("mode", MODES)
def test_every_gate_warms_up_and_can_be_switched_to_at_run_time(tiny, mode):
    _detector, _gates, batch, _visible, _table = tiny
    fusion = runner(tiny, "static")
    fusion.set_settings(GateSettings(mode=mode))
    calls = dict(fusion.detector.calls)
    fusion.warm_up(batch.inputs)
    assert fusion.gate.name == mode and dict(fusion.detector.calls) == calls


def test_a_gate_that_prices_energy_needs_a_cost_table(tiny):
    detector, gates, *_ = tiny
    for mode in MODES:
        settings = GateSettings(mode=mode, lam_per_j=1.0)
        try:
            DynamicFusion(detector, gates, settings)
        except ValueError as err:
            assert "cost table" in str(err), (mode, err)


def test_compare_runs_every_gate_in_registry_order_with_distinct_labels():
    modes = default_modes(k_values=(1, 3), lams_per_j=(0.0, 2.0), gamma=0.25)
    assert list(dict.fromkeys(m.settings.mode for m in modes)) == MODES
    labels = [m.label for m in modes]
    assert len(set(labels)) == len(labels)
    assert all(m.label == mode_label(m.settings) == GATES[m.settings.mode].label(m.settings) for m in modes)


def test_gate_settings_ranges_and_choices_are_enforced():
    for f in GateSettings.__dataclass_fields__.values():
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is not None:
            with pytest.raises(ConfigError, match=f.name):
                GateSettings(**{f.name: type(f.default)(lo) - 1})
        if hi is not None:
            with pytest.raises(ConfigError, match=f.name):
                GateSettings(**{f.name: type(f.default)(hi) + 1})
    with pytest.raises(ConfigError, match="mode"):
        GateSettings(mode="teleport")
    with pytest.raises(ConfigError, match="gates.k: 0 is below"):
        from_mapping(GateSettings, {"k": 0}, "gates")


def test_settings_and_the_registry_import_without_torch():
    probe = ("import sys; import fusion_core.gates.settings, fusion_core.gates.modes, fusion_core.exits.settings; "
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
