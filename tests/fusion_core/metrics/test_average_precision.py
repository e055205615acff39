"""BEV centre-distance AP against hand-computed cases; every expected value shows its arithmetic.

Reminder of the definition (fusion_core/metrics/average_precision.py): detections ranked by
descending score, precision_k = TP_k / k, recall_k = TP_k / G, envelope p*_k = max_{j>=k}
precision_j, AP = sum_k (recall_k - recall_{k-1}) * p*_k = (1/G) * sum over TPs of p*_k.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fusion_core.boxes import BOX_DIM, CLASS_ID, SCORE, X, Y, empty_boxes
from fusion_core.metrics.average_precision import (
    DetectionEvaluator,
    average_precision,
    match_frame_class,
)

CAR, PED, CYC = 0, 1, 2
THRESHOLDS_M = (0.5, 1.0, 2.0, 4.0)


def boxes(*rows: tuple[float, float, int, float]) -> np.ndarray:
    """(N, 11) float32 boxes from (x_m, y_m, class_id, score) rows; other columns plausible."""
    out = np.zeros((len(rows), BOX_DIM), dtype=np.float32)
    out[:, 3:6] = (4.0, 1.8, 1.5)
    for i, (x, y, class_id, score) in enumerate(rows):
        out[i, [X, Y, CLASS_ID, SCORE]] = (x, y, class_id, score)
    return out


def gt(*xy_class: tuple[float, float, int]) -> np.ndarray:
    return boxes(*[(x, y, c, 1.0) for x, y, c in xy_class])


def evaluate(*frames: tuple[np.ndarray, np.ndarray], **kwargs):
    ev = DetectionEvaluator(**kwargs)
    for det, truth in frames:
        ev.add_frame(det, truth)
    return ev.result()["all"]


def ap_of(metrics, class_name: str, threshold_m: float):
    return metrics.ap[class_name][threshold_m].ap


# --- the AP arithmetic itself ---------------------------------------------------------------

def test_average_precision_from_flags():
    # ranked TP, FP, TP with G = 2: precision 1/1, 1/2, 2/3; recall 1/2, 1/2, 2/2
    # envelope 1, 2/3, 2/3 -> AP = 0.5*1 + 0*(2/3) + 0.5*(2/3) = 5/6
    ap, precision, recall = average_precision(np.array([True, False, True]), n_gt=2)
    assert ap == pytest.approx(5 / 6)
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    # G = 3 and the same flags: recall tops out at 2/3 -> AP = (1/3)*1 + (1/3)*(2/3) = 5/9
    assert average_precision(np.array([True, False, True]), n_gt=3)[0] == pytest.approx(5 / 9)
    assert average_precision(np.zeros(0, bool), n_gt=2)[0] == 0.0
    assert average_precision(np.array([False]), n_gt=0)[0] is None


# --- detector scenarios -----------------------------------------------------------------------

def test_perfect_detector_has_ap_one_everywhere():
    # 2 cars + 1 pedestrian + 1 cyclist over two frames, each found exactly:
    # every detection is a TP at precision 1, recall climbs to 1 -> AP = 1 for every pair, mAP = 1
    f1 = gt((10, 0, CAR), (20, 3, CAR), (8, -2, PED))
    f2 = gt((15, 1, CYC))
    m = evaluate((f1.copy(), f1), (f2.copy(), f2))
    for name in ("car", "pedestrian", "cyclist"):
        for t in THRESHOLDS_M:
            assert ap_of(m, name, t) == 1.0
        assert m.ap_per_class[name] == 1.0
    assert m.mean_ap == 1.0
    assert m.n_gt_per_class == {"car": 2, "pedestrian": 1, "cyclist": 1}
    assert m.n_det_per_class == {"car": 2, "pedestrian": 1, "cyclist": 1}
    np.testing.assert_allclose(m.ap["car"][0.5].precision, [1.0, 1.0])
    np.testing.assert_allclose(m.ap["car"][0.5].recall, [0.5, 1.0])


def test_no_detections_gives_zero_and_no_ground_truth_is_excluded():
    # car: 2 GT, 0 detections -> AP 0 at each threshold. pedestrian/cyclist: no GT -> None,
    # left out of the means: mAP = mean of the 4 car values = 0 (not 0 over 12 pairs, not None).
    m = evaluate((empty_boxes(), gt((10, 0, CAR), (20, 0, CAR))))
    assert all(ap_of(m, "car", t) == 0.0 for t in THRESHOLDS_M)
    assert m.ap["car"][1.0].n_det == 0 and m.ap["car"][1.0].precision.shape == (0,)
    assert m.ap_per_class == {"car": 0.0, "pedestrian": None, "cyclist": None}
    assert m.mean_ap == 0.0


def test_class_without_ground_truth_does_not_dilute_map():
    # car perfect (AP 1). pedestrian: 1 detection, no GT -> None (not 0) -> mAP = 1, not 2/3.
    m = evaluate((boxes((10, 0, CAR, 0.9), (5, 5, PED, 0.8)), gt((10, 0, CAR))))
    assert m.ap_per_class == {"car": 1.0, "pedestrian": None, "cyclist": None}
    assert m.ap["pedestrian"][2.0].n_det == 1 and m.ap["pedestrian"][2.0].n_gt == 0
    assert m.mean_ap == 1.0


def test_nothing_defined_gives_none():
    m = evaluate((boxes((1, 1, CAR, 0.5)), empty_boxes()))
    assert m.mean_ap is None and set(m.ap_per_class.values()) == {None}
    empty = DetectionEvaluator().result()
    assert list(empty) == ["all"] and empty["all"].n_frames == 0 and empty["all"].mean_ap is None


def test_duplicate_detection_is_a_false_positive():
    # 2 cars A (10,0) and B (20,0). Ranked: A-hit 0.9 TP, A-duplicate 0.8 FP (A taken), B-hit 0.7 TP.
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3
    # AP = 0.5*1 + 0.5*(2/3) = 5/6 at every threshold (all hits are exact).
    det = boxes((10, 0, CAR, 0.9), (10.1, 0, CAR, 0.8), (20, 0, CAR, 0.7))
    m = evaluate((det, gt((10, 0, CAR), (20, 0, CAR))))
    for t in THRESHOLDS_M:
        assert ap_of(m, "car", t) == pytest.approx(5 / 6)
    np.testing.assert_allclose(m.ap["car"][1.0].precision, [1.0, 0.5, 2 / 3])
    # With one GT only, the trailing FP does not lower all-point AP: 1.0*1 = 1.
    m1 = evaluate((det[:2], gt((10, 0, CAR))))
    assert ap_of(m1, "car", 1.0) == 1.0


def test_offset_of_0_7_m_matches_from_1_m_up():
    # |(10.7, 0) - (10, 0)| = 0.7 m: > 0.5 -> FP, AP 0; <= 1, 2, 4 -> TP, AP 1.
    # ap_per_class = (0 + 1 + 1 + 1) / 4 = 0.75
    m = evaluate((boxes((10.7, 0, CAR, 0.9)), gt((10, 0, CAR))))
    assert [ap_of(m, "car", t) for t in THRESHOLDS_M] == [0.0, 1.0, 1.0, 1.0]
    assert m.ap_per_class["car"] == 0.75 and m.mean_ap == 0.75
    assert m.ap_per_threshold == {0.5: 0.0, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0}


def test_distance_is_euclidean_in_bev_and_threshold_is_inclusive():
    # offset (1, 0): exactly 1.0 m (exact in float32) -> TP at 1 m (<=), FP at 0.5 m.
    m = evaluate((boxes((11, 0, CAR, 0.9)), gt((10, 0, CAR))))
    assert [ap_of(m, "car", t) for t in THRESHOLDS_M] == [0.0, 1.0, 1.0, 1.0]
    # offset (1.5, 2) and 5 m in z: hypot(1.5, 2) = 2.5 m (z ignored) -> FP at 2 m, TP at 4 m;
    # a sum of |dx| + |dy| (3.5 m) would still match at 4 m, a max-norm (2 m) would match at 2 m.
    det = boxes((11.5, 2, CAR, 0.9))
    det[0, 2] = 5.0
    m = evaluate((det, gt((10, 0, CAR))))
    assert [ap_of(m, "car", t) for t in THRESHOLDS_M] == [0.0, 0.0, 0.0, 1.0]


def test_high_score_false_positive_before_true_positive():
    # 1 car GT. FP (far away) score 0.9 ranked first, TP score 0.8 second:
    # precision 0/1, 1/2; recall 0, 1 -> AP = 0*0 + 1*(1/2) = 0.5
    m = evaluate((boxes((40, 10, CAR, 0.9), (10, 0, CAR, 0.8)), gt((10, 0, CAR))))
    assert ap_of(m, "car", 2.0) == 0.5
    # Swap the scores: TP first -> precision 1 at recall 1 -> AP = 1
    m = evaluate((boxes((40, 10, CAR, 0.8), (10, 0, CAR, 0.9)), gt((10, 0, CAR))))
    assert ap_of(m, "car", 2.0) == 1.0


def test_equal_scores_keep_input_order():
    # Same score 0.5: stable ranking keeps rows in order. FP row first -> AP 0.5 (as above);
    # TP row first -> AP 1.
    assert ap_of(evaluate((boxes((40, 0, CAR, 0.5), (10, 0, CAR, 0.5)), gt((10, 0, CAR)))), "car", 1.0) == 0.5
    assert ap_of(evaluate((boxes((10, 0, CAR, 0.5), (40, 0, CAR, 0.5)), gt((10, 0, CAR)))), "car", 1.0) == 1.0


def test_greedy_takes_nearest_free_box_without_fallback():
    # GT at x=0 and x=1.5. Det 0.9 at x=0.9: nearest is GT 1.5 (0.6 m; GT 0 is 0.9 m).
    # Det 0.8 at x=0.4: GT 1.5 taken (at 1 m and up), so GT 0 (0.4 m).
    # 0.5 m: det 0.9 -> nearest free is GT 1.5 at 0.6 m > 0.5 -> FP (no fallback);
    #        det 0.8 -> GT 0 at 0.4 m -> TP. ranked FP, TP; G = 2:
    #        precision 0, 1/2; recall 0, 1/2 -> AP = 0.5 * 0.5 = 0.25
    # 1 m:   TP, TP -> AP 1
    m = evaluate((boxes((0.9, 0, CAR, 0.9), (0.4, 0, CAR, 0.8)), gt((0, 0, CAR), (1.5, 0, CAR))))
    assert ap_of(m, "car", 0.5) == pytest.approx(0.25)
    assert ap_of(m, "car", 1.0) == 1.0


def test_class_mismatch_never_matches():
    # A pedestrian detection exactly on a car: car has GT, no detection -> AP 0;
    # pedestrian has a detection, no GT -> None. mAP = car only = 0.
    m = evaluate((boxes((10, 0, PED, 0.9)), gt((10, 0, CAR))))
    assert all(ap_of(m, "car", t) == 0.0 for t in THRESHOLDS_M)
    assert all(ap_of(m, "pedestrian", t) is None for t in THRESHOLDS_M)
    assert m.mean_ap == 0.0


def test_matching_stays_within_a_frame():
    # Frame 1: GT car at (10,0), no detection. Frame 2: detection at (10,0), no GT.
    # Cross-frame matching would call it a TP; correctly it is 1 FP + 1 miss -> AP 0.
    m = evaluate((empty_boxes(), gt((10, 0, CAR))), (boxes((10, 0, CAR, 0.9)), empty_boxes()))
    assert ap_of(m, "car", 4.0) == 0.0
    # Frame 1: GT + exact det 0.8. Frame 2: det 0.9 at the same spot, no GT.
    # Global ranking: frame-2 FP (0.9), frame-1 TP (0.8): precision 0, 1/2; recall 0, 1 -> AP 0.5
    m = evaluate((boxes((10, 0, CAR, 0.8)), gt((10, 0, CAR))), (boxes((10, 0, CAR, 0.9)), empty_boxes()))
    assert ap_of(m, "car", 4.0) == 0.5
    assert m.n_frames == 2


def test_mean_over_defined_classes_and_thresholds():
    # car perfect (AP 1 x 4). pedestrian: FP 0.9 then TP 0.8 -> AP 0.5 x 4 (as above).
    # cyclist: no GT -> excluded. mAP = (4*1 + 4*0.5) / 8 = 0.75
    det = boxes((10, 0, CAR, 0.9), (30, 5, PED, 0.9), (5, 2, PED, 0.8))
    m = evaluate((det, gt((10, 0, CAR), (5, 2, PED))))
    assert m.ap_per_class == {"car": 1.0, "pedestrian": 0.5, "cyclist": None}
    assert m.mean_ap == pytest.approx(0.75)


def test_groups_are_evaluated_on_their_own_frames():
    # Frame A (fog): car at (5,0), exact det 0.9 -> TP.
    # Frame B (no tag): car at (20,0), det 0.8 at (30,0) -> FP, car missed.
    # "all": ranked TP, FP; G = 2: precision 1, 1/2; recall 1/2, 1/2 -> AP = 0.5*1 = 0.5
    # "condition:fog": only frame A -> AP 1.  "fault:lidar:dropout": only frame B -> AP 0.
    ev = DetectionEvaluator()
    ev.add_frame(boxes((5, 0, CAR, 0.9)), gt((5, 0, CAR)), groups=["condition:fog"])
    ev.add_frame(boxes((30, 0, CAR, 0.8)), gt((20, 0, CAR)), groups=("fault:lidar:dropout", "all"))
    res = ev.result()
    assert list(res) == ["all", "condition:fog", "fault:lidar:dropout"]
    assert res["all"].mean_ap == 0.5 and res["all"].n_frames == 2
    assert res["condition:fog"].mean_ap == 1.0 and res["condition:fog"].n_frames == 1
    assert res["fault:lidar:dropout"].mean_ap == 0.0 and res["fault:lidar:dropout"].n_frames == 1
    assert res["condition:fog"].n_gt_per_class["car"] == 1
    assert res["all"].group == "all"


def test_to_json_is_plain_data():
    det = boxes((10, 0, CAR, 0.9), (10.1, 0, CAR, 0.8), (20, 0, CAR, 0.7))
    m = evaluate((det, gt((10, 0, CAR), (20, 0, CAR))))
    data = m.to_json(pr_curve_points=11)
    round_trip = json.loads(json.dumps(data))  # fails on numpy scalars/arrays
    assert round_trip["ap"]["car"]["1.0"] == pytest.approx(5 / 6)
    assert round_trip["ap"]["pedestrian"]["0.5"] is None
    assert round_trip["mean_ap"] == pytest.approx(5 / 6)
    assert round_trip["thresholds_m"] == [0.5, 1.0, 2.0, 4.0]
    curve = round_trip["pr_curves"]["car"]["1.0"]
    # envelope 1 up to recall 0.5, 2/3 up to recall 1
    assert curve["recall"][5] == 0.5 and curve["precision"][5] == 1.0
    assert curve["precision"][6] == pytest.approx(2 / 3) and curve["precision"][10] == pytest.approx(2 / 3)
    assert "pedestrian" not in round_trip["pr_curves"] or not round_trip["pr_curves"]["pedestrian"]
    assert "pr_curves" not in m.to_json()


def test_match_frame_class_all_thresholds_at_once():
    # one det 0.7 m from the only GT: TP from 1 m up; rows stay in input order
    tp = match_frame_class(np.array([[0.7, 0.0], [0.0, 0.0]]), np.array([0.9, 0.1]),
                           np.array([[0.0, 0.0]]), np.array(THRESHOLDS_M))
    # det 0 (0.9) first: at 0.5 m FP, GT stays free -> det 1 takes it; at >= 1 m det 0 takes it.
    np.testing.assert_array_equal(tp, [[False, True, True, True], [True, False, False, False]])


def _reference_ap(frames, class_id: int, threshold_m: float):
    """The definition written out literally: one global stable ranking, nearest free box of the
    same frame, explicit envelope loop. Slow and obvious, for cross-checking only."""
    ranked = sorted(
        ((float(det[r, SCORE]), f, r) for f, (det, _) in enumerate(frames)
         for r in range(len(det)) if det[r, CLASS_ID] == class_id),
        key=lambda item: -item[0])  # sorted() is stable: ties keep (frame, row) order
    n_gt = sum(int((truth[:, CLASS_ID] == class_id).sum()) for _, truth in frames)
    if n_gt == 0:
        return None
    taken, flags = set(), []
    for _, f, r in ranked:
        det, truth = frames[f]
        free = []
        for g in range(len(truth)):
            if truth[g, CLASS_ID] == class_id and (f, g) not in taken:
                dx = float(det[r, X]) - float(truth[g, X])
                dy = float(det[r, Y]) - float(truth[g, Y])
                free.append((math.sqrt(dx * dx + dy * dy), g))
        hit = bool(free) and min(free)[0] <= threshold_m
        if hit:
            taken.add((f, min(free)[1]))
        flags.append(hit)
    precision, recall, n_tp = [], [], 0
    for k, hit in enumerate(flags, start=1):
        n_tp += hit
        precision.append(n_tp / k)
        recall.append(n_tp / n_gt)
    ap, previous_recall = 0.0, 0.0
    for k in range(len(flags)):
        ap += (recall[k] - previous_recall) * max(precision[k:])
        previous_recall = recall[k]
    return ap


def test_matches_a_literal_reference_on_random_frames_with_many_ties():
    # Coordinates on a 0.5 m grid and scores from 4 values force equal distances, equal scores,
    # duplicates and boxes exactly on the radius; the fast path must agree with the literal one.
    rng = np.random.default_rng(7)
    frames, tags = [], []
    for _ in range(150):
        n_gt, n_extra = int(rng.integers(0, 6)), int(rng.integers(0, 3))
        truth = gt(*[(float(x), float(y), int(c)) for x, y, c in zip(
            rng.integers(0, 12, n_gt) * 0.5, rng.integers(0, 6, n_gt) * 0.5, rng.integers(0, 2, n_gt))])
        picks = rng.integers(0, max(n_gt, 1), n_gt + 2) if n_gt else np.zeros(0, int)
        det = np.concatenate([truth[picks], boxes(*[(float(rng.integers(0, 12)) * 0.5, 1.0, int(rng.integers(0, 2)), 0.5)
                                                     for _ in range(n_extra)])]).astype(np.float32)
        det[:, [X, Y]] += rng.choice([0.0, 0.5, -0.5, 1.0, 2.0, 3.0], size=(len(det), 2))
        det[:, SCORE] = rng.choice([0.2, 0.4, 0.6, 0.8], size=len(det))
        frames.append((det, truth))
        tags.append(["odd"] if len(frames) % 2 else [])
    ev = DetectionEvaluator(class_names=("car", "pedestrian"))
    for (det, truth), groups in zip(frames, tags):
        ev.add_frame(det, truth, groups=groups)
    res = ev.result()
    odd_frames = [fr for fr, groups in zip(frames, tags) if groups]
    for group, subset in (("all", frames), ("odd", odd_frames)):
        for c, name in enumerate(("car", "pedestrian")):
            for t in THRESHOLDS_M:
                expected = _reference_ap(subset, c, t)
                assert res[group].ap[name][t].ap == pytest.approx(expected, abs=1e-12), (group, name, t)
    # the draw is rich enough to exercise every branch: neither trivial 0 nor 1 everywhere
    values = [res["all"].ap[n][t].ap for n in ("car", "pedestrian") for t in THRESHOLDS_M]
    assert len({round(v, 6) for v in values}) >= 4


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make_det, make_gt, message",
    [
        (lambda: np.zeros((2, 10), np.float32), empty_boxes, r"detections: expected shape \(N, 11\), got \(2, 10\)"),
        (lambda: np.zeros(11, np.float32), empty_boxes, r"detections: expected shape \(N, 11\)"),
        (empty_boxes, lambda: np.zeros((1, 12)), r"ground_truth: expected shape \(N, 11\)"),
        (lambda: boxes((np.nan, 0, CAR, 0.9)), empty_boxes, r"detections: x is not finite .* row 0"),
        (lambda: boxes((1, 0, CAR, 0.9), (1, np.inf, CAR, 0.9)), empty_boxes, r"detections: y is not finite .* row 1"),
        (lambda: boxes((1, 0, CAR, np.nan)), empty_boxes, r"detections: score is not finite"),
        (empty_boxes, lambda: gt((np.nan, 0, CAR)), r"ground_truth: x is not finite"),
        (lambda: boxes((1, 0, 3, 0.9)), empty_boxes, r"detections: class_id 3 in row 0 is not an integer in \[0, 3\)"),
        (empty_boxes, lambda: gt((1, 0, -1)), r"ground_truth: class_id -1 .* not an integer"),
        (lambda: boxes((1, 0, 0.5, 0.9)), empty_boxes, r"detections: class_id 0.5 .* not an integer"),
        (lambda: np.zeros((1, 11), dtype=object), empty_boxes, r"detections: expected a real numeric array"),
    ],
)
def test_invalid_input_is_rejected_with_the_problem_named(make_det, make_gt, message):
    ev = DetectionEvaluator()
    with pytest.raises(ValueError, match=message):
        ev.add_frame(make_det(), make_gt())
    assert ev.n_frames == 0  # a rejected frame leaves no trace


def test_invalid_groups_and_settings_are_rejected():
    ev = DetectionEvaluator()
    with pytest.raises(TypeError, match="groups: expected a sequence of tags"):
        ev.add_frame(empty_boxes(), empty_boxes(), groups="condition:fog")
    with pytest.raises(ValueError, match="groups: expected non-empty strings"):
        ev.add_frame(empty_boxes(), empty_boxes(), groups=[""])
    with pytest.raises(ValueError, match="thresholds_m"):
        DetectionEvaluator(thresholds_m=(1.0, -2.0))
    with pytest.raises(ValueError, match="thresholds_m"):
        DetectionEvaluator(thresholds_m=())
    with pytest.raises(ValueError, match="class_names"):
        DetectionEvaluator(class_names=("car", "car"))


def test_empty_arrays_and_custom_classes_are_accepted():
    ev = DetectionEvaluator(class_names=("car",), thresholds_m=(2.0,))
    ev.add_frame(np.zeros((0, BOX_DIM)), np.zeros((0, BOX_DIM), np.float32))
    ev.add_frame(boxes((1, 1, 0, 0.3)), gt((1, 1, 0)))
    m = ev.result()["all"]
    assert m.class_names == ("car",) and m.ap["car"][2.0].ap == 1.0 and m.n_frames == 2
    with pytest.raises(ValueError, match=r"class_id 1 .* \[0, 1\)"):
        ev.add_frame(boxes((1, 1, 1, 0.3)), empty_boxes())


# --- scale --------------------------------------------------------------------------------------

def test_many_frames_with_noisy_duplicates():
    # 600 frames x 30 GT and 40 detections (25 found, 15 of them twice, all jittered).
    rng = np.random.default_rng(0)
    ev = DetectionEvaluator()
    for i in range(600):
        truth = np.zeros((30, BOX_DIM), np.float32)
        truth[:, X], truth[:, Y] = rng.uniform(0, 50, 30), rng.uniform(-25, 25, 30)
        truth[:, CLASS_ID], truth[:, SCORE] = rng.integers(0, 3, 30), 1.0
        det = np.concatenate([truth[:25], truth[:15]])  # 25 found, 15 of them twice
        det[:, [X, Y]] += rng.normal(0, 0.8, (40, 2))
        det[:, SCORE] = rng.uniform(0, 1, 40)
        ev.add_frame(det, truth, groups=[f"condition:{('clear', 'fog', 'rain')[i % 3]}"])
    res = ev.result()
    assert res["all"].n_frames == 600 and res["condition:fog"].n_frames == 200
    # recall capped at 25/30 of the boxes, so AP sits between 0 and 25/30 and grows with the radius
    maps = [res["all"].ap_per_threshold[t] for t in THRESHOLDS_M]
    assert all(0.0 < v <= 25 / 30 + 1e-9 for v in maps) and maps == sorted(maps)


# --- ignored ("don't care") ground truth: boxes hidden behind other objects -----------------

def test_ignored_box_is_neither_a_miss_nor_a_false_positive():
    truth = gt((10, 0, CAR), (20, 0, CAR))
    det = boxes((20, 0, CAR, 0.9), (10, 0, CAR, 0.8), (30, 0, CAR, 0.7))
    # Counted normally: G = 2, ranked TP, TP, FP -> AP = (1 + 1) / 2 = 1.
    assert ap_of(evaluate((det, truth)), "car", 1.0) == pytest.approx(1.0)
    # The box at 20 m removed altogether: the 0.9 detection becomes a FP ranked first, G = 1:
    # FP, TP (precision 1/2), FP -> AP = 0.5.
    assert ap_of(evaluate((det, gt((10, 0, CAR)))), "car", 1.0) == pytest.approx(0.5)
    # The box at 20 m ignored: its detection is dropped, G = 1: TP (precision 1), FP -> AP = 1.
    ev = DetectionEvaluator()
    ev.add_frame(det, truth, ignore=np.array([False, True]))
    result = ev.result()["all"].ap["car"][1.0]
    assert result.ap == pytest.approx(1.0)
    assert (result.n_gt, result.n_det) == (1, 2)
    # An ignored box nobody detected is no miss: G = 1 with one TP -> AP = 1 (0.5 if counted).
    ev = DetectionEvaluator()
    ev.add_frame(boxes((10, 0, CAR, 0.8)), truth, ignore=np.array([False, True]))
    assert ap_of(ev.result()["all"], "car", 1.0) == pytest.approx(1.0)


def test_ignored_box_only_matches_within_the_threshold():
    # The detection is 1.5 m from the ignored box: at 1 m it is a plain FP (G = 1, FP then TP:
    # AP = 1/2), at 2 m it takes the ignored box and is dropped (AP = 1).
    ev = DetectionEvaluator()
    ev.add_frame(boxes((21.5, 0, CAR, 0.9), (10, 0, CAR, 0.8)), gt((10, 0, CAR), (20, 0, CAR)),
                 ignore=np.array([False, True]))
    metrics = ev.result()["all"]
    assert ap_of(metrics, "car", 1.0) == pytest.approx(0.5)
    assert ap_of(metrics, "car", 2.0) == pytest.approx(1.0)


def test_only_ignored_ground_truth_leaves_ap_undefined():
    ev = DetectionEvaluator()
    ev.add_frame(boxes((20, 0, CAR, 0.9)), gt((20, 0, CAR)), ignore=np.array([True]))
    assert ap_of(ev.result()["all"], "car", 1.0) is None


def test_ignore_mask_must_match_the_ground_truth():
    ev = DetectionEvaluator()
    with pytest.raises(ValueError, match="ignore"):
        ev.add_frame(empty_boxes(), gt((1, 1, CAR)), ignore=np.array([True, False]))
    with pytest.raises(ValueError, match="ignore"):
        ev.add_frame(empty_boxes(), gt((1, 1, CAR)), ignore=np.array([1]))
