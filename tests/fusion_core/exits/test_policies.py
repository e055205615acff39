"""Exit policies: one interface, settings by name, offline simulation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_core.exits.budget import exits_under_thresholds
from fusion_core.exits.error_predictor import ErrorPredictor, ExitRegressor
from fusion_core.exits.policies import (
    BudgetExit,
    ConfidenceExit,
    DeadlineExit,
    ErrorExit,
    ExitQuery,
    LastExit,
    make_exit_policy,
    simulate_exits,
)

K = 3


def constant_predictor(errors: list[list[float]]) -> ErrorPredictor:
    """At exit k every frame gets predicted errors ``errors[k]`` for exits k..K-1."""
    regs = []
    for k, row in enumerate(errors):
        n_features = k + 1
        regs.append(ExitRegressor(weight=torch.zeros(n_features, len(row), dtype=torch.float64),
                                  bias=torch.tensor(row, dtype=torch.float64),
                                  feature_mean=torch.zeros(n_features, dtype=torch.float64),
                                  feature_std=torch.ones(n_features, dtype=torch.float64)))
    return ErrorPredictor(regs, n_extra_features=0, quadratic=False)


def test_last_exit_never_stops_early_and_last_always_stops():
    policy = make_exit_policy("last")
    conf = torch.ones(4, K)
    for k in range(K - 1):
        assert not policy.stop(k, conf[:, : k + 1], n_exits=K).any()
    assert policy.stop(K - 1, conf, n_exits=K).all()
    assert ConfidenceExit(2.0).stop(K - 1, torch.zeros(4, K), n_exits=K).all()


def test_confidence_exit_single_and_per_exit_thresholds():
    conf = torch.tensor([[0.9, 0.9], [0.5, 0.95], [0.2, 0.3]])
    single = make_exit_policy("confidence", thresholds=0.8)
    assert single.stop(0, conf[:, :1], n_exits=K).tolist() == [True, False, False]
    assert single.stop(1, conf, n_exits=K).tolist() == [True, True, False]
    per_exit = make_exit_policy("confidence", thresholds=[0.95, 0.9])
    assert isinstance(per_exit.thresholds, tuple)
    assert per_exit.stop(0, conf[:, :1], n_exits=K).tolist() == [False, False, False]
    assert per_exit.stop(1, conf, n_exits=K).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="thresholds"):
        per_exit.stop(0, conf[:, :1], n_exits=4)
    with pytest.raises(ValueError):
        ConfidenceExit(float("nan"))
    with pytest.raises(ValueError):
        ConfidenceExit("high")
    assert ConfidenceExit(np.float32(0.5)).thresholds == 0.5
    assert ConfidenceExit(np.array([0.5, 0.6])).thresholds == (0.5, 0.6)


def test_query_shapes_are_checked():
    policy = ConfidenceExit(0.5)
    with pytest.raises(ValueError, match="exits 0..k"):
        policy.stop(1, torch.rand(4, 1), n_exits=K)
    with pytest.raises(ValueError):
        policy.stop(3, torch.rand(4, 4), n_exits=K)
    with pytest.raises(ValueError, match="elapsed_ms"):
        policy.stop(0, torch.rand(4, 1), n_exits=K, elapsed_ms=torch.zeros(3))


def test_simulation_matches_the_threshold_rule():
    conf = torch.rand(500, K, generator=torch.Generator().manual_seed(0))
    thresholds = [0.7, 0.5]
    sim = simulate_exits(ConfidenceExit(tuple(thresholds)), conf)
    expected = exits_under_thresholds(conf.numpy().astype(np.float64), np.array(thresholds))
    assert np.array_equal(sim.stopped_at.numpy(), expected)
    assert torch.equal(sim.exit_used, sim.stopped_at) and not sim.missed_deadline.any()
    assert torch.all(simulate_exits(LastExit(), conf).stopped_at == K - 1)


def test_budget_exit_reproduces_its_solution_and_resolves_on_new_target():
    conf = torch.rand(1000, K, generator=torch.Generator().manual_seed(1))
    cost = [1.0, 2.0, 4.0]
    policy = make_exit_policy("budget", validation_confidences=conf, cumulative_cost=cost, target_mean_cost=2.5)
    sim = simulate_exits(policy, conf)
    assert np.array_equal(sim.stopped_at.numpy(), policy.solution.exit_index)
    mean_cost = float(np.asarray(cost)[sim.stopped_at.numpy()].mean())
    assert mean_cost == pytest.approx(policy.solution.mean_cost) and mean_cost <= 2.5
    cheaper = policy.with_settings(target_mean_cost=1.5)
    assert cheaper.solution.mean_cost < policy.solution.mean_cost
    assert policy.solution.target_mean_cost == 2.5  # the original is untouched


def test_error_exit_trades_cost_against_predicted_error():
    predictor = constant_predictor([[0.5, 0.2, 0.15], [0.2, 0.15], [0.15]])
    conf = torch.rand(4, 1)
    policy = make_exit_policy("error", predictor=predictor, cumulative_cost=[1.0, 2.0, 3.0], lam=0.0)
    at_exit0 = ExitQuery(0, K, conf, torch.zeros(4, dtype=torch.float64), None)
    assert policy.plan(at_exit0).tolist() == [2] * 4  # lam = 0: head for the lowest predicted error
    assert not policy.stop(0, conf, n_exits=K).any()
    # lam = 0.1: scores 0.5, 0.3, 0.35 -> exit 1
    assert policy.with_settings(lam=0.1).plan(at_exit0).tolist() == [1] * 4
    assert policy.with_settings(lam=1e6).stop(0, conf, n_exits=K).all()
    assert policy.with_settings(lam=1e6).stop(1, torch.rand(4, 2), n_exits=K).all()
    with pytest.raises(ValueError):
        policy.with_settings(lam=-1.0)
    with pytest.raises(ValueError):
        make_exit_policy("error", predictor=predictor, cumulative_cost=[1.0, 2.0])


def test_deadline_exit_anytime():
    policy = make_exit_policy("deadline", deadline_ms=25.0, predicted_stage_ms=[10.0, 10.0, 10.0])
    conf = torch.rand(4, 1)
    # After exit 0: finished at 10 ms (next fits: 20 <= 25), 16 ms (26 > 25), 30 ms (late), 25 ms (exactly on time).
    d0 = policy.decide(0, conf, n_exits=K, elapsed_ms=torch.tensor([10.0, 16.0, 30.0, 25.0]))
    assert d0.stop.tolist() == [False, True, True, True]
    assert d0.exit_used.tolist() == [0, 0, 0, 0]
    assert d0.missed_deadline.tolist() == [False, False, True, False]
    # After exit 1: on time at 20 ms (stop: exit 2 would end at 30); late at 27 ms -> report exit 0.
    d1 = policy.decide(1, torch.rand(2, 2), n_exits=K, elapsed_ms=torch.tensor([20.0, 27.0]))
    assert d1.stop.tolist() == [True, True]
    assert d1.exit_used.tolist() == [1, 0]
    assert not d1.missed_deadline.any()
    # Generous deadline: runs to the last exit.
    assert not make_exit_policy("deadline", deadline_ms=100.0, predicted_stage_ms=[10.0] * 3).stop(
        0, conf, n_exits=K, elapsed_ms=5.0).any()


def test_deadline_simulation():
    policy = DeadlineExit(deadline_ms=35.0, predicted_stage_ms=(10.0, 10.0, 10.0))
    conf = torch.rand(3, K)
    stems_ms = torch.tensor([[0.0], [8.0], [40.0]])  # time before the head, per frame
    sim = simulate_exits(policy, conf, elapsed_ms=policy.predicted_finish_ms + stems_ms)
    assert sim.stopped_at.tolist() == [2, 1, 0]
    assert sim.exit_used.tolist() == [2, 1, 0]
    assert sim.missed_deadline.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="elapsed_ms"):
        simulate_exits(policy, conf)
    with pytest.raises(ValueError, match="predicted stage times"):
        policy.stop(0, conf[:, :1], n_exits=4, elapsed_ms=0.0)


def test_make_exit_policy_errors():
    with pytest.raises(ValueError, match="unknown exit policy"):
        make_exit_policy("fastest")
    with pytest.raises(ValueError, match="no setting threshold"):
        make_exit_policy("confidence", threshold=0.5)
    with pytest.raises(ValueError, match="needs setting"):
        make_exit_policy("deadline", deadline_ms=10.0)
    with pytest.raises(ValueError, match="deadline_ms"):
        make_exit_policy("deadline", deadline_ms=-1.0, predicted_stage_ms=[1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        make_exit_policy("budget", validation_confidences=torch.rand(10, 2), cumulative_cost=[2.0, 1.0],
                         target_mean_cost=1.5)
    with pytest.raises(ValueError, match="no setting"):
        LastExit().with_settings(lam=1.0)
    assert isinstance(make_exit_policy("error", predictor=constant_predictor([[0.1, 0.1], [0.1]]),
                                       cumulative_cost=[1.0, 2.0]), ErrorExit)
    assert isinstance(make_exit_policy("budget", validation_confidences=torch.rand(10, 2), cumulative_cost=[1, 2],
                                       target_mean_cost=1.5), BudgetExit)
