"""The learned gates' safety. On input unlike their training frames (a corrupted branch: LiDAR
intensities 1000 times too large, as a driver with the wrong scale gives) the gate features are
unfamiliar and the attention and loss gates fall back to static fusion instead of extrapolating;
familiar frames are decided as before, and ``ood_z2 = 0`` turns the fallback off. The loss gate's
``static_margin`` makes it leave static fusion only for a predicted win larger than the margin,
and its ensemble's disagreement (``spread_weight``) only for a win its members agree on."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fusion_core.data.shard_source import ShardSource
from fusion_core.gates.config import load_gates_config
from fusion_core.gates.loss_gate import choose_configuration, pessimistic_loss
from fusion_core.gates.modes import FALLBACK_CONFIGURATION
from fusion_core.gates.modules import GateModules, gate_features
from fusion_core.gates.settings import GateSettings
from fusion_core.model.batch import BatchCollator
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import PointSet
from fusion_core.runtime.dynamic_fusion import DynamicFusion


@pytest.fixture(scope="module")
def tiny(tiny_shards):
    """A tiny detector and gates whose feature scalers are fitted on 40 real frames (what
    training does), one familiar frame and the same frame with its LiDAR intensities corrupted."""
    torch.manual_seed(0)
    model_config = load_model_config("configs/model/tiny.yaml")
    detector = FusionDetector(model_config).eval()
    gates = GateModules(load_gates_config("configs/gates/tiny.yaml"), model_config).eval()
    collate = BatchCollator(model_config)
    source = ShardSource(tiny_shards)
    with torch.no_grad():
        rows = []
        for i in range(0, 80, 2):
            inputs = collate([source[i]]).inputs
            rows.append(gate_features(detector.encode(inputs), gates.context_head(inputs)))
        features = torch.cat(rows)
    gates.attention.scaler.fit(features)
    gates.loss_predictor.scaler.fit(features)
    batch = collate([source[81]])
    lidar = batch.inputs.lidar
    scale = torch.tensor([1.0, 1.0, 1.0, 1000.0])
    corrupted = dataclasses.replace(batch.inputs, lidar=PointSet(lidar.features * scale, lidar.frame))
    return detector, gates, batch.inputs, corrupted


def _run(tiny, inputs, **settings):
    detector, gates, _clean, _corrupted = tiny
    return DynamicFusion(detector, gates, GateSettings(**settings)).run_frame(inputs)


@pytest.mark.parametrize("mode", ["attention", "loss"])
def test_a_corrupted_branch_falls_back_to_static_fusion(tiny, mode):
    detector, gates, clean, corrupted = tiny
    static = _run(tiny, corrupted, mode="static")
    fallen = _run(tiny, corrupted, mode=mode, k=1)
    assert fallen.configuration == FALLBACK_CONFIGURATION
    assert fallen.active_experts == static.active_experts == detector.expert_names
    np.testing.assert_array_equal(fallen.boxes, static.boxes)


@pytest.mark.parametrize("mode", ["attention", "loss"])
def test_familiar_frames_and_a_disabled_fallback_are_decided_by_the_gate(tiny, mode):
    detector, gates, clean, corrupted = tiny
    familiar = _run(tiny, clean, mode=mode, k=1)
    assert familiar.configuration != FALLBACK_CONFIGURATION
    if mode == "attention":
        assert len(familiar.active_experts) == 1
    off = _run(tiny, corrupted, mode=mode, k=1, ood_z2=0.0)
    assert off.configuration != FALLBACK_CONFIGURATION


def test_the_corruption_is_what_makes_the_features_unfamiliar(tiny):
    detector, gates, clean, corrupted = tiny
    with torch.no_grad():
        z2 = [float((gates.attention.scaler(gate_features(detector.encode(x), gates.context_head(x))) ** 2).mean())
              for x in (clean, corrupted)]
    assert z2[0] < GateSettings().ood_z2 < z2[1]


def test_the_static_margin_keeps_the_loss_gate_on_static_fusion_unless_it_predicts_a_larger_win(tiny):
    detector, gates, clean, _corrupted = tiny
    with torch.no_grad():
        loss = gates.loss_predictor(gate_features(detector.encode(clean), gates.context_head(clean)))[0]
    every = gates.configuration_masks.all(1)
    best_static, best_other = float(loss[every].min()), float(loss[~every].min())
    # a margin above the predicted advantage of the best subset keeps static; none lets the gate choose
    held = _run(tiny, clean, mode="loss", static_margin=max(best_static - best_other, 0.0) + 1.0)
    assert held.active_experts == detector.expert_names and held.configuration == "static"
    free = _run(tiny, clean, mode="loss", static_margin=0.0, spread_weight=0.0)
    assert free.configuration == gates.configuration_names[int(loss.argmin())]


def _members(*rows: list[float]) -> torch.Tensor:
    """(1, M, C) member predictions of one frame; configuration 0 is the reference (static)."""
    return torch.tensor([rows], dtype=torch.float32)


def test_the_pessimistic_loss_keeps_a_win_the_members_agree_on():
    # every member: configuration 1 is 0.5 better than static, configuration 2 only on average
    members = _members([2.0, 1.5, 0.0], [2.4, 1.9, 3.7], [1.6, 1.1, 0.5])
    reference = torch.tensor([True, False, False])
    mean = pessimistic_loss(members, reference, 0.0)[0]
    assert int(mean.argmin()) == 2
    cautious = pessimistic_loss(members, reference, 1.0)[0]
    # the reference's and the agreed configuration's losses are the mean (no relative spread) ...
    assert cautious[0] == pytest.approx(2.0) and cautious[1] == pytest.approx(1.5)
    # ... the disputed one is raised by its spread relative to static and loses its lead
    assert cautious[2] > cautious[1] and int(cautious.argmin()) == 1


def test_disagreement_about_every_subset_sends_the_loss_gate_to_static():
    members = _members([2.0, 1.0, 3.0], [2.0, 3.0, 1.0], [2.0, 2.0, 2.0])
    choice = choose_configuration(pessimistic_loss(members, torch.tensor([True, False, False]), 1.0),
                                  torch.ones(1, 3, dtype=torch.bool), torch.zeros(3), gamma=0.0, lam_per_j=0.0)
    assert int(choice[0]) == 0


def test_one_member_or_no_weight_is_the_plain_prediction():
    members = _members([2.0, 1.0, 3.0])
    torch.testing.assert_close(pessimistic_loss(members, torch.tensor([True, False, False]), 2.0), members[:, 0])
