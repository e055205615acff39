"""The runner builder: from files or objects, every registered gate and exit policy gives a ready
runner with a cost table and the policy asked for; what cannot run is a one-line ConfigError."""
from __future__ import annotations

import pytest
import torch

from fusion_core.config_io import ConfigError
from fusion_core.data.shard_source import ShardSource
from fusion_core.energy.profile import load_device_profile
from fusion_core.exits.calibration import ExitCalibration
from fusion_core.exits.error_predictor import fit_error_predictor
from fusion_core.exits.policies import POLICIES
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.config import load_gates_config
from fusion_core.gates.modes import GATES
from fusion_core.gates.modules import GateModules, save_gates
from fusion_core.gates.settings import GateSettings
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.runtime.builder import build_dynamic_fusion, reference_inputs
from fusion_core.training.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def parts(tiny_shards, tmp_path_factory):
    """A tiny detector and gates with an exit calibration, saved to files, and a reference frame."""
    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config)
    k = model_config.n_exits
    confidences = torch.rand(30, k, generator=torch.Generator().manual_seed(1))
    errors = (1 - confidences).double()
    gates.exit_calibration = ExitCalibration(confidences, errors, tuple(float(i + 1) * 1e9 for i in range(k)),
                                             fit_error_predictor(confidences, errors))
    folder = tmp_path_factory.mktemp("builder")
    ckpt = save_checkpoint(folder / "tiny.pt", detector, step=0)
    gates_path = save_gates(folder / "gates.pt", gates)
    source = ShardSource(tiny_shards)
    return ckpt, gates_path, reference_inputs(source, range(len(source)), detector, tiny_shards)


@pytest.mark.parametrize("mode", list(GATES))
def test_every_gate_builds_from_files_and_runs(parts, mode):
    ckpt, gates_path, frame = parts
    fusion = build_dynamic_fusion(ckpt, gates_path, GateSettings(mode=mode), ExitSettings(), "jetson_orin", frame,
                                  warm_up=True)
    assert fusion.gate.name == mode and fusion.profile.name == "jetson_orin"
    assert fusion.cost_table.total({"head:entry": 1}) > 0
    assert sum(fusion.detector.calls.values()) == 0  # the warm-up left no trace
    if not GATES[mode].offline_only:
        assert fusion.run_frame(frame).boxes.shape[1] == 11


@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_exit_policy_builds_with_what_it_needs(parts, policy):
    ckpt, gates_path, frame = parts
    fusion = build_dynamic_fusion(ckpt, gates_path, GateSettings(), ExitSettings(policy=policy, deadline_ms=1e6),
                                  load_device_profile("jetson_orin"), frame)
    assert fusion.exit_policy.name == policy
    if policy == "deadline":  # timed on this machine, one time per stage
        assert len(fusion.exit_policy.predicted_stage_ms) == fusion.detector.config.n_exits
    result = fusion.run_frame(frame)
    assert 0 <= result.exit_index < fusion.detector.config.n_exits


def test_what_cannot_run_is_a_config_error(parts, tiny_shards):
    ckpt, gates_path, frame = parts
    for mode, gate in GATES.items():
        if gate.needs_gates:
            with pytest.raises(ConfigError, match="needs trained gates"):
                build_dynamic_fusion(ckpt, None, GateSettings(mode=mode), ExitSettings(), "jetson_orin", frame)
    with pytest.raises(ConfigError, match="exit calibration"):
        build_dynamic_fusion(ckpt, None, GateSettings(), ExitSettings(policy="budget"), "jetson_orin", frame)
    with pytest.raises(ConfigError, match="deadline"):
        build_dynamic_fusion(ckpt, gates_path, GateSettings(), ExitSettings(policy="deadline"), "jetson_orin", frame)
    source = ShardSource(tiny_shards)
    detector = FusionDetector(load_model_config("configs/model/tiny.yaml"))
    lidar_only = [source[i].without("rgb", "evaluation:dropout") for i in range(3)]
    with pytest.raises(ConfigError, match="no frame has every detection sensor"):
        reference_inputs(lidar_only, range(3), detector, "three frames")
