"""Exit policies: after the head computes exit k, "stop here?" for every frame still running.

All policies share one interface, :meth:`ExitPolicy.stop` (or :meth:`ExitPolicy.decide`, which
also says which exit's output to report and whether a deadline was missed), called once per
exit with a batch of frames; the last exit always stops. Exits not reached are never computed,
so a policy sees only exits 0..k. Policies are frozen dataclasses whose fields are their
run-time settings: change one with :meth:`ExitPolicy.with_settings` (validated; no retraining).

    last        LastExit       never stops early
    confidence  ConfidenceExit stop when confidence >= threshold of this exit
    budget      BudgetExit     thresholds solved on validation for a mean-cost target (MSDNet)
    error       ErrorExit      QuEE: argmin_j lam * (cost_j - cost_k) + predicted error_j, stop if j = k
    deadline    DeadlineExit   anytime: stop when the next stage would not finish by the deadline

:func:`simulate_exits` replays a policy on confidences of all exits computed offline (evaluation,
budget sweeps). :func:`exit_policy_from_settings` builds the policy run-time settings
(``fusion_core.exits.settings.ExitSettings``) name, through ``POLICIES`` and each class's
:meth:`ExitPolicy.from_settings`.

In the head's stage loop (frames that stopped are dropped from the batch by the caller)::

    history = []
    for k in range(n_exits):
        out = ...  # stage k and exit head k on the running frames
        history.append(frame_confidence(out, previous_out))
        decision = policy.decide(k, torch.stack(history, 1), n_exits=n_exits,
                                 elapsed_ms=elapsed_ms, extra_features=context)
        # frames with decision.stop report exit decision.exit_used; the rest run stage k + 1
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from fusion_core.config_io import ConfigError
from fusion_core.exits.budget import (
    BudgetSolution,
    solve_budget_thresholds,
    validated_costs,
)
from fusion_core.exits.error_predictor import ErrorPredictor
from fusion_core.exits.settings import ExitSettings

if TYPE_CHECKING:  # the calibration module builds policies: imported for the type only
    from fusion_core.exits.calibration import ExitCalibration


@dataclass(frozen=True, eq=False)
class ExitQuery:
    """What the head knows about a batch of running frames right after computing exit k."""

    exit_index: int                        # k, 0-based
    n_exits: int                           # K, exits the head has
    confidences: torch.Tensor              # (B, k + 1) frame confidences of exits 0..k
    elapsed_ms: torch.Tensor               # (B,) float64, time since each frame's processing started, ms
    extra_features: torch.Tensor | None    # (B, F) e.g. the context vector, or None

    @property
    def confidence(self) -> torch.Tensor:
        """(B,) confidence of exit k."""
        return self.confidences[:, self.exit_index]

    @property
    def is_last(self) -> bool:
        return self.exit_index == self.n_exits - 1


@dataclass(frozen=True, eq=False)
class ExitDecision:
    stop: torch.Tensor             # (B,) bool: run no further stage for this frame
    exit_used: torch.Tensor        # (B,) int64: exit whose output the frame reports (k, or k-1 after a late exit k)
    missed_deadline: torch.Tensor  # (B,) bool: not even exit 0 finished by the deadline


@dataclass(frozen=True, eq=False)
class ExitResources:
    """What building a policy from its settings may need besides them (:meth:`ExitPolicy.from_settings`)."""

    calibration: ExitCalibration | None = None  # stored with the gates: the budget and error policies
    stage_ms: Callable[[], tuple[float, ...]] | None = None  # measures (K,) head stage times, ms: deadline


def _calibration(name: str, resources: ExitResources) -> ExitCalibration:
    if resources.calibration is None:
        raise ConfigError(f"exit policy {name} needs gates trained with exit calibration (dyn-fusion train-gates)")
    return resources.calibration


def _query(exit_index: int, confidences: torch.Tensor, n_exits: int, elapsed_ms: torch.Tensor | float,
           extra_features: torch.Tensor | None) -> ExitQuery:
    if not 0 <= exit_index < n_exits:
        raise ValueError(f"exit_index must be in [0, {n_exits - 1}], got {exit_index}")
    if confidences.dim() != 2 or confidences.shape[1] != exit_index + 1:
        raise ValueError(f"confidences at exit {exit_index} must be (B, {exit_index + 1}) (exits 0..k), "
                         f"got shape {tuple(confidences.shape)}")
    # Decisions are a handful of numbers per frame: do them on the CPU, whatever device the head uses.
    confidences = confidences.detach().cpu()
    if extra_features is not None:
        extra_features = extra_features.detach().cpu()
    b = confidences.shape[0]
    elapsed = torch.as_tensor(elapsed_ms, dtype=torch.float64).detach().cpu()
    if elapsed.dim() == 0:
        elapsed = elapsed.expand(b)
    if elapsed.shape != (b,):
        raise ValueError(f"elapsed_ms must be a number or ({b},), got shape {tuple(elapsed.shape)}")
    return ExitQuery(exit_index, n_exits, confidences, elapsed, extra_features)


class ExitPolicy(ABC):
    """One stop rule; subclasses are frozen dataclasses of their settings."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> ExitPolicy:
        """The policy with the run-time ``settings`` that concern it; ConfigError (one line) naming
        what ``settings`` or ``resources`` lack."""

    def stop(self, exit_index: int, confidences: torch.Tensor, *, n_exits: int,
             elapsed_ms: torch.Tensor | float = 0.0, extra_features: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) bool: stop after exit ``exit_index``. confidences (B, exit_index + 1) of exits
        0..k; elapsed_ms a number or (B,), time since the frame started (only DeadlineExit reads
        it); extra_features (B, F) (only ErrorExit reads it). The last exit always stops."""
        return self.decide(exit_index, confidences, n_exits=n_exits, elapsed_ms=elapsed_ms,
                           extra_features=extra_features).stop

    def decide(self, exit_index: int, confidences: torch.Tensor, *, n_exits: int,
               elapsed_ms: torch.Tensor | float = 0.0, extra_features: torch.Tensor | None = None) -> ExitDecision:
        """:meth:`stop` with the exit to report and the missed-deadline flag."""
        query = _query(exit_index, confidences, n_exits, elapsed_ms, extra_features)
        return self._decide(query)

    def _decide(self, query: ExitQuery) -> ExitDecision:
        b = query.confidences.shape[0]
        if query.is_last:
            stop = torch.ones(b, dtype=torch.bool)
        else:
            stop = self._stop_early(query).to(torch.bool)
        return ExitDecision(stop, torch.full((b,), query.exit_index, dtype=torch.int64),
                            torch.zeros(b, dtype=torch.bool))

    @abstractmethod
    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        """(B,) bool for an exit that is not the last."""

    def with_settings(self, **changes) -> ExitPolicy:
        """A copy with some settings changed (validated like the constructor)."""
        _check_setting_names(type(self), changes)
        return dataclasses.replace(self, **changes)


def _threshold_stop(query: ExitQuery, thresholds: Sequence[float]) -> torch.Tensor:
    if len(thresholds) != query.n_exits - 1:
        raise ValueError(f"{len(thresholds)} thresholds for {query.n_exits} exits: need one per exit "
                         f"but the last ({query.n_exits - 1})")
    return query.confidence >= thresholds[query.exit_index]


@dataclass(frozen=True, eq=False)
class LastExit(ExitPolicy):
    """Every frame runs to the last exit (the accuracy reference)."""

    name: ClassVar[str] = "last"

    @classmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> LastExit:
        return cls()

    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        return torch.zeros(query.confidences.shape[0], dtype=torch.bool)


@dataclass(frozen=True, eq=False)
class ConfidenceExit(ExitPolicy):
    """Stop at the first exit k whose confidence reaches its threshold."""

    name: ClassVar[str] = "confidence"
    thresholds: float | tuple[float, ...]  # one for every exit, or one per exit 0..K-2; +inf never stops

    def __post_init__(self):
        many = isinstance(self.thresholds, (tuple, list, np.ndarray, torch.Tensor))
        try:
            values = tuple(float(t) for t in self.thresholds) if many else (float(self.thresholds),)
        except (TypeError, ValueError):
            values = (math.nan,)
        if any(math.isnan(t) for t in values):
            raise ValueError(f"thresholds must be numbers (not NaN), got {self.thresholds!r}")
        object.__setattr__(self, "thresholds", values if many else values[0])

    @classmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> ConfidenceExit:
        return cls(thresholds=settings.threshold)

    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        if isinstance(self.thresholds, tuple):
            return _threshold_stop(query, self.thresholds)
        return query.confidence >= self.thresholds


@dataclass(frozen=True, eq=False)
class BudgetExit(ExitPolicy):
    """Confidence thresholds solved on validation frames so the mean cost meets a target
    (:func:`fusion_core.exits.budget.solve_budget_thresholds`); changing the target re-solves."""

    name: ClassVar[str] = "budget"
    validation_confidences: torch.Tensor | np.ndarray  # (N, K) confidences of validation frames at every exit
    cumulative_cost: tuple[float, ...]                 # (K,) cost of running up to and including exit k
    target_mean_cost: float                            # mean cost per frame to meet, same unit as cumulative_cost
    solution: BudgetSolution = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "cumulative_cost", tuple(validated_costs(self.cumulative_cost).tolist()))
        object.__setattr__(self, "solution", solve_budget_thresholds(
            self.validation_confidences, self.cumulative_cost, self.target_mean_cost))

    @classmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> BudgetExit:
        return _calibration(cls.name, resources).budget_policy(settings.budget)

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(self.solution.thresholds.tolist())

    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        return _threshold_stop(query, self.thresholds)


@dataclass(frozen=True, eq=False)
class ErrorExit(ExitPolicy):
    """QuEE: at exit k, plan ``j* = argmin_{j >= k} lam * (cost_j - cost_k) + predicted_error_j``
    and stop when ``j* = k``. The plan is redone at every exit with the newer confidences
    (receding horizon), so a frame heading for j* may still stop earlier or later."""

    name: ClassVar[str] = "error"
    predictor: ErrorPredictor          # fitted by fusion_core.exits.error_predictor.fit_error_predictor
    cumulative_cost: tuple[float, ...]  # (K,) cost of running up to and including exit k
    lam: float = 0.0                    # λ, error units per cost unit: 0 = best predicted error, large = cheapest

    def __post_init__(self):
        cost = validated_costs(self.cumulative_cost, self.predictor.n_exits)
        object.__setattr__(self, "cumulative_cost", tuple(cost.tolist()))
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be finite and >= 0, got {self.lam}")

    @classmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> ErrorExit:
        return _calibration(cls.name, resources).error_policy(settings.lam)

    def plan(self, query: ExitQuery) -> torch.Tensor:
        """(B,) int64 exit j* each frame would head for, from exit k."""
        if query.n_exits != self.predictor.n_exits:
            raise ValueError(f"predictor has {self.predictor.n_exits} exits, the head {query.n_exits}")
        k = query.exit_index
        predicted = self.predictor.predict(k, query.confidences, query.extra_features).double()  # (B, K-k)
        cost = torch.tensor(self.cumulative_cost[k:], dtype=torch.float64)
        score = self.lam * (cost - cost[0]) + predicted
        return score.argmin(dim=1) + k  # ties go to the earliest (cheapest) exit

    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        return self.plan(query) == query.exit_index


@dataclass(frozen=True, eq=False)
class DeadlineExit(ExitPolicy):
    """Anytime inference: continue only while the next stage is predicted to finish by the
    deadline; report the deepest exit that finished in time.

    After exit k finished at ``elapsed_ms`` (measured from the frame's start, so stems and
    experts count): stop unless ``elapsed_ms + predicted_stage_ms[k + 1] <= deadline_ms``. If
    exit k itself finished late (the prediction was optimistic), exit k-1 is reported: it
    finished in time, or the policy would not have started stage k. If even exit 0 is late it
    is still reported, with ``missed_deadline``. Reporting at the deadline, while a late stage is
    still running, is the caller's business.
    """

    name: ClassVar[str] = "deadline"
    deadline_ms: float                      # time budget per frame from its start, ms
    predicted_stage_ms: tuple[float, ...]   # (K,) predicted time of stage k plus exit head k, ms

    def __post_init__(self):
        if not (math.isfinite(self.deadline_ms) and self.deadline_ms > 0):
            raise ValueError(f"deadline_ms must be finite and > 0, got {self.deadline_ms}")
        stages = tuple(float(t) for t in self.predicted_stage_ms)
        if not stages or not all(math.isfinite(t) and t >= 0 for t in stages):
            raise ValueError(f"predicted_stage_ms must be non-empty, finite and >= 0, got {self.predicted_stage_ms!r}")
        object.__setattr__(self, "predicted_stage_ms", stages)

    @classmethod
    def from_settings(cls, settings: ExitSettings, resources: ExitResources) -> DeadlineExit:
        if settings.deadline_ms is None:
            raise ConfigError("exit policy deadline needs a deadline in ms (deadline_ms)")
        if resources.stage_ms is None:
            raise ConfigError("exit policy deadline needs the detector and a frame to time its stages on")
        return cls(deadline_ms=settings.deadline_ms, predicted_stage_ms=resources.stage_ms())

    @property
    def predicted_finish_ms(self) -> torch.Tensor:
        """(K,) predicted time each exit finishes, ms after the head starts."""
        return torch.tensor(self.predicted_stage_ms, dtype=torch.float64).cumsum(0)

    def _check(self, query: ExitQuery) -> None:
        if len(self.predicted_stage_ms) != query.n_exits:
            raise ValueError(f"{len(self.predicted_stage_ms)} predicted stage times for {query.n_exits} exits")

    def _stop_early(self, query: ExitQuery) -> torch.Tensor:
        self._check(query)
        return query.elapsed_ms + self.predicted_stage_ms[query.exit_index + 1] > self.deadline_ms

    def _decide(self, query: ExitQuery) -> ExitDecision:
        self._check(query)
        decision = super()._decide(query)
        k = query.exit_index
        in_time = query.elapsed_ms <= self.deadline_ms
        exit_used = torch.where(in_time, decision.exit_used, torch.full_like(decision.exit_used, max(k - 1, 0)))
        # A late exit never makes the next stage fit, so it already stops (the ~in_time term is for clarity).
        return ExitDecision(decision.stop | ~in_time, exit_used, ~in_time & (k == 0))


POLICIES: dict[str, type[ExitPolicy]] = {cls.name: cls for cls in (LastExit, ConfidenceExit, BudgetExit, ErrorExit,
                                                                    DeadlineExit)}


def _check_setting_names(cls: type[ExitPolicy], settings: dict) -> None:
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"exit policy {cls.name!r} has no setting {', '.join(unknown)}; "
                         f"its settings: {', '.join(allowed) or 'none'}")


def make_exit_policy(name: str, **settings) -> ExitPolicy:
    """The policy called ``name`` (last, confidence, budget, error, deadline) with ``settings``
    as its dataclass fields; ValueError for an unknown name, unknown or missing settings, or bad
    values."""
    if name not in POLICIES:
        raise ValueError(f"unknown exit policy {name!r}; choose one of {', '.join(POLICIES)}")
    cls = POLICIES[name]
    _check_setting_names(cls, settings)
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in settings]
    if missing:
        raise ValueError(f"exit policy {name!r} needs setting(s) {', '.join(missing)}")
    return cls(**settings)


def exit_policy_from_settings(settings: ExitSettings, resources: ExitResources = ExitResources()) -> ExitPolicy:
    """The policy ``settings.policy`` names, built from ``settings`` (and ``resources`` where it
    needs calibration or stage times); ConfigError naming what is missing."""
    return POLICIES[settings.policy].from_settings(settings, resources)


@dataclass(frozen=True, eq=False)
class ExitSimulation:
    stopped_at: torch.Tensor       # (N,) int64 last exit computed: its cumulative cost is what the frame paid
    exit_used: torch.Tensor        # (N,) int64 exit whose output the frame reports
    missed_deadline: torch.Tensor  # (N,) bool


def simulate_exits(policy: ExitPolicy, confidences: torch.Tensor | np.ndarray,
                   elapsed_ms: torch.Tensor | np.ndarray | Sequence[float] | None = None,
                   extra_features: torch.Tensor | None = None) -> ExitSimulation:
    """Which exit every frame takes under ``policy``, from confidences of all exits computed
    offline; vectorised over frames, one policy call per exit.

    confidences (N, K); elapsed_ms (N, K) or (K,): time each exit finished after the frame
    started, ms (e.g. ``DeadlineExit.predicted_finish_ms`` plus the stems' time); required by
    DeadlineExit, 0 for the others when None; extra_features (N, F) for ErrorExit.
    """
    conf = torch.as_tensor(confidences, dtype=torch.float32)
    if conf.dim() != 2 or conf.shape[1] == 0:
        raise ValueError(f"confidences must be (N, K) with K >= 1, got shape {tuple(conf.shape)}")
    n, n_exits = conf.shape
    if elapsed_ms is None:
        if isinstance(policy, DeadlineExit):
            raise ValueError("DeadlineExit needs elapsed_ms (N, K) or (K,), e.g. policy.predicted_finish_ms")
        elapsed = torch.zeros(n, n_exits, dtype=torch.float64)
    else:
        elapsed = torch.as_tensor(elapsed_ms, dtype=torch.float64)
        if elapsed.shape not in ((n_exits,), (n, n_exits)):
            raise ValueError(f"elapsed_ms must be ({n_exits},) or ({n}, {n_exits}), got shape {tuple(elapsed.shape)}")
        elapsed = elapsed.expand(n, n_exits)
    running = torch.ones(n, dtype=torch.bool)
    stopped_at = torch.full((n,), n_exits - 1, dtype=torch.int64)
    exit_used = stopped_at.clone()
    missed = torch.zeros(n, dtype=torch.bool)
    for k in range(n_exits):
        decision = policy.decide(k, conf[:, : k + 1], n_exits=n_exits, elapsed_ms=elapsed[:, k],
                                 extra_features=extra_features)
        now = running & decision.stop
        stopped_at[now] = k
        exit_used[now] = decision.exit_used[now]
        missed[now] = decision.missed_deadline[now]
        running &= ~decision.stop
    return ExitSimulation(stopped_at, exit_used, missed)
