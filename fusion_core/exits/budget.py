"""MSDNet's budgeted-batch thresholds: per-exit confidence thresholds solved on a validation set
so that the mean cost per frame meets a target.

Procedure (Huang et al., MSDNet, "budgeted batch classification"):

1. Exit shares follow a geometric law over the K exits, ``s_k(q) = q (1 - q)^k / sum_j q (1 - q)^j``.
   The factor ``q`` cancels in the renormalisation, so ``s_k`` is proportional to ``r^k`` with
   ``r = 1 - q``; we allow any ``q <= 1`` (``r >= 0``): ``q`` in (0, 1] gives shares that fall
   with depth, ``q < 0`` shares that grow with depth (MSDNet sweeps ``r`` above 1 as well), which
   is needed for budgets between the mean of the exit costs and the last exit's cost.
2. The expected mean cost ``E(q) = sum_k s_k(q) cost_k`` falls monotonically with ``q`` (for
   non-decreasing costs); bisection on ``log r`` finds the ``q`` with ``E(q) = target``.
3. Thresholds exit 0 .. K-2 in turn: the ``n_k`` most confident validation frames that are still
   running leave at exit k, and the threshold is the confidence of the ``n_k``-th of them (a frame
   stops when ``confidence >= threshold``; ``+inf`` when ``n_k = 0``). ``n_k`` comes from the
   cumulative shares rounded *up* (``ceil(N * sum_{j<=k} s_j)``), so rounding and ties only ever
   let frames leave earlier: the achieved validation cost never exceeds the target (up to float
   rounding) and, without tied confidences, falls short of it by at most ``(cost_{K-1} - cost_0) / N``.

Targets outside the exits' costs: ``target <= cost_0`` sends every frame out at exit 0
(thresholds ``-inf``, ``q = 1``); ``target >= cost_{K-1}`` keeps every frame to the last exit
(thresholds ``+inf``, ``q = -inf``). Both are valid answers, not errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

_LOG_RATIO_BOUND = 60.0   # |log r| beyond this moves the expected cost by < e^-60 of the cost range
_BISECTION_STEPS = 200    # halvings of [-60, 60]: far below float64 resolution
_SHARE_EPS = 1e-9         # so N * cumulative share = 50.0000000001 still rounds up to 50


@dataclass(frozen=True, eq=False)
class BudgetSolution:
    thresholds: np.ndarray        # (K-1,) confidence thresholds of exits 0..K-2; stop when confidence >= threshold
    q: float                      # geometric-law parameter, <= 1 (1: all at exit 0; -inf: all at the last exit)
    law_shares: np.ndarray        # (K,) exit shares s_k(q) of the geometric law, summing to 1
    exit_shares: np.ndarray       # (K,) shares of validation frames that actually leave at each exit
    exit_index: np.ndarray        # (N,) int64 exit each validation frame takes under the thresholds
    mean_cost: float              # achieved mean cost per validation frame, cost units
    target_mean_cost: float       # the requested mean cost per frame, cost units


def geometric_shares(q: float, n_exits: int) -> np.ndarray:
    """(K,) shares ``q (1-q)^k`` renormalised over K exits, for ``q <= 1`` (``-inf`` allowed)."""
    if q > 1.0 or math.isnan(q):
        raise ValueError(f"q must be <= 1, got {q}")
    if q == 1.0:
        return np.eye(n_exits)[0]
    if math.isinf(q):
        return np.eye(n_exits)[-1]
    return _shares_from_log_ratio(math.log1p(-q), n_exits)


def _shares_from_log_ratio(log_ratio: float, n_exits: int) -> np.ndarray:
    # In log space: r^k overflows for large r and many exits.
    logits = log_ratio * np.arange(n_exits, dtype=np.float64)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _as_float64(values: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite")
    return array


def validated_costs(cumulative_cost: np.ndarray | torch.Tensor | list[float], n_exits: int | None = None) -> np.ndarray:
    """(K,) float64 cumulative costs, checked: 1-D, finite, non-negative, non-decreasing."""
    cost = _as_float64(cumulative_cost, "cumulative_cost")
    if cost.ndim != 1 or len(cost) == 0:
        raise ValueError(f"cumulative_cost must be a non-empty 1-D sequence, got shape {cost.shape}")
    if n_exits is not None and len(cost) != n_exits:
        raise ValueError(f"cumulative_cost has {len(cost)} entries for {n_exits} exits")
    if np.any(cost < 0) or np.any(np.diff(cost) < 0):
        raise ValueError(f"cumulative_cost must be non-negative and non-decreasing, got {cost.tolist()}")
    return cost


def solve_budget_thresholds(confidences: np.ndarray | torch.Tensor, cumulative_cost: np.ndarray | torch.Tensor | list[float],
                            target_mean_cost: float) -> BudgetSolution:
    """Thresholds for exits 0..K-2 meeting ``target_mean_cost`` on the validation set.

    confidences (N, K): confidence of each validation frame at each exit (e.g.
    :func:`fusion_core.exits.confidence.exit_confidences`). cumulative_cost (K,): cost of running
    up to and including exit k (FLOPs, joules, ms: any unit, the target in the same unit).
    ValueError for N = 0, mismatched shapes, non-finite values or decreasing costs.
    """
    conf = _as_float64(confidences, "confidences")
    if conf.ndim != 2:
        raise ValueError(f"confidences must be (N, K), got shape {conf.shape}")
    n, k_exits = conf.shape
    if n == 0:
        raise ValueError("need at least one validation frame (N = 0)")
    cost = validated_costs(cumulative_cost, k_exits)
    target = float(target_mean_cost)
    if not math.isfinite(target):
        raise ValueError(f"target_mean_cost must be finite, got {target_mean_cost}")

    if target <= cost[0]:
        q = 1.0
    elif target >= cost[-1]:
        q = -math.inf
    else:
        q = -math.expm1(_solve_log_ratio(cost, target))
    shares = geometric_shares(q, k_exits)
    if q == 1.0:
        thresholds = np.full(k_exits - 1, -np.inf)
    elif math.isinf(q):
        thresholds = np.full(k_exits - 1, np.inf)
    else:
        thresholds = _thresholds_for_shares(conf, shares)
    exit_index = exits_under_thresholds(conf, thresholds)
    exit_shares = np.bincount(exit_index, minlength=k_exits) / n
    return BudgetSolution(thresholds=thresholds, q=q, law_shares=shares, exit_shares=exit_shares,
                          exit_index=exit_index, mean_cost=float(cost[exit_index].mean()), target_mean_cost=target)


def _solve_log_ratio(cost: np.ndarray, target: float) -> float:
    """log r with expected cost ``target``, for ``cost_0 < target < cost_{K-1}`` (cost rises with r)."""
    lo, hi = -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if float(_shares_from_log_ratio(mid, len(cost)) @ cost) < target:
            lo = mid
        else:
            hi = mid
    return lo  # the cheaper side of the bracket, so the law's cost never exceeds the target


def _thresholds_for_shares(conf: np.ndarray, shares: np.ndarray) -> np.ndarray:
    n, k_exits = conf.shape
    leave_by = np.ceil(n * np.cumsum(shares) - _SHARE_EPS).astype(np.int64)  # frames gone after exit k
    thresholds = np.full(k_exits - 1, np.inf)
    running = np.ones(n, dtype=bool)
    for k in range(k_exits - 1):
        n_leave = int(leave_by[k]) - int((~running).sum())
        if n_leave > 0:
            remaining = np.sort(conf[running, k])[::-1]
            thresholds[k] = remaining[min(n_leave, len(remaining)) - 1]
            running &= ~(conf[:, k] >= thresholds[k])  # ties at the threshold leave too
    return thresholds


def exits_under_thresholds(confidences: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N,) int64: the first exit k with ``confidences[:, k] >= thresholds[k]``, else the last exit.
    confidences (N, K), thresholds (K-1,)."""
    n, k_exits = confidences.shape
    if len(thresholds) != k_exits - 1:
        raise ValueError(f"need {k_exits - 1} thresholds for {k_exits} exits, got {len(thresholds)}")
    stops = np.concatenate([confidences[:, :-1] >= thresholds[None, :], np.ones((n, 1), dtype=bool)], axis=1)
    return stops.argmax(axis=1).astype(np.int64)
