"""QuEE-style error prediction: at exit k, predict the detection error each exit j >= k would
have, from what is known at exit k (the frame confidences of exits 0..k, plus an optional extra
feature vector such as the context vector). :class:`fusion_core.exits.policies.ErrorExit` then
trades predicted error against cost with a run-time weight λ, without retraining.

The per-frame error the predictor learns is :func:`frame_detection_error` (1 - F1 of the
evaluator's matching). The model is, per exit k, a ridge regression from standardised features
(confidences, their squares so the error may bend with confidence, the extra features) to the
K - k errors: closed form, deterministic, trained in milliseconds, and small enough that it
cannot overfit the few thousand validation frames it is fitted on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusion_core.boxes import BOX_DIM, CLASS_ID, SCORE, X, Y
from fusion_core.metrics.average_precision import (
    DEFAULT_THRESHOLDS_M,
    match_frame_class,
)

_MIN_FEATURE_STD = 1e-6  # constant features (e.g. one confidence value everywhere) are left unscaled


def frame_detection_error(detections: np.ndarray, ground_truth: np.ndarray, match_distance_m: float = 2.0,
                          score_threshold: float = 0.3) -> float:
    """1 - F1 of one frame's detections, in [0, 1].

    detections (D, BOX_DIM) and ground_truth (G, BOX_DIM) in the :mod:`fusion_core.boxes` layout.
    Detections scoring below ``score_threshold`` are dropped; the rest are matched to ground truth
    of the same class by the evaluator's greedy rule (highest score first, nearest free box by 2-D
    centre distance, a match when it is within ``match_distance_m`` metres; see
    :mod:`fusion_core.metrics.average_precision`). With TP matches, D' kept detections and
    G boxes, ``F1 = 2 TP / (D' + G)``: 0 error when both sides are empty, 1 when exactly one is.
    """
    for name, boxes in (("detections", detections), ("ground_truth", ground_truth)):
        if boxes.ndim != 2 or boxes.shape[1] != BOX_DIM:
            raise ValueError(f"{name} must be (N, {BOX_DIM}), got shape {boxes.shape}")
    kept = detections[detections[:, SCORE] >= score_threshold]
    total = len(kept) + len(ground_truth)
    if total == 0:
        return 0.0
    radius = np.array([match_distance_m], dtype=np.float64)
    true_positives = 0
    for cls in np.union1d(kept[:, CLASS_ID], ground_truth[:, CLASS_ID]):
        det = kept[kept[:, CLASS_ID] == cls]
        gt = ground_truth[ground_truth[:, CLASS_ID] == cls]
        tp = match_frame_class(det[:, [X, Y]].astype(np.float64), det[:, SCORE].astype(np.float64),
                               gt[:, [X, Y]].astype(np.float64), radius)
        true_positives += int(tp.sum())
    return 1.0 - 2.0 * true_positives / total


def mean_frame_detection_error(detections: np.ndarray, ground_truth: np.ndarray,
                               match_distances_m: tuple[float, ...] = DEFAULT_THRESHOLDS_M,
                               score_threshold: float = 0.3) -> float:
    """:func:`frame_detection_error` averaged over the AP distance thresholds (metres), so a box
    found but misplaced by 1.5 m counts as half right, as it does in mAP."""
    if not match_distances_m:
        raise ValueError("match_distances_m: at least one distance is needed")
    return float(np.mean([frame_detection_error(detections, ground_truth, d, score_threshold)
                          for d in match_distances_m]))


@dataclass(frozen=True)
class ErrorPredictorConfig:
    ridge: float = 1e-2      # L2 penalty on the standardised weights, per frame (the bias is not penalised)
    quadratic: bool = True   # also feed squared confidences (error is rarely linear in confidence)

    def __post_init__(self):
        if not self.ridge > 0:
            raise ValueError(f"ridge must be > 0, got {self.ridge}")


@dataclass(frozen=True, eq=False)
class ExitRegressor:
    """The linear model of one exit k: standardised features -> errors of exits k..K-1."""

    weight: torch.Tensor        # (F_k, K - k) float64
    bias: torch.Tensor          # (K - k,) float64, mean training error of exits k..K-1
    feature_mean: torch.Tensor  # (F_k,) float64
    feature_std: torch.Tensor   # (F_k,) float64


class ErrorPredictor:
    """Predicts, at exit k, the detection error (1 - F1) of every exit j >= k."""

    def __init__(self, regressors: list[ExitRegressor], n_extra_features: int, quadratic: bool):
        if not regressors:
            raise ValueError("need one regressor per exit, got none")
        self.regressors = regressors
        self.n_extra_features = n_extra_features
        self.quadratic = quadratic

    @property
    def n_exits(self) -> int:
        return len(self.regressors)

    def predict(self, exit_index: int, confidences: torch.Tensor,
                extra_features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K - k) predicted errors of exits k..K-1, clipped to [0, 1].

        confidences (B, k + 1): frame confidences of exits 0..k; extra_features (B, F), required
        exactly when the predictor was fitted with them.
        """
        if not 0 <= exit_index < self.n_exits:
            raise ValueError(f"exit_index must be in [0, {self.n_exits - 1}], got {exit_index}")
        reg = self.regressors[exit_index]
        x = exit_features(confidences, exit_index, extra_features, self.n_extra_features, self.quadratic)
        x = (x.double() - reg.feature_mean) / reg.feature_std
        return (x @ reg.weight + reg.bias).clamp(0.0, 1.0).float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so :meth:`load` works with ``torch.load(weights_only=True)``."""
        state = {"n_exits": torch.tensor(self.n_exits), "n_extra_features": torch.tensor(self.n_extra_features),
                 "quadratic": torch.tensor(self.quadratic)}
        for k, reg in enumerate(self.regressors):
            for field in ("weight", "bias", "feature_mean", "feature_std"):
                state[f"exit{k}.{field}"] = getattr(reg, field)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ErrorPredictor:
        try:
            n_exits = int(state["n_exits"])
            regressors = [ExitRegressor(**{field: state[f"exit{k}.{field}"].double()
                                           for field in ("weight", "bias", "feature_mean", "feature_std")})
                          for k in range(n_exits)]
            return cls(regressors, int(state["n_extra_features"]), bool(state["quadratic"]))
        except KeyError as missing:
            raise ValueError(f"error predictor state lacks {missing}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        torch.save(self.state_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ErrorPredictor:
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def exit_features(confidences: torch.Tensor, exit_index: int, extra_features: torch.Tensor | None,
                  n_extra_features: int, quadratic: bool) -> torch.Tensor:
    """(B, F_k) features known at exit k: confidences of exits 0..k, optionally their squares,
    then the extra features. confidences (B, k + 1) (wider input is cut to exits 0..k)."""
    if confidences.dim() != 2 or confidences.shape[1] < exit_index + 1:
        raise ValueError(f"confidences at exit {exit_index} must be (B, >= {exit_index + 1}), "
                         f"got shape {tuple(confidences.shape)}")
    conf = confidences[:, : exit_index + 1].double()
    parts = [conf, conf * conf] if quadratic else [conf]
    if n_extra_features:
        if extra_features is None or extra_features.shape != (conf.shape[0], n_extra_features):
            got = None if extra_features is None else tuple(extra_features.shape)
            raise ValueError(f"extra_features must be ({conf.shape[0]}, {n_extra_features}), got {got}")
        parts.append(extra_features.double())
    elif extra_features is not None and extra_features.numel():
        raise ValueError("extra_features given to a predictor fitted without them")
    return torch.cat(parts, dim=1)


def fit_error_predictor(confidences: torch.Tensor, errors: torch.Tensor, extra_features: torch.Tensor | None = None,
                        config: ErrorPredictorConfig = ErrorPredictorConfig()) -> ErrorPredictor:
    """Fit one ridge regression per exit.

    confidences (N, K): frame confidences of every exit (all exits run offline); errors (N, K):
    :func:`frame_detection_error` of every exit; extra_features (N, F) or None. The model of exit
    k sees only exits 0..k, as at run time.
    """
    confidences = torch.as_tensor(confidences)
    errors = torch.as_tensor(errors, dtype=torch.float64)
    if confidences.dim() != 2 or confidences.shape != errors.shape:
        raise ValueError(f"confidences and errors must both be (N, K), got {tuple(confidences.shape)} "
                         f"and {tuple(errors.shape)}")
    n, n_exits = confidences.shape
    if n == 0 or n_exits == 0:
        raise ValueError("need at least one frame and one exit")
    n_extra = 0 if extra_features is None else int(torch.as_tensor(extra_features).shape[-1])
    extra = None if extra_features is None else torch.as_tensor(extra_features)
    regressors = []
    for k in range(n_exits):
        x = exit_features(confidences, k, extra, n_extra, config.quadratic)
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False).clamp(min=_MIN_FEATURE_STD)
        x = (x - mean) / std
        y = errors[:, k:]
        y_mean = y.mean(dim=0)
        # Ridge normal equations; the penalty scales with N so its strength does not depend on N.
        gram = x.T @ x + config.ridge * n * torch.eye(x.shape[1], dtype=torch.float64)
        weight = torch.linalg.solve(gram, x.T @ (y - y_mean))
        regressors.append(ExitRegressor(weight=weight, bias=y_mean, feature_mean=mean, feature_std=std))
    return ErrorPredictor(regressors, n_extra, config.quadratic)
