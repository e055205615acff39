"""MSDNet budgeted thresholds on synthetic confidences with known answers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fusion_core.exits.budget import (
    exits_under_thresholds,
    geometric_shares,
    solve_budget_thresholds,
)


def uniform_confidences(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, k))


def test_geometric_shares():
    assert np.allclose(geometric_shares(0.5, 3), np.array([4, 2, 1]) / 7)
    assert np.allclose(geometric_shares(0.0, 4), 0.25)
    assert np.allclose(geometric_shares(-1.0, 3), np.array([1, 2, 4]) / 7)  # q < 0: shares grow with depth
    assert np.allclose(geometric_shares(1.0, 3), [1, 0, 0])
    assert np.allclose(geometric_shares(-np.inf, 3), [0, 0, 1])
    with pytest.raises(ValueError):
        geometric_shares(1.5, 3)


@pytest.mark.parametrize("n", [1000, 999])
def test_two_exits_half_budget_is_the_median(n):
    conf = uniform_confidences(n, 2)
    sol = solve_budget_thresholds(conf, [1.0, 3.0], 2.0)
    assert sol.q == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(sol.law_shares, [0.5, 0.5])
    n_early = int(np.ceil(n / 2))
    assert sol.thresholds[0] == np.sort(conf[:, 0])[::-1][n_early - 1]
    assert (sol.exit_index == 0).sum() == n_early
    assert sol.mean_cost <= 2.0 + 1e-12
    assert sol.mean_cost == pytest.approx(2.0, abs=2.0 / n)  # one frame moves the mean by (3 - 1) / N
    assert np.allclose(sol.exit_shares, [n_early / n, 1 - n_early / n])
    if n % 2 == 0:
        assert sol.thresholds[0] == pytest.approx(np.median(conf[:, 0]), abs=1e-2)
        assert sol.mean_cost == pytest.approx(2.0, abs=1e-12)


def test_three_exits_monotone_and_never_over_target():
    n = 2000
    conf = uniform_confidences(n, 3, seed=1)
    cost = np.array([1.0, 2.0, 4.0])
    achieved = []
    for target in np.linspace(1.05, 3.95, 30):
        sol = solve_budget_thresholds(conf, cost, target)
        assert sol.law_shares @ cost == pytest.approx(target, abs=1e-9)
        assert sol.mean_cost <= target + 1e-9
        assert sol.mean_cost >= target - (cost[-1] - cost[0]) / n - 1e-9
        assert sol.exit_shares.sum() == pytest.approx(1.0)
        assert np.array_equal(sol.exit_index, exits_under_thresholds(conf, sol.thresholds))
        achieved.append(sol.mean_cost)
    assert all(a <= b for a, b in itertools.pairwise(achieved))
    # Budgets above the mean exit cost need shares growing with depth (q < 0).
    assert solve_budget_thresholds(conf, cost, 3.5).q < 0 < solve_budget_thresholds(conf, cost, 1.5).q


def test_targets_outside_the_exit_costs():
    conf = torch.rand(50, 3)
    cheap = solve_budget_thresholds(conf, [1.0, 2.0, 4.0], 0.5)
    assert np.all(cheap.thresholds == -np.inf) and cheap.q == 1.0
    assert np.all(cheap.exit_index == 0) and cheap.mean_cost == 1.0
    rich = solve_budget_thresholds(conf, [1.0, 2.0, 4.0], 4.0)
    assert np.all(rich.thresholds == np.inf) and rich.q == -np.inf
    assert np.all(rich.exit_index == 2) and rich.mean_cost == 4.0
    assert np.allclose(rich.exit_shares, [0, 0, 1])


def test_ties_only_make_frames_leave_earlier():
    conf = np.full((100, 2), 0.7)
    sol = solve_budget_thresholds(conf, [1.0, 3.0], 2.0)
    assert sol.mean_cost <= 2.0
    assert np.all(sol.exit_index == 0)  # every frame ties with the threshold


def test_single_exit():
    sol = solve_budget_thresholds(np.ones((4, 1)), [2.0], 5.0)
    assert sol.thresholds.shape == (0,) and sol.mean_cost == 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="N = 0"):
        solve_budget_thresholds(np.zeros((0, 2)), [1.0, 2.0], 1.5)
    with pytest.raises(ValueError):
        solve_budget_thresholds(np.zeros((5, 2)), [2.0, 1.0], 1.5)
    with pytest.raises(ValueError):
        solve_budget_thresholds(np.zeros((5, 3)), [1.0, 2.0], 1.5)
    with pytest.raises(ValueError):
        solve_budget_thresholds(np.full((5, 2), np.nan), [1.0, 2.0], 1.5)
    with pytest.raises(ValueError):
        solve_budget_thresholds(np.zeros(5), [1.0, 2.0], 1.5)
