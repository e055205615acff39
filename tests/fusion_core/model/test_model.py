"""The detector on real simulated frames: every sensor subset, expert masks, exits, skipping."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fusion_core.boxes import CLASS_ID, X, Y
from fusion_core.data.shard_source import ShardSource
from fusion_core.model.config import load_model_config
from fusion_core.model.decode import decode_exit
from fusion_core.model.detector import FusionDetector
from fusion_core.model.head import N_REGRESSION
from fusion_core.model.inputs import collate, depth_to_points
from fusion_core.model.loss import detection_loss
from fusion_core.model.targets import build_targets
from fusion_core.vocabulary import DETECTION_SENSORS


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FusionDetector(load_model_config("configs/model/tiny.yaml")).eval()


@pytest.fixture(scope="module")
def samples(tiny_shards):
    src = ShardSource(tiny_shards)
    return [src[i] for i in (10, 40)]


@pytest.mark.parametrize("subset", [s for n in range(5) for s in itertools.combinations(DETECTION_SENSORS, n)])
def test_every_sensor_subset_gives_complete_outputs(model, samples, subset):
    reduced = []
    for s in samples:
        for sensor in DETECTION_SENSORS:
            if sensor not in subset:
                s = s.without(sensor, "test")
        reduced.append(s)
    inputs = collate(reduced, model.config.grid)
    model.calls.clear()
    with torch.no_grad():
        out = model(inputs)
    h, w = model.config.grid.head_shape
    assert len(out.exits) == model.config.n_exits
    for e in out.exits:
        assert e.heatmap_logits.shape == (2, len(model.config.classes), h, w)
        assert e.regression.shape == (2, N_REGRESSION, h, w)
        assert torch.isfinite(e.heatmap_logits).all() and torch.isfinite(e.regression).all()
    # An expert runs exactly when one of its sensors is present; stems only for needed sensors.
    expected = {ex.name for ex in model.config.experts if set(ex.sensors) & set(subset)}
    assert {k.split(":")[1] for k in model.calls if k.startswith("expert:")} == expected
    assert {k.split(":")[1] for k in model.calls if k.startswith("stem:")} - {"imu"} == set(subset) & {
        s for ex in model.config.experts if ex.name in expected for s in ex.sensors}
    assert bool(out.has_input.all()) == bool(subset)
    weights = out.expert_weights
    assert torch.allclose(weights.sum(1), torch.full((2,), 1.0 if subset else 0.0))
    if not subset:
        assert all(len(b) == 0 for b in decode_exit(out.exits[-1], model.config.grid, 64, 0.0, out.has_input))


def test_expert_mask_and_early_exit_skip_work(model, samples):
    inputs = collate(samples, model.config.grid)
    names = model.config.expert_names
    mask = torch.tensor([n == "radar" for n in names])
    model.calls.clear()
    with torch.no_grad():
        out = model(inputs, expert_mask=mask, last_exit=0)
    assert dict(model.calls) == {"stem:radar": 1, "stem:imu": 1, "expert:radar": 1, "exit:0": 1}
    assert len(out.exits) == 1
    assert torch.equal(out.active_experts, mask.expand(2, -1))


def test_weight_jitter_perturbs_each_frame_but_keeps_the_active_experts(model, samples):
    from fusion_core.training.data import expert_logit_noise_for_step

    e = len(model.experts)
    assert expert_logit_noise_for_step(2, e, 0, 5, prob=0.0, std=1.0) is None
    noise = expert_logit_noise_for_step(2, e, 0, 5, prob=1.0, std=1.0)
    assert noise.shape == (2, e) and torch.equal(noise, expert_logit_noise_for_step(2, e, 0, 5, 1.0, 1.0))
    active = torch.ones(2, e, dtype=torch.bool)
    active[1, 0] = False
    with torch.no_grad():
        plain, jittered = model.static_weights(active), model.static_weights(active, noise)
    assert torch.allclose(jittered.sum(1), torch.ones(2)) and float(jittered[1, 0]) == 0.0
    assert not torch.allclose(plain, jittered)
    assert not torch.allclose(jittered[0, 1:] / jittered[0, 1:].sum(), jittered[1, 1:] / jittered[1, 1:].sum())
    inputs = collate(samples, model.config.grid)
    with torch.no_grad():
        out = model(inputs, expert_logit_noise=noise)
    assert torch.allclose(out.expert_weights, model.static_weights(out.active_experts, noise))


def test_self_distillation_trains_only_the_early_exit_heads(samples):
    """The distillation term must not move anything the last exit depends on (issue 3 target)."""
    torch.manual_seed(0)
    net = FusionDetector(load_model_config("configs/model/tiny.yaml")).train()
    inputs = collate(samples, net.config.grid)
    targets = build_targets([s.gt_boxes for s in samples], net.config.grid, len(net.config.classes))

    def grads(distill_weight: float) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)  # the same dropout/BN batch either way
        net.zero_grad(set_to_none=True)
        out = net(inputs, distill_students=True)
        assert len(out.distill_students) == net.config.n_exits - 1
        detection_loss(out.exits, targets, distill_weight, students=out.distill_students).total.backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    without, with_ = grads(0.0), grads(5.0)
    assert without.keys() == with_.keys()
    early_heads = tuple(f"head.exits.{k}." for k in range(net.config.n_exits - 1))
    changed = {n for n in without if not torch.allclose(without[n], with_[n], rtol=1e-5, atol=1e-7)}
    assert changed, "distillation had no effect at all"
    assert all(n.startswith(early_heads) for n in changed), sorted(n for n in changed if not n.startswith(early_heads))
    with pytest.raises(ValueError, match="student"):
        detection_loss(net(inputs).exits, targets, 0.5)


def test_targets_put_peaks_at_box_centres(model, samples):
    grid = model.config.grid
    gt = samples[0].gt_boxes
    t = build_targets([gt], grid, len(model.config.classes))
    cell = grid.head_cell_m
    inside = (gt[:, X] >= grid.x_min_m) & (gt[:, X] < grid.x_max_m) & (gt[:, Y] >= grid.y_min_m) & (gt[:, Y] < grid.y_max_m)
    assert t.n_objects == int(inside.sum()) > 0
    for box in gt[inside]:
        r, c = int((float(box[X]) - grid.x_min_m) // cell), int((float(box[Y]) - grid.y_min_m) // cell)
        assert t.heatmap[0, int(box[CLASS_ID]), r, c] == 1.0
    # Decoding the targets themselves (as logits) gives the boxes back.
    logits = torch.logit(t.heatmap.clamp(1e-4, 1 - 1e-4))
    reg = torch.zeros(1, N_REGRESSION, *grid.head_shape)
    reg.view(1, N_REGRESSION, -1)[0, :, t.cell[0, t.valid[0]]] = t.regression[0, t.valid[0]].T
    from fusion_core.model.head import ExitOutput
    decoded = decode_exit(ExitOutput(logits, reg), grid, 200, 0.99)[0]
    assert len(decoded) == int(inside.sum())
    d = np.hypot(decoded[:, None, X] - gt[inside][None, :, X], decoded[:, None, Y] - gt[inside][None, :, Y])
    assert d.min(1).max() < 1e-3


def test_depth_back_projection_hits_the_ground(samples):
    s = samples[0]
    pts = depth_to_points(s.depth_m, s.depth_camera)
    near_ground = pts[(pts[:, 0] > 3) & (pts[:, 0] < 12) & (np.abs(pts[:, 1]) < 1.0)]
    assert len(near_ground) > 20
    assert np.median(np.abs(near_ground[:, 2])) < 0.1  # the road ahead is at z = 0 in base_link


def test_training_sensor_absence_keeps_at_least_one_and_single_sensor_frames_keep_one(samples):
    from fusion_core.training.data import drop_sensors

    full = next(s for s in samples if all(s.present(x) for x in DETECTION_SENSORS))
    kept_alone = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        single = drop_sensors(full, 0.2, rng, single_prob=1.0)
        present = [x for x in DETECTION_SENSORS if single.present(x)]
        assert len(present) == 1 and single.present("imu")  # the IMU is context, never dropped
        assert all(single.absence[x] == "training_dropout" for x in DETECTION_SENSORS if x not in present)
        kept_alone.add(present[0])
        # Independent dropout at a high rate still leaves at least one detection sensor.
        heavy = drop_sensors(full, 0.9, rng)
        assert any(heavy.present(x) for x in DETECTION_SENSORS)
    assert kept_alone == set(DETECTION_SENSORS)  # every sensor gets trained alone
