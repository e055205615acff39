"""Detections as MarkerArray: the layout, the round trip back to boxes, and the direct CDR
writer fusion_node publishes with, byte for byte against rosbags' serialiser."""
from __future__ import annotations

import numpy as np
import pytest

from fusion_core.boxes import (
    BOX_DIM,
    CLASS_ID,
    CLASS_NAMES,
    SCORE,
    YAW,
    H,
    L,
    W,
    X,
    Y,
    Z,
)
from ros_nodes import ros_io
from ros_nodes.detection_markers import (
    BOXES_NS,
    LABELS_NS,
    MarkerDecodeError,
    boxes_to_markers,
    boxes_to_markers_cdr,
    markers_to_boxes,
)

MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"


def random_boxes(n: int, seed: int = 0, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    boxes = np.zeros((n, BOX_DIM), np.float32)
    boxes[:, [X, Y]] = rng.uniform(-40, 40, (n, 2))
    boxes[:, Z] = rng.uniform(0, 2, n)
    boxes[:, [L, W, H]] = rng.uniform(0.4, 5, (n, 3))
    boxes[:, YAW] = rng.uniform(-np.pi, np.pi, n)
    boxes[:, CLASS_ID] = rng.integers(0, n_classes, n)
    boxes[:, SCORE] = rng.uniform(0.3, 1.0, n)
    return boxes


def test_layout_is_deleteall_then_a_cube_and_a_label_per_box():
    boxes = random_boxes(4)
    msg = boxes_to_markers(boxes, 1_700_000_000_123_456_789, "base_link")
    assert len(msg.markers) == 1 + 2 * len(boxes)
    assert msg.markers[0].action == 3  # DELETEALL
    cubes, labels = msg.markers[1::2], msg.markers[2::2]
    assert [m.ns for m in cubes] == [BOXES_NS] * 4 and [m.ns for m in labels] == [LABELS_NS] * 4
    assert [m.id for m in cubes] == [m.id for m in labels] == [0, 1, 2, 3]
    assert all(m.header.stamp.sec == 1_700_000_000 and m.header.stamp.nanosec == 123_456_789 for m in msg.markers)


def test_round_trip_through_cdr_recovers_the_boxes():
    boxes = random_boxes(25, seed=1)
    raw = boxes_to_markers_cdr(boxes, 5_000_000_001, "base_link")
    stamp, back = markers_to_boxes(ros_io.deserialize(raw, MARKER_ARRAY))
    assert stamp == 5_000_000_001
    cols = [X, Y, Z, L, W, H, CLASS_ID]
    np.testing.assert_allclose(back[:, cols], boxes[:, cols], atol=1e-5)
    np.testing.assert_allclose(back[:, SCORE], boxes[:, SCORE], atol=5e-5)  # 4 decimals in the text
    yaw_gap = np.angle(np.exp(1j * (back[:, YAW] - boxes[:, YAW])))
    np.testing.assert_allclose(yaw_gap, 0.0, atol=1e-5)


@pytest.mark.parametrize(("n", "frame_id", "stamp_ns"), [
    (0, "base_link", 0),
    (1, "base_link", 1),
    (60, "base_link", 1_795_317_523_631_671_955),
    (7, "a", 999_999_999),             # a 2-byte string shifts every later alignment
    (9, "véhicule/base", 12_000_000_000),  # non-ASCII: the length is in UTF-8 bytes
])
def test_direct_cdr_is_byte_identical_to_rosbags(n, frame_id, stamp_ns):
    boxes = random_boxes(n, seed=n, n_classes=len(CLASS_NAMES) + 2)  # unknown classes: class_<id>, grey
    want = ros_io.serialize(boxes_to_markers(boxes, stamp_ns, frame_id), MARKER_ARRAY)
    assert boxes_to_markers_cdr(boxes, stamp_ns, frame_id) == want


def test_a_cube_with_a_foreign_text_is_a_decode_error():
    msg = boxes_to_markers(random_boxes(1), 0)
    msg.markers[1].text = "tractor 0.9"
    with pytest.raises(MarkerDecodeError, match="tractor"):
        markers_to_boxes(msg)
