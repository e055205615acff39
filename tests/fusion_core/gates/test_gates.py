"""Gate modes on a tiny model: top-k keeps exactly k, Gumbel masks are hard forward and carry
gradients, the loss gate's lambda trades loss for energy, skipped stems and experts are never
called, and the gates train, save and load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_core.config_io import ConfigError
from fusion_core.data.shard_source import ShardSource
from fusion_core.energy.profile import load_device_profile
from fusion_core.gates.attention import (
    annealed_temperature,
    gumbel_topk_weights,
    moe_weights,
    topk_mask,
)
from fusion_core.gates.config import load_gates_config
from fusion_core.gates.context_head import ContextEstimate
from fusion_core.gates.knowledge import expert_sensor_matrix, knowledge_active
from fusion_core.gates.loss_gate import choose_configuration, configuration_sensor_j
from fusion_core.gates.modules import GateModules, gate_feature_size, gate_features, load_gates, save_gates
from fusion_core.gates.settings import GateSettings
from fusion_core.gates.training import gate_training_frames, train_gates
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.runtime.cost_table import measure_cost_table
from fusion_core.runtime.dynamic_fusion import DynamicFusion
from fusion_core.vocabulary import CONDITIONS, DETECTION_SENSORS


def test_topk_keeps_exactly_k_available_experts():
    scores = torch.tensor([[0.1, 3.0, 2.0, -1.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    available = torch.tensor([[True, True, True, True, False], [True, False, False, False, False]])
    mask = topk_mask(scores, available, 2)
    assert mask[0].tolist() == [False, True, True, False, False]  # expert 4 scores best but is unavailable
    assert mask[1].tolist() == [True, False, False, False, False]  # fewer than k available: all of them
    w = moe_weights(scores, mask)
    assert torch.allclose(w.sum(1), torch.ones(2))
    assert torch.allclose(w[0, 1] / w[0, 2], torch.exp(torch.tensor(1.0)))
    for k in (1, 2, 3, 4):
        assert int(topk_mask(scores, torch.ones_like(available), k).sum(1).unique()) == k


def test_gumbel_masks_are_hard_forward_and_carry_gradients():
    scores = torch.randn(6, 5, requires_grad=True)
    available = torch.ones(6, 5, dtype=torch.bool)
    available[0, :3] = False
    gen = torch.Generator().manual_seed(3)
    w = gumbel_topk_weights(scores, available, 2, temperature=0.5, generator=gen)
    assert ((w > 0).sum(1) == 2).all() and not bool((w[0, :3] > 0).any())
    assert torch.allclose(w.sum(1), torch.ones(6))
    (w * torch.arange(5.0)).sum().backward()
    assert scores.grad is not None and bool((scores.grad.abs() > 0).any())
    assert annealed_temperature(0, 2.0, 0.3, 100) == pytest.approx(2.0)
    assert annealed_temperature(100, 2.0, 0.3, 100) == pytest.approx(0.3)
    assert annealed_temperature(10_000, 2.0, 0.3, 100) == pytest.approx(0.3)


def test_loss_gate_lambda_trades_predicted_loss_for_energy():
    loss = torch.tensor([[1.0, 1.2, 3.0, 0.9]])
    available = torch.tensor([[True, True, True, True]])
    energy = torch.tensor([2.0, 1.0, 0.1, 5.0])
    assert int(choose_configuration(loss, available, energy, gamma=10.0, lam_per_j=0.0)[0]) == 3  # best loss
    assert int(choose_configuration(loss, available, energy, gamma=10.0, lam_per_j=1e3)[0]) == 2  # cheapest
    # gamma keeps only configurations within 0.35 of the best (0.9): the cheapest of those is 1.
    assert int(choose_configuration(loss, available, energy, gamma=0.35, lam_per_j=1e3)[0]) == 1
    available[0, 3] = False
    assert int(choose_configuration(loss, available, energy, gamma=10.0, lam_per_j=0.0)[0]) == 0


def test_sensor_pricing_charges_every_sensor_of_the_runnable_experts_once():
    # experts: lidar, radar, lidar_radar, all (rgb, depth, lidar, radar); sensors in DETECTION_SENSORS order
    uses = expert_sensor_matrix([("lidar",), ("radar",), ("lidar", "radar"), ("rgb", "depth", "lidar", "radar")])
    sensor_j = torch.tensor([0.25, 0.25, 0.8, 0.66])  # rgb, depth, lidar, radar: W x 0.1 s
    # configurations: lidar; lidar + lidar_radar; all; radar while radar is not available
    active = torch.tensor([[[True, False, False, False], [True, False, True, False],
                            [False, False, False, True], [False, False, False, False]]])
    j = configuration_sensor_j(active, uses, sensor_j)
    assert j.shape == (1, 4)
    assert j[0].tolist() == pytest.approx([0.8, 0.8 + 0.66, 1.96, 0.0])  # lidar counted once; nothing runs: free


def test_sensor_priced_lambda_moves_the_choice_to_cheaper_sensors():
    loss = torch.tensor([[1.0, 1.1, 1.3, 1.6]])  # all, lidar_radar, lidar, rgb
    available = torch.ones(1, 4, dtype=torch.bool)
    compute_j = torch.tensor([0.06, 0.03, 0.02, 0.02])
    sensor_j = torch.tensor([[1.96, 1.46, 0.8, 0.25]])
    priced = compute_j[None] + sensor_j
    picks = [int(choose_configuration(loss, available, priced, gamma=10.0, lam_per_j=lam)[0])
             for lam in (0.0, 0.25, 0.4, 1.0)]
    assert picks == [0, 1, 2, 3]  # each step of λ buys cheaper sensors
    chosen_j = [float(sensor_j[0, c]) for c in picks]
    assert chosen_j == sorted(chosen_j, reverse=True)
    # λ = 0 ignores energy, priced or not; (C,) compute energy works as before.
    assert int(choose_configuration(loss, available, priced, gamma=10.0, lam_per_j=0.0)[0]) == \
        int(choose_configuration(loss, available, compute_j, gamma=10.0, lam_per_j=0.0)[0]) == 0
    # compute only, the λ = 1 that buys rgb with sensors priced keeps every expert
    assert int(choose_configuration(loss, available, compute_j, gamma=10.0, lam_per_j=1.0)[0]) == 0
    # gamma still bounds the loss the price may buy: within 0.15 of the best, lidar_radar is the cheapest
    assert int(choose_configuration(loss, available, priced, gamma=0.15, lam_per_j=5.0)[0]) == 1


def test_knowledge_rules_follow_the_estimated_condition_and_health():

    sensors = expert_sensor_matrix([("lidar",), ("radar",), ("lidar", "radar"), ("rgb", "depth", "lidar", "radar")])
    rules = torch.zeros(len(CONDITIONS), 4, dtype=torch.bool)
    rules[:, 3] = True
    rules[CONDITIONS.index("fog"), :] = torch.tensor([False, True, True, False])
    fog = torch.zeros(1, len(CONDITIONS))
    fog[0, CONDITIONS.index("fog")] = 1.0
    healthy = torch.zeros(1, len(DETECTION_SENSORS))
    available = torch.ones(1, 4, dtype=torch.bool)
    assert knowledge_active(rules, ContextEstimate(fog, healthy), available, sensors)[0].tolist() == [False, True, True, False]
    lidar_bad = healthy.clone()
    lidar_bad[0, DETECTION_SENSORS.index("lidar")] = 0.9
    assert knowledge_active(rules, ContextEstimate(fog, lidar_bad), available, sensors)[0].tolist() == [False, True, False, False]
    none = torch.zeros(1, 4, dtype=torch.bool)
    none[0, 0] = True  # only the lidar expert can run: the rule leaves nothing, so run what is available
    assert knowledge_active(rules, ContextEstimate(fog, healthy), none, sensors)[0].tolist() == [True, False, False, False]


def test_gate_initialisation_ignores_the_callers_random_state():
    model_config = load_model_config("configs/model/tiny.yaml")
    config = load_gates_config("configs/gates/tiny.yaml")
    torch.manual_seed(1)
    a = GateModules(config, model_config).state_dict()
    torch.rand(100)
    b = GateModules(config, model_config).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config)
    source = ShardSource(tiny_shards)
    report = train_gates(detector, gates, source, progress=False)
    path = save_gates(tmp_path_factory.mktemp("gates") / "gates.pt", gates, report.to_json())
    return detector, load_gates(path, model_config), source, report


def test_gates_train_and_round_trip(trained, tmp_path):
    detector, gates, _source, report = trained
    assert report.loss_predictor_losses[-1] < report.loss_predictor_losses[0]
    assert set(report.configuration_mean_loss) == set(gates.configuration_names)
    assert len(report.attention_losses) == gates.config.training.attention_steps
    # The tiny set is one clear run: the context head must learn at least that.
    assert report.context_train_accuracy["condition_accuracy"]["clear"] > 0.9
    other = load_model_config("configs/model/default.yaml")
    path = save_gates(tmp_path / "g.pt", gates)
    with pytest.raises(ConfigError, match="trained for experts"):
        load_gates(path, other)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable"):
        load_gates(tmp_path / "bad.pt", detector.config)


def test_the_loss_predictor_members_learn_from_different_resamples(trained):
    detector, gates, source, _report = trained
    predictor = gates.loss_predictor
    assert len(predictor.members) == gates.config.training.loss_predictor_members > 1
    inputs = BatchCollator(detector.config)([source[i] for i in (0, 9, 17)]).inputs
    with torch.no_grad():
        members = predictor.member_losses(gate_features(detector.encode(inputs), gates.context_head(inputs)))
    assert members.shape == (3, len(predictor.members), len(gates.configuration_names))
    # bootstrap resamples and their own initialisation: the members disagree somewhat, and the
    # gate's prediction is their mean
    assert float(members.std(1).mean()) > 1e-3
    torch.testing.assert_close(predictor(gate_features(detector.encode(inputs), gates.context_head(inputs))),
                               members.mean(1))


def test_the_gates_see_the_imu_and_train_on_frames_without_it(trained):
    detector, gates, source, _report = trained
    sample = source[5]
    collate = BatchCollator(detector.config)
    with torch.no_grad():
        with_imu, without = (gate_features(detector.encode(x), gates.context_head(x))
                             for x in (collate([sample]).inputs, collate([sample.without("imu", "test")]).inputs))
    assert with_imu.shape == without.shape == (1, gate_feature_size(detector.config))
    assert float(with_imu[0, -1]) == 1.0 and float(without[0, -1]) == 0.0  # the presence flag
    assert not torch.equal(with_imu[0, -1 - detector.config.imu_context_channels:-1],
                           without[0, -1 - detector.config.imu_context_channels:-1])  # the IMU context
    frames = gate_training_frames([sample] * 400, 400, 0.0, 0.0, seed=3, imu_dropout_prob=0.25)
    share = np.mean([not f.present("imu") for f in frames])
    assert 0.18 < share < 0.32
    assert all(f.present("imu") for f in gate_training_frames([sample] * 50, 50, 0.0, 0.0, seed=3))


def test_detection_error_target_trains_the_loss_gate_and_steers_the_oracle(tiny_shards):
    """With ``loss_target: detection_error`` the loss table is 1 - F1 in [0, 1], and the oracle
    at λ = 0 runs the configuration with the lowest true error on the frame."""
    import dataclasses

    import numpy as np

    from fusion_core.gates.frame_target import frame_target
    from fusion_core.metrics.model_eval import visible_ground_truth

    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    config = load_gates_config("configs/gates/tiny.yaml")
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, loss_target="detection_error"))
    gates = GateModules(config, model_config)
    source = ShardSource(tiny_shards)
    report = train_gates(detector, gates, source, progress=False)
    assert all(0.0 <= v <= 1.0 for v in report.configuration_mean_loss.values())

    # The oracle needs a detector whose configurations differ on a frame: the shipped one (the
    # oracle reads no learned gate weights, only the configurations and the target).
    from fusion_core.training.checkpoint import load_detector

    detector = load_detector("models/default.pt")
    config = load_gates_config("configs/gates/default.yaml")
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, loss_target="detection_error"))
    gates = GateModules(config, detector.config)
    batch = BatchCollator(detector.config)([source[40]])
    visible = visible_ground_truth(batch.gt_boxes, batch.gt_hidden, detector.config.grid, "the oracle")
    table = measure_cost_table(detector, gates, batch.inputs)
    fusion = DynamicFusion(detector, gates, GateSettings(mode="oracle", lam_per_j=0.0, gamma=10.0), cost_table=table,
                           profile=load_device_profile("jetson_orin"))
    with pytest.raises(ValueError, match="visible ground-truth"):
        fusion.run_frame(batch.inputs, batch.targets)
    result = fusion.run_frame(batch.inputs, batch.targets, visible[0])
    errors = []
    with torch.no_grad():
        encoded = detector.encode(batch.inputs)
        available = detector.available_experts(encoded.present)
        outputs = detector.expert_outputs(encoded, available)
        for mask in gates.configuration_masks:
            active = available & mask[None]
            exits, _ = detector.head(detector.combine(outputs, detector.static_weights(active), encoded.imu_context))
            errors.append(float(frame_target("detection_error", exits[-1], batch.targets, visible, detector.config)[0]))
    assert min(errors) < max(errors)  # the frame tells the configurations apart
    assert result.configuration == gates.configuration_names[int(np.argmin(errors))]


def test_loss_gate_prices_sensors_only_when_asked(tiny_shards):
    """The runner end to end (tiny untrained model: the predicted losses are arbitrary but fixed):
    with price_sensors a high λ runs the configuration with the cheapest sensors that are there,
    λ = 0 chooses as before, and without price_sensors λ still prices compute only."""
    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config).eval()
    profile = load_device_profile("jetson_orin")
    collator = BatchCollator(model_config)
    sample = ShardSource(tiny_shards)[7]
    batch = collator([sample])
    table = measure_cost_table(detector, gates, batch.inputs)

    def runner(**settings) -> DynamicFusion:
        return DynamicFusion(detector, gates, GateSettings(mode="loss", gamma=1e6, **settings), cost_table=table,
                             profile=profile)

    def choice(inputs=batch.inputs, **settings) -> str:
        return runner(**settings).run_frame(inputs).configuration

    names = gates.configuration_names
    assert choice(lam_per_j=0.0, price_sensors=True) == choice(lam_per_j=0.0)
    assert choice(lam_per_j=1e3, price_sensors=True) == "rgb"  # 2.5 W: the cheapest sensor of any configuration
    compute_j = runner(lam_per_j=1e3).configuration_energy_j
    assert compute_j[names.index(choice(lam_per_j=1e3))] == compute_j.min()  # (lidar and radar tie)
    without_rgb = collator([sample.without("rgb", "standby")]).inputs
    assert choice(without_rgb, lam_per_j=1e3, price_sensors=True) == "radar"  # 6.6 W, below the LiDAR's 8 W

    # Raising λ never picks a configuration that costs more (compute + sensors).
    priced = runner(price_sensors=True)
    available = detector.available_experts({s: batch.inputs.sensor_present(s) for s in DETECTION_SENSORS})
    energy = priced.configuration_energy(available)[0]
    sensor_j = energy - priced.configuration_energy_j
    assert sensor_j[names.index("static")].item() == pytest.approx(1.96)  # rgb + depth + lidar + radar, 0.1 s
    assert sensor_j[names.index("lidar_radar")].item() == pytest.approx(1.46)
    costs = [energy[names.index(choice(lam_per_j=lam, price_sensors=True))].item() for lam in (0.0, 0.1, 1.0, 10.0, 1e3)]
    assert costs == sorted(costs, reverse=True)


@pytest.mark.parametrize("mode", ["static", "late", "knowledge", "attention", "loss", "oracle"])
def test_every_gate_mode_runs_only_what_it_chose(trained, mode):
    detector, gates, source, _ = trained
    collator = BatchCollator(detector.config)
    batch = collator([source[7]])
    table = measure_cost_table(detector, gates, batch.inputs)
    fusion = DynamicFusion(detector, gates, GateSettings(mode=mode, k=2), cost_table=table,
                           profile=load_device_profile("jetson_orin"))
    fusion.detector.calls.clear()  # the inference form DynamicFusion runs, not ``detector``
    result = fusion.run_frame(batch.inputs, batch.targets)
    ran_experts = {k.split(":", 1)[1] for k in fusion.detector.calls if k.startswith("expert:")}
    assert ran_experts == set(result.active_experts)
    assert {k for k in result.components if k.startswith("expert:")} == {f"expert:{e}" for e in ran_experts}
    ran_stems = {k.split(":", 1)[1] for k in fusion.detector.calls if k.startswith("stem:")} - {"imu"}
    needed = {s for ex in detector.experts if ex.config.name in ran_experts for s in ex.sensors}
    if mode in ("static", "late", "knowledge"):
        assert ran_stems == needed  # stems of experts nobody chose never run
    else:
        assert ran_stems == set(DETECTION_SENSORS)  # these gates read every stem first
    if mode == "attention":
        assert len(result.active_experts) == 2
    if mode in ("loss", "oracle"):
        conf = gates.config.configurations[gates.configuration_names.index(result.configuration)]
        assert set(result.active_experts) == set(conf.experts)
    assert result.boxes.ndim == 2 and result.boxes.shape[1] == 11
    assert table.total(result.components) > 0


def test_train_gates_and_compare_commands(tiny_shards, tmp_path):
    """The CLI end to end on a tiny untrained detector: gates train, every mode family runs, and
    the energy column follows what each mode ran."""
    import json

    from dyn_fusion.cli import main as cli_main
    from fusion_core.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    detector = FusionDetector(load_model_config("configs/model/tiny.yaml"))
    ckpt = save_checkpoint(tmp_path / "tiny.pt", detector, step=0)
    gates = tmp_path / "gates.pt"
    assert cli_main(["train-gates", "--checkpoint", str(ckpt), "--config", "configs/gates/tiny.yaml",
                     "--data", str(tiny_shards), "--out", str(gates)]) == 0
    out = tmp_path / "compare"
    modes = "static,late,knowledge,attention k=1,attention k=2,attention k=3,loss λ=0,oracle λ=0"
    assert cli_main(["compare", "--checkpoint", str(ckpt), "--gates", str(gates), "--data", str(tiny_shards),
                     "--out", str(out), "--max-frames", "6", "--dropout-every", "3", "--modes", modes]) == 0
    report = json.loads((out / "compare.json").read_text())
    by_label = {m["label"]: m for m in report["modes"]}
    assert list(by_label) == modes.split(",")
    j = {label: m["cost"]["all"]["compute_j_per_frame"] for label, m in by_label.items()}
    assert j["knowledge"] < j["static"]  # one expert (lidar_radar) and two stems instead of all of them
    assert j["attention k=1"] < j["attention k=2"] < j["attention k=3"] < j["static"]
    for label in ("attention k=1", "attention k=2"):
        k = int(label[-1])
        assert sum(by_label[label]["usage"]["all"].values()) == pytest.approx(k)
    assert {"dropout:lidar", "dropout:radar", "dropout:rgb", "dropout:depth"} <= set(by_label["static"]["metrics"])
    assert by_label["static"]["usage"]["dropout:lidar"]["lidar"] == 0.0
    assert "| group | frames | static | late |" in (out / "compare.md").read_text()
    for plot in ("pareto.png", "exit_histogram.png", "usage_attention_k3.png"):  # the default k
        assert (out / plot).stat().st_size > 1000

    # Budgeted exits from the gates' calibration: half the head's compute on average.
    budget = tmp_path / "budget"
    assert cli_main(["compare", "--checkpoint", str(ckpt), "--gates", str(gates), "--data", str(tiny_shards),
                     "--out", str(budget), "--max-frames", "8", "--dropout-every", "0", "--modes", "static",
                     "--exit-policy", "budget", "--exit-budget", "0.5"]) == 0
    static_budget = json.loads((budget / "compare.json").read_text())["modes"][0]
    assert sum(static_budget["exit_histogram"]) == 8 and static_budget["exit_histogram"][-1] < 8
    assert static_budget["cost"]["all"]["compute_j_per_frame"] < j["static"]

    # evaluate --gate: one mode with a deadline. A generous deadline reaches the last exit; an
    # impossible one reports exit 0 of every frame, each counted as a missed deadline.
    n_exits = detector.config.n_exits
    for deadline_ms, expect_exit in ((1e6, n_exits - 1), (1e-3, 0)):
        js = tmp_path / f"eval_{deadline_ms:g}.json"
        assert cli_main(["evaluate", "--checkpoint", str(ckpt), "--gates", str(gates), "--data", str(tiny_shards),
                         "--json", str(js), "--max-frames", "5", "--gate", "attention", "--k", "1",
                         "--exit-policy", "deadline", "--deadline-ms", f"{deadline_ms:g}", "--no-cost"]) == 0
        one = json.loads(js.read_text())
        assert one["settings"] == {"mode": "attention", "k": 1, "gamma": 0.5, "lam_per_j": 0.0, "price_sensors": False,
                                   "attention_weights": "static", "ood_z2": 30.0, "spread_weight": 1.0,
                                   "static_margin": 0.0}
        assert one["exit_histogram"][expect_exit] == 5
        assert one["missed_deadlines"] == (5 if expect_exit == 0 else 0)
        assert sum(one["usage"]["all"].values()) == pytest.approx(1.0)
    # Modes that need gates say so instead of failing inside the runner.
    assert cli_main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_shards), "--json",
                     str(tmp_path / "x.json"), "--gate", "loss"]) == 2
    assert cli_main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_shards), "--json",
                     str(tmp_path / "x.json"), "--exit-policy", "deadline"]) == 2


def test_warm_up_runs_every_layer_and_leaves_no_trace(trained):
    detector, gates, source, _ = trained
    batch = BatchCollator(detector.config)([source[7]])
    table = measure_cost_table(detector, gates, batch.inputs)
    settings = GateSettings(mode="loss", lam_per_j=2.0)
    fusion = DynamicFusion(detector, gates, settings, cost_table=table, profile=load_device_profile("jetson_orin"))
    before = fusion.run_frame(batch.inputs)
    calls = dict(fusion.detector.calls)
    ran = set()
    hooks = [m.register_forward_hook(lambda mod, _in, _out, name=name: ran.add(name))
             for name, m in [*((f"expert:{e.config.name}", e) for e in fusion.detector.experts),
                             *((f"exit:{k}", x) for k, x in enumerate(fusion.detector.head.exits))]]
    fusion.warm_up(batch.inputs)
    for hook in hooks:
        hook.remove()
    assert ran == {f"expert:{e}" for e in detector.expert_names} | {f"exit:{k}" for k in range(detector.config.n_exits)}
    assert fusion.settings is settings and dict(fusion.detector.calls) == calls
    after = fusion.run_frame(batch.inputs)  # no state carried from the warm-up runs
    assert after.configuration == before.configuration and after.active_experts == before.active_experts
    assert (after.boxes == before.boxes).all()
