"""Rotated BEV IoU and weighted box fusion against hand-computed cases; every expected value
shows its arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fusion_core.box_fusion import bev_corners, rotated_bev_iou, weighted_box_fusion
from fusion_core.boxes import (
    BOX_DIM,
    CLASS_ID,
    SCORE,
    VX,
    YAW,
    X,
    Y,
    Z,
    empty_boxes,
    points_in_boxes,
)

CAR, PED = 0, 1


def box(x: float, y: float = 0.0, *, length: float = 4.0, width: float = 1.8, yaw: float = 0.0,
        class_id: int = CAR, score: float = 1.0, height: float = 1.5, z: float = 0.75,
        vx: float = 0.0) -> np.ndarray:
    """One box as a (11,) float32 row."""
    row = np.zeros(BOX_DIM, dtype=np.float32)
    row[:] = (x, y, z, length, width, height, yaw, vx, 0.0, class_id, score)
    return row


def boxes(*rows: np.ndarray) -> np.ndarray:
    """(N, 11) float32 from rows; no rows gives empty_boxes()."""
    return np.stack(rows) if rows else empty_boxes()


def square(x: float, y: float = 0.0, yaw: float = 0.0, side: float = 2.0) -> np.ndarray:
    return box(x, y, length=side, width=side, yaw=yaw)


# --- corners and IoU ----------------------------------------------------------------------------

def test_bev_corners_of_rotated_box():
    # 4 x 2 box at (10, 5) turned 90 deg: its length now runs along +y.
    corners = bev_corners(boxes(box(10.0, 5.0, length=4.0, width=2.0, yaw=math.pi / 2)))
    assert corners.shape == (1, 4, 2)
    # front-left (+2, +1) -> rotated (-1, +2); then (-2, +1) -> (-1, -2); (-2, -1) -> (1, -2); (2, -1) -> (1, 2)
    np.testing.assert_allclose(corners[0], [[9, 7], [9, 3], [11, 3], [11, 7]], atol=1e-6)


def test_identical_boxes_iou_one():
    a = boxes(box(3.0, -2.0, yaw=0.7))
    np.testing.assert_allclose(rotated_bev_iou(a, a), [[1.0]], atol=1e-9)


def test_disjoint_boxes_iou_zero():
    assert rotated_bev_iou(boxes(square(0.0)), boxes(square(2.5))).tolist() == [[0.0]]
    # Circumscribed circles overlap (radius sqrt(2) each, centres 2.5 apart) but squares do not.
    assert rotated_bev_iou(boxes(square(0.0, yaw=0.3)), boxes(square(2.5, 0.2))).item() == 0.0


def test_offset_squares_iou_one_third():
    # Two 2 x 2 squares, centres 1 m apart in x: intersection 1 x 2 = 2, union 4 + 4 - 2 = 6.
    iou = rotated_bev_iou(boxes(square(0.0)), boxes(square(1.0)))
    np.testing.assert_allclose(iou, [[2.0 / 6.0]], atol=1e-9)


def test_square_and_same_square_rotated_45_degrees():
    # The rotated square's edges are |x| + |y| = sqrt(2); it cuts a right triangle with legs
    # 2 - sqrt(2) off each corner of [-1, 1]^2: intersection = 4 - 4 * (2 - sqrt(2))^2 / 2
    # = 8 (sqrt(2) - 1) (a regular octagon), union = 8 - 8 (sqrt(2) - 1); IoU = 1 / sqrt(2).
    intersection = 8.0 * (math.sqrt(2.0) - 1.0)
    expected = intersection / (8.0 - intersection)
    assert expected == pytest.approx(1.0 / math.sqrt(2.0))
    iou = rotated_bev_iou(boxes(square(5.0, 1.0)), boxes(square(5.0, 1.0, yaw=math.pi / 4)))
    np.testing.assert_allclose(iou, [[expected]], atol=1e-9)


def test_contained_box():
    # A 1 x 1 square turned 30 deg inside a 3 x 2 box: IoU = 1 / 6.
    iou = rotated_bev_iou(boxes(box(0.0, length=3.0, width=2.0)),
                          boxes(box(0.2, 0.1, length=1.0, width=1.0, yaw=math.radians(30))))
    np.testing.assert_allclose(iou, [[1.0 / 6.0]], atol=1e-9)


def test_yaw_pi_is_the_same_rectangle_as_yaw_zero():
    reference = boxes(box(0.5, 0.3, length=4.0, width=1.8, yaw=0.2))
    at_zero = rotated_bev_iou(reference, boxes(box(0.0, length=4.0, width=1.8, yaw=0.0)))
    at_pi = rotated_bev_iou(reference, boxes(box(0.0, length=4.0, width=1.8, yaw=math.pi)))
    at_minus_pi = rotated_bev_iou(reference, boxes(box(0.0, length=4.0, width=1.8, yaw=-math.pi)))
    assert 0.0 < at_zero.item() < 1.0
    np.testing.assert_allclose(at_pi, at_zero, atol=1e-6)
    np.testing.assert_allclose(at_minus_pi, at_zero, atol=1e-6)


def test_iou_matrix_symmetric_in_unit_range_and_matches_sampled_area():
    rng = np.random.default_rng(0)
    n = 12
    random_boxes = boxes(*[
        box(rng.uniform(-2, 2), rng.uniform(-2, 2), length=rng.uniform(0.5, 4), width=rng.uniform(0.3, 2),
            yaw=rng.uniform(-math.pi, math.pi)) for _ in range(n)
    ])
    iou = rotated_bev_iou(random_boxes, random_boxes)
    assert iou.shape == (n, n)
    np.testing.assert_allclose(iou, iou.T, atol=1e-9)
    np.testing.assert_allclose(np.diag(iou), 1.0, atol=1e-9)
    assert ((iou >= 0.0) & (iou <= 1.0)).all()
    assert (iou[~np.eye(n, dtype=bool)] > 0).any()  # the test is not vacuous
    # Independent check: areas counted on a 1 cm grid (2-D only, so z is put on the grid plane).
    axis = np.arange(-5.0, 5.0, 0.01) + 0.005
    grid_x, grid_y = np.meshgrid(axis, axis)
    points = np.stack([grid_x.ravel(), grid_y.ravel(), np.full(grid_x.size, 0.75)], axis=1)
    inside = points_in_boxes(points, random_boxes[:4])
    for i in range(4):
        for j in range(4):
            sampled = (inside[:, i] & inside[:, j]).sum() / (inside[:, i] | inside[:, j]).sum()
            assert iou[i, j] == pytest.approx(sampled, abs=0.01)


def test_zero_size_box_iou_zero_not_nan():
    normal = box(0.0)
    flat = box(0.0, length=0.0)
    negative = box(0.0, width=-1.0)
    iou = rotated_bev_iou(boxes(normal, flat, negative), boxes(normal, flat, negative))
    assert not np.isnan(iou).any()
    np.testing.assert_allclose(iou, [[1, 0, 0], [0, 0, 0], [0, 0, 0]], atol=1e-9)


def test_iou_empty_inputs():
    assert rotated_bev_iou(empty_boxes(), boxes(square(0.0))).shape == (0, 1)
    assert rotated_bev_iou(boxes(square(0.0)), empty_boxes()).shape == (1, 0)


# --- weighted box fusion ------------------------------------------------------------------------

def test_two_sources_fuse_to_score_weighted_position():
    # Car boxes 1 m apart: overlap 3 x 1.8 = 5.4, union 7.2 + 7.2 - 5.4 = 9, IoU 0.6 >= 0.1.
    fused = weighted_box_fusion([boxes(box(10.0, score=0.8, vx=2.0)), boxes(box(11.0, score=0.4, vx=5.0))])
    assert fused.shape == (1, BOX_DIM)
    assert fused.dtype == np.float32
    assert fused[0, X] == pytest.approx((10 * 0.8 + 11 * 0.4) / 1.2, abs=1e-5)  # 10.333
    assert fused[0, VX] == pytest.approx((2 * 0.8 + 5 * 0.4) / 1.2, abs=1e-5)   # 3.0
    assert fused[0, Z] == pytest.approx(0.75)
    # Two of two sources saw it: mean(0.8, 0.4) * min(2, 2) / 2 = 0.6.
    assert fused[0, SCORE] == pytest.approx((0.8 + 0.4) / 2 * 2 / 2)
    assert fused[0, CLASS_ID] == CAR


def test_box_seen_by_one_of_two_sources_has_score_halved():
    # mean(0.8) * min(1, 2) / 2 = 0.4; the box itself is unchanged.
    fused = weighted_box_fusion([boxes(box(10.0, 2.0, yaw=0.3, score=0.8)), empty_boxes()])
    np.testing.assert_allclose(fused, boxes(box(10.0, 2.0, yaw=0.3, score=0.4)), atol=1e-6)


def test_conf_type_max_keeps_largest_score_without_rescaling():
    fused = weighted_box_fusion([boxes(box(10.0, score=0.8)), boxes(box(11.0, score=0.4)), empty_boxes()],
                                conf_type="max")
    assert fused[:, SCORE].tolist() == [pytest.approx(0.8)]


def test_different_classes_never_fuse():
    fused = weighted_box_fusion([boxes(box(10.0, class_id=CAR, score=0.9)),
                                 boxes(box(10.0, class_id=PED, score=0.6))])
    assert sorted(fused[:, CLASS_ID].tolist()) == [CAR, PED]
    # Each seen by one of two sources: 0.9 / 2 and 0.6 / 2, sorted descending.
    np.testing.assert_allclose(fused[:, SCORE], [0.45, 0.3], atol=1e-6)


def test_two_boxes_from_the_same_source_do_not_fuse():
    fused = weighted_box_fusion([boxes(box(10.0, score=0.9), box(10.5, score=0.7))])
    np.testing.assert_allclose(fused[:, X], [10.0, 10.5], atol=1e-6)
    np.testing.assert_allclose(fused[:, SCORE], [0.9, 0.7], atol=1e-6)  # one of one source


def test_other_source_joins_the_first_cluster_not_the_duplicate():
    # Source 0 has a duplicate (0.9 at x=10, 0.7 at x=10.5); source 1 sees 0.8 at x=10.2.
    # Visiting order 0.9, 0.8, 0.7: the 0.8 box joins the 0.9 cluster, the duplicate stays alone.
    fused = weighted_box_fusion([boxes(box(10.0, score=0.9), box(10.5, score=0.7)),
                                 boxes(box(10.2, score=0.8))])
    assert len(fused) == 2
    assert fused[0, X] == pytest.approx((10.0 * 0.9 + 10.2 * 0.8) / 1.7, abs=1e-5)
    assert fused[0, SCORE] == pytest.approx((0.9 + 0.8) / 2)       # 2 of 2 sources
    assert fused[1, X] == pytest.approx(10.5)
    assert fused[1, SCORE] == pytest.approx(0.7 / 2)               # 1 of 2 sources


def test_yaw_circular_mean_across_the_seam():
    # sin: 0.5 sin(3.1) + 0.5 sin(-3.1) = 0; cos: -cos(0.0416) < 0 -> atan2(0, -) = pi -> -pi.
    fused = weighted_box_fusion([boxes(box(10.0, yaw=3.1, score=0.5)), boxes(box(10.0, yaw=-3.1, score=0.5))])
    assert len(fused) == 1
    assert abs(fused[0, YAW]) == pytest.approx(math.pi, abs=1e-5)
    assert -math.pi <= fused[0, YAW] < math.pi
    # Unequal weights lean towards the stronger box: atan2(0.6 sin 3.1 - 0.2 sin 3.1, ...) near 3.1.
    fused = weighted_box_fusion([boxes(box(10.0, yaw=3.1, score=0.6)), boxes(box(10.0, yaw=-3.1, score=0.2))])
    expected = math.atan2(0.4 * math.sin(3.1), 0.8 * math.cos(3.1))
    assert fused[0, YAW] == pytest.approx(expected, abs=1e-5)
    assert 3.1 < expected < math.pi


def test_opposite_headings_keep_the_most_confident_yaw():
    fused = weighted_box_fusion([boxes(box(10.0, yaw=0.5, score=0.5)),
                                 boxes(box(10.0, yaw=0.5 - math.pi, score=0.5))])
    assert fused[0, YAW] == pytest.approx(0.5, abs=1e-5)


def test_pedestrians_half_a_metre_apart_fuse_by_distance():
    ped_a = box(5.0, 2.0, length=0.4, width=0.4, height=1.7, class_id=PED, score=0.6)
    ped_b = box(5.5, 2.0, length=0.4, width=0.4, height=1.7, class_id=PED, score=0.6)
    assert rotated_bev_iou(boxes(ped_a), boxes(ped_b)).item() == 0.0
    fused = weighted_box_fusion([boxes(ped_a), boxes(ped_b)])
    assert len(fused) == 1
    assert fused[0, X] == pytest.approx(5.25)  # equal scores: the midpoint
    assert fused[0, Y] == pytest.approx(2.0)
    assert fused[0, SCORE] == pytest.approx(0.6)
    # With a 0.3 m radius (and IoU 0) they stay apart.
    assert len(weighted_box_fusion([boxes(ped_a), boxes(ped_b)], match_distance_m=0.3)) == 2


def test_far_apart_boxes_stay_apart():
    # 3 m apart: IoU (1 x 1.8) / (14.4 - 1.8) = 1.8 / 12.6 = 0.143 >= 0.1 -> fuse; 3.5 m: 0.5 x 1.8
    # / (14.4 - 0.9) = 0.067 < 0.1 and 3.5 m > 1 m -> apart.
    assert len(weighted_box_fusion([boxes(box(10.0)), boxes(box(13.0))])) == 1
    assert len(weighted_box_fusion([boxes(box(10.0)), boxes(box(13.5))])) == 2


def test_source_weights_move_the_fused_position():
    # Weights 3 and 1, scores 0.5: member weights 1.5 and 0.5, x = (10 * 1.5 + 11 * 0.5) / 2 = 10.25;
    # score mean(0.5, 0.5) * min(4, 4) / 4 = 0.5.
    fused = weighted_box_fusion([boxes(box(10.0, score=0.5)), boxes(box(11.0, score=0.5))],
                                source_weights=[3.0, 1.0])
    assert fused[0, X] == pytest.approx(10.25)
    assert fused[0, SCORE] == pytest.approx(0.5)
    # Only the weight-1 source saw it: 0.5 * 1 / 4 = 0.125; only the weight-3 one: 0.5 * 3 / 4.
    only_light = weighted_box_fusion([empty_boxes(), boxes(box(11.0, score=0.5))], source_weights=[3.0, 1.0])
    only_heavy = weighted_box_fusion([boxes(box(10.0, score=0.5)), empty_boxes()], source_weights=[3.0, 1.0])
    assert only_light[0, SCORE] == pytest.approx(0.125)
    assert only_heavy[0, SCORE] == pytest.approx(0.375)


def test_zero_weight_source_is_switched_off():
    # Source 1 (weight 0) is ignored; the total weight is 1, so source 0's box keeps its score.
    fused = weighted_box_fusion([boxes(box(10.0, score=0.8)), boxes(box(11.0, score=0.9))],
                                source_weights=[1.0, 0.0])
    np.testing.assert_allclose(fused, boxes(box(10.0, score=0.8)), atol=1e-6)


def test_skip_score_drops_weak_boxes_first():
    sets = [boxes(box(10.0, score=0.8)), boxes(box(11.0, score=0.05))]
    fused = weighted_box_fusion(sets, skip_score=0.1)
    assert fused[0, X] == pytest.approx(10.0)
    assert fused[0, SCORE] == pytest.approx(0.4)  # the weak box no longer confirms it: 0.8 * 1 / 2


def test_output_sorted_by_score_descending():
    fused = weighted_box_fusion([boxes(box(0.0, score=0.3), box(20.0, score=0.9), box(40.0, score=0.6))])
    np.testing.assert_allclose(fused[:, SCORE], [0.9, 0.6, 0.3], atol=1e-6)
    np.testing.assert_allclose(fused[:, X], [20.0, 40.0, 0.0], atol=1e-6)


def test_empty_inputs():
    for box_sets in ([], [empty_boxes()], [empty_boxes(), empty_boxes()]):
        fused = weighted_box_fusion(box_sets)
        assert fused.shape == (0, BOX_DIM) and fused.dtype == np.float32
    # All boxes below skip_score.
    assert weighted_box_fusion([boxes(box(0.0, score=0.1))], skip_score=0.5).shape == (0, BOX_DIM)


@pytest.mark.parametrize(
    ("box_sets", "kwargs", "message"),
    [
        ([empty_boxes(), np.zeros((2, 10), np.float32)], {}, r"box set 1 .*\(2, 10\)"),
        ([np.zeros(11, np.float32)], {}, r"box set 0 .*\(11,\)"),
        ([boxes(box(0.0)), boxes(box(np.nan))], {}, r"box set 1 .*NaN"),
        ([boxes(box(0.0, score=-0.1))], {}, r"box set 0 .*negative score"),
        ([boxes(box(0.0))], {"source_weights": [1.0, 1.0]}, r"one weight per box set"),
        ([boxes(box(0.0)), empty_boxes()], {"source_weights": [1.0, -1.0]}, r">= 0"),
        ([boxes(box(0.0)), empty_boxes()], {"source_weights": [0.0, 0.0]}, r"positive"),
        ([boxes(box(0.0))], {"conf_type": "mean"}, r"conf_type"),
        ([boxes(box(0.0))], {"iou_threshold": 0.0}, r"iou_threshold"),
        ([boxes(box(0.0))], {"match_distance_m": -1.0}, r"match_distance_m"),
    ],
)
def test_validation_errors(box_sets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        weighted_box_fusion(box_sets, **kwargs)
