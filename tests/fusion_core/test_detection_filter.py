"""The published detections: score threshold, then cross-class bird's-eye NMS, on hand-made
boxes whose overlaps are worked out in the comments; boxes written as named fields."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fusion_core.boxes import CLASS_ID, SCORE, boxes_from_records, boxes_to_records, make_boxes
from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.detection_filter import DetectionFilterSettings, filter_detections

CAR, PED, CYCLIST = 0, 1, 2


def boxes(*rows):
    """rows of (x, y, l, w, class, score); yaw 0, z 0.8, h 1.6."""
    r = np.array(rows, np.float64).reshape(-1, 6)
    n = len(r)
    return make_boxes(np.c_[r[:, :2], np.full(n, 0.8)], np.c_[r[:, 2:4], np.full(n, 1.6)], np.zeros(n),
                      np.zeros((n, 2)), r[:, 4], r[:, 5])


def test_one_object_peaking_as_two_classes_is_published_once_with_its_best_class():
    # pedestrian 0.8 x 0.6 and cyclist 1.8 x 0.6 at one centre: IoU 0.48 / 1.08 = 0.44 > 0.2
    dets = boxes((10, 2, 0.8, 0.6, PED, 0.63), (10, 2, 1.8, 0.6, CYCLIST, 0.31))
    kept, index = filter_detections(dets, DetectionFilterSettings())
    assert index.tolist() == [0] and kept[0, CLASS_ID] == PED


def test_neighbours_that_do_not_overlap_are_all_kept_best_first_and_weak_boxes_go():
    dets = boxes((10, 0, 4.5, 1.9, CAR, 0.5),          # a car ...
                 (10, 2.5, 4.5, 1.9, CAR, 0.9),        # ... parked 2.5 m beside another: no overlap
                 (20, 0, 0.8, 0.6, PED, 0.39),         # below min_score 0.4
                 (30, 0, 0.8, 0.6, PED, 0.4))          # at it: kept
    kept, index = filter_detections(dets, DetectionFilterSettings())
    assert index.tolist() == [1, 0, 3]
    assert np.all(np.diff(kept[:, SCORE]) <= 0)


def test_overlap_at_the_threshold_is_kept_and_nms_iou_1_turns_suppression_off():
    # two 4 x 2 cars 2 m apart along x: intersection 2 x 2 = 4, union 12: IoU 1/3
    dets = boxes((10, 0, 4, 2, CAR, 0.9), (12, 0, 4, 2, CAR, 0.8))
    assert len(filter_detections(dets, DetectionFilterSettings(nms_iou=1 / 3 + 1e-6))[0]) == 2
    assert len(filter_detections(dets, DetectionFilterSettings(nms_iou=0.3))[0]) == 1
    assert len(filter_detections(dets, DetectionFilterSettings(nms_iou=1.0))[0]) == 2


def test_a_suppressed_box_does_not_suppress_others():
    # A(0.9) overlaps B(0.8) (IoU 1/3); B overlaps C(0.7) (IoU 1/3); A and C do not touch (4 m apart)
    dets = boxes((10, 0, 4, 2, CAR, 0.9), (12, 0, 4, 2, CAR, 0.8), (14, 0, 4, 2, CAR, 0.7))
    assert filter_detections(dets, DetectionFilterSettings())[1].tolist() == [0, 2]


def test_max_boxes_and_empty_input():
    dets = boxes(*[(5.0 * k, 0, 1, 1, CAR, 0.9 - 0.01 * k) for k in range(5)])
    assert filter_detections(dets, DetectionFilterSettings(max_boxes=3))[1].tolist() == [0, 1, 2]
    kept, index = filter_detections(np.zeros((0, 11), np.float32), DetectionFilterSettings())
    assert kept.shape == (0, 11) and index.shape == (0,)


def test_settings_out_of_range_are_one_line_errors():
    with pytest.raises(ConfigError, match="min_score"):
        from_mapping(DetectionFilterSettings, {"min_score": 1.5}, "publish")


def test_box_records_have_named_fields_and_round_trip():
    dets = boxes((10.25, -2.5, 4.5, 1.9, CAR, 0.9), (3.0, 1.0, 0.8, 0.6, PED, 0.35))  # (no filter here)
    records = boxes_to_records(dets)
    assert records[1] == {"x_m": 3.0, "y_m": 1.0, "z_m": 0.8, "length_m": 0.8, "width_m": 0.6, "height_m": 1.6,
                          "yaw_rad": 0.0, "vx_mps": 0.0, "vy_mps": 0.0, "class": "pedestrian", "score": 0.35}
    np.testing.assert_allclose(boxes_from_records(json.loads(json.dumps(records))), dets, atol=1e-4)
    assert boxes_from_records([]).shape == (0, 11)
    with pytest.raises(ValueError, match="box record 0: missing score"):
        boxes_from_records([{k: v for k, v in records[0].items() if k != "score"}])
    with pytest.raises(ValueError, match="unknown class 'truck'"):
        boxes_from_records([{**records[0], "class": "truck"}])
