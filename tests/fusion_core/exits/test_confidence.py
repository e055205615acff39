"""frame_confidence on hand-built heatmap logits."""
from __future__ import annotations

import math

import pytest
import torch

from fusion_core.exits.confidence import (
    ConfidenceConfig,
    exit_confidences,
    frame_confidence,
    peak_certainty,
)
from fusion_core.model.head import N_REGRESSION, ExitOutput

B, C, HW = 2, 3, 16
BACKGROUND_LOGIT = -8.0  # p ~ 3e-4: clearly empty


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def scene(peaks: list[list[tuple[int, int, int, float]]]) -> ExitOutput:
    """One frame per entry; each peak (class, row, col, p) with shoulders well below it, as a
    trained centre heatmap has."""
    logits = torch.full((len(peaks), C, HW, HW), BACKGROUND_LOGIT)
    for i, frame in enumerate(peaks):
        for c, r, col, p in frame:
            logits[i, c, r - 1:r + 2, col - 1:col + 2] = logit(0.6 * p)  # shoulders: never a local max
            logits[i, c, r, col] = logit(p)
    return ExitOutput(logits, torch.zeros(len(peaks), N_REGRESSION, HW, HW))


def test_empty_scene_is_confident():
    empty = scene([[], []])
    assert torch.allclose(frame_confidence(empty), torch.ones(2), atol=1e-3)
    assert torch.allclose(frame_confidence(empty, empty), torch.ones(2), atol=1e-3)


def test_sharp_agreed_peak_is_confident():
    now = scene([[(0, 5, 5, 0.95)]])
    before = scene([[(0, 5, 5, 0.93)]])
    conf = frame_confidence(now, before)
    assert conf.item() > 0.85


def test_peak_at_one_half_is_unconfident():
    conf = frame_confidence(scene([[(1, 8, 8, 0.5)]]), scene([[(1, 8, 8, 0.5)]]))
    assert conf.item() < 0.05


@pytest.mark.parametrize("p", [0.2, 0.35, 0.5, 0.6])
def test_ambiguous_band_is_less_confident_than_sharp_or_empty(p):
    ambiguous = frame_confidence(scene([[(0, 5, 5, p)]])).item()
    sharp = frame_confidence(scene([[(0, 5, 5, 0.95)]])).item()
    assert ambiguous < 0.7 and ambiguous < sharp < frame_confidence(scene([[]])).item()


def test_one_ambiguous_object_makes_the_frame_unconfident():
    easy = frame_confidence(scene([[(0, 3, 3, 0.97), (1, 10, 10, 0.98)]])).item()
    mixed = frame_confidence(scene([[(0, 3, 3, 0.97), (1, 10, 10, 0.98), (2, 6, 12, 0.45)]])).item()
    assert mixed < 0.15
    assert easy > 0.9


def test_disagreement_between_exits_lowers_confidence():
    peak = scene([[(0, 5, 5, 0.95)]])
    empty = scene([[]])
    agreed = frame_confidence(peak, scene([[(0, 5, 5, 0.95)]])).item()
    appeared = frame_confidence(peak, empty).item()
    vanished = frame_confidence(empty, peak).item()
    assert appeared < agreed and vanished < agreed
    assert appeared < 0.1 and vanished < 0.1
    # Without a previous exit the frame is judged on certainty alone.
    assert frame_confidence(peak).item() == pytest.approx(0.9, abs=1e-4)


def test_peak_moving_by_one_cell_still_agrees():
    moved = frame_confidence(scene([[(0, 5, 6, 0.95)]]), scene([[(0, 5, 5, 0.95)]])).item()
    assert moved == pytest.approx(0.9, abs=1e-4)
    far = frame_confidence(scene([[(0, 5, 9, 0.95)]]), scene([[(0, 5, 5, 0.95)]])).item()
    assert far < 0.1
    strict = ConfidenceConfig(match_radius_cells=0)
    # Radius 0 compares cell by cell: the old peak now sits on the new peak's shoulder (p = 0.57).
    strict_conf = frame_confidence(scene([[(0, 5, 6, 0.95)]]), scene([[(0, 5, 5, 0.95)]]), strict).item()
    assert strict_conf == pytest.approx(0.9 * (1 - (0.95 - 0.57)), abs=1e-3)


def test_shape_range_and_batch_independence():
    torch.manual_seed(0)
    now = ExitOutput(torch.randn(5, C, HW, HW) * 3, torch.zeros(5, N_REGRESSION, HW, HW))
    before = ExitOutput(torch.randn(5, C, HW, HW) * 3, torch.zeros(5, N_REGRESSION, HW, HW))
    conf = frame_confidence(now, before)
    assert conf.shape == (5,)
    assert bool(((conf >= 0) & (conf <= 1)).all())
    for i in range(5):
        alone = frame_confidence(ExitOutput(now.heatmap_logits[i:i + 1], now.regression[i:i + 1]),
                                 ExitOutput(before.heatmap_logits[i:i + 1], before.regression[i:i + 1]))
        assert alone.item() == pytest.approx(conf[i].item(), abs=1e-6)
    mixed = frame_confidence(scene([[], [(0, 5, 5, 0.5)]]))
    assert mixed[0] > 0.99 and mixed[1] < 0.05


def test_certainty_is_continuous_and_reaches_one_at_the_floor():
    floor = 0.05
    p = torch.tensor([0.0, floor, floor + 1e-4, 0.3, 0.5, 0.75, 1.0])
    c = peak_certainty(p, floor)
    assert c[0] == 1 and c[1] == 1 and c[2] > 0.999
    assert c[4] == 0 and c[5] == pytest.approx(0.5) and c[6] == 1
    assert c[3] == pytest.approx(0.2 / 0.45)


def test_exit_confidences_stacks_consecutive_pairs():
    outs = [scene([[], [(0, 5, 5, 0.9)]]), scene([[(0, 5, 5, 0.9)], [(0, 5, 5, 0.9)]])]
    table = exit_confidences(outs)
    assert table.shape == (2, 2)
    assert torch.allclose(table[:, 0], frame_confidence(outs[0]))
    assert torch.allclose(table[:, 1], frame_confidence(outs[1], outs[0]))


def test_bad_inputs():
    with pytest.raises(ValueError):
        ConfidenceConfig(peak_floor=0.5)
    with pytest.raises(ValueError):
        frame_confidence(scene([[]]), ExitOutput(torch.zeros(1, C, 8, 8), torch.zeros(1, N_REGRESSION, 8, 8)))
    with pytest.raises(ValueError):
        exit_confidences([])
