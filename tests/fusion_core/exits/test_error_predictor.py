"""Per-frame detection error (hand-computed) and the QuEE error predictor on synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_core.boxes import empty_boxes, make_boxes
from fusion_core.exits.error_predictor import (
    ErrorPredictor,
    ErrorPredictorConfig,
    fit_error_predictor,
    frame_detection_error,
    mean_frame_detection_error,
)


def boxes(rows: list[tuple[float, float, int, float]]) -> np.ndarray:
    """(x, y, class_id, score) rows -> box array with unit sizes."""
    if not rows:
        return empty_boxes()
    a = np.array(rows, dtype=np.float64)
    n = len(a)
    return make_boxes(np.c_[a[:, :2], np.zeros(n)], np.ones((n, 3)), np.zeros(n), np.zeros((n, 2)), a[:, 2], a[:, 3])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_empty_sides():
    assert frame_detection_error(empty_boxes(), empty_boxes()) == 0.0
    assert frame_detection_error(boxes([(0, 0, 0, 0.9)]), empty_boxes()) == 1.0
    assert frame_detection_error(empty_boxes(), boxes([(0, 0, 0, 1.0)])) == 1.0
    # A detection below the score threshold does not count: the frame is empty on both sides.
    assert frame_detection_error(boxes([(0, 0, 0, 0.2)]), empty_boxes()) == 0.0


def test_hand_computed_f1():
    gt = boxes([(0, 0, 0, 1.0), (10, 0, 1, 1.0)])
    det = boxes([(1, 0, 0, 0.9),     # car 1 m from the car: true positive
                 (10, 3, 1, 0.8),    # pedestrian 3 m away (> 2 m): false positive, the pedestrian is missed
                 (20, 0, 0, 0.1)])   # below the score threshold: dropped
    # TP 1, 2 kept detections, 2 boxes: F1 = 2 / 4
    assert frame_detection_error(det, gt) == pytest.approx(0.5)
    assert frame_detection_error(det, gt, match_distance_m=4.0) == pytest.approx(0.0)
    assert frame_detection_error(det, gt, score_threshold=0.05) == pytest.approx(1 - 2 / 5)


def test_mean_error_over_the_ap_distances():
    gt = boxes([(0, 0, 0, 1.0), (10, 0, 1, 1.0)])
    det = boxes([(1.5, 0, 0, 0.9), (10, 0, 1, 0.8)])  # the car 1.5 m off, the pedestrian exact
    # 0.5 m and 1 m: one TP of 2 + 2 (error 0.5); 2 m and 4 m: both found (error 0)
    assert mean_frame_detection_error(det, gt) == pytest.approx(0.25)
    assert mean_frame_detection_error(det, gt, (0.5,)) == pytest.approx(frame_detection_error(det, gt, 0.5))
    with pytest.raises(ValueError, match="at least one"):
        mean_frame_detection_error(det, gt, ())


def test_class_and_duplicates():
    gt = boxes([(0, 0, 1, 1.0)])
    assert frame_detection_error(boxes([(0, 0, 0, 0.9)]), gt) == 1.0  # right place, wrong class
    # Two detections of one box: one TP, one FP -> F1 = 2 / 3
    assert frame_detection_error(boxes([(0, 0, 1, 0.9), (0.5, 0, 1, 0.8)]), gt) == pytest.approx(1 / 3)


def test_bad_box_shape():
    with pytest.raises(ValueError):
        frame_detection_error(np.zeros((2, 5)), empty_boxes())


def synthetic(n: int = 3000, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence improves with depth and tracks a per-frame difficulty; error = (1 - conf)^2 + noise."""
    g = torch.Generator().manual_seed(seed)
    ease = torch.rand(n, 1, generator=g)
    conf = (ease + 0.1 * torch.arange(k) + 0.05 * torch.randn(n, k, generator=g)).clamp(0, 1)
    err = ((1 - conf) ** 2 + 0.02 * torch.randn(n, k, generator=g)).clamp(0, 1)
    return conf, err


def test_predictions_track_a_known_error_function():
    conf, err = synthetic()
    predictor = fit_error_predictor(conf[:2000], err[:2000])
    test_conf, test_err = conf[2000:], err[2000:]
    for k in range(3):
        pred = predictor.predict(k, test_conf[:, : k + 1])
        assert pred.shape == (1000, 3 - k)
        assert bool(((pred >= 0) & (pred <= 1)).all())
        assert spearman(pred[:, 0].numpy(), test_err[:, k].numpy()) > 0.8
    # From exit 0, the deepest exit's error is still predictable through the shared difficulty.
    assert spearman(predictor.predict(0, test_conf[:, :1])[:, 2].numpy(), test_err[:, 2].numpy()) > 0.6


def test_extra_features_are_used():
    g = torch.Generator().manual_seed(3)
    conf = torch.rand(1000, 2, generator=g)
    context = torch.rand(1000, 1, generator=g)
    err = (0.8 * context + 0.05 * torch.rand(1000, 2, generator=g)).expand(-1, 2).clamp(0, 1)
    predictor = fit_error_predictor(conf, err, context)
    assert spearman(predictor.predict(1, conf, context)[:, 0].numpy(), err[:, 1].numpy()) > 0.9
    with pytest.raises(ValueError):
        predictor.predict(1, conf)
    with pytest.raises(ValueError):
        fit_error_predictor(conf, err).predict(0, conf[:, :1], context)


def test_save_and_load_with_weights_only(tmp_path):
    conf, err = synthetic(500)
    predictor = fit_error_predictor(conf, err, config=ErrorPredictorConfig(ridge=0.1, quadratic=False))
    path = predictor.save(tmp_path / "error_predictor.pt")
    state = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = ErrorPredictor.load(path)
    assert loaded.n_exits == 3 and not loaded.quadratic
    for k in range(3):
        assert torch.equal(loaded.predict(k, conf[:, : k + 1]), predictor.predict(k, conf[:, : k + 1]))
    del state["exit1.weight"]
    with pytest.raises(ValueError, match="exit1.weight"):
        ErrorPredictor.from_state_dict(state)


def test_bad_fit_inputs():
    with pytest.raises(ValueError):
        fit_error_predictor(torch.rand(10, 3), torch.rand(10, 2))
    with pytest.raises(ValueError):
        fit_error_predictor(torch.rand(0, 3), torch.rand(0, 3))
    with pytest.raises(ValueError):
        ErrorPredictorConfig(ridge=0.0)
