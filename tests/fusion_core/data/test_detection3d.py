"""Boxes as vision_msgs/Detection3DArray: the CDR decodes back to the same boxes with the
project's own decoder and with mcap_ros2's, an independent reader given only the definition
text a bag embeds (so other ROS tools read what we write)."""
from __future__ import annotations

import numpy as np
from mcap_ros2._dynamic import generate_dynamic

from fusion_core.boxes import BOX_DIM, VX, VY, make_boxes
from fusion_core.data.detection3d import detection3d_array_cdr
from fusion_core.data.ros_decode import decode_detections
from fusion_core.data.ros_types import message_definition, shared_typestore
from fusion_core.data.topics import DETECTION3D_ARRAY_TYPE


def some_boxes() -> np.ndarray:
    return make_boxes(np.array([[12.5, -3.0, 0.8], [30.0, 4.0, 0.9]]), np.array([[4.5, 1.9, 1.6], [0.8, 0.6, 1.7]]),
                      np.array([0.3, -2.5]), np.array([[5.0, 0.0], [0.0, 1.0]]), np.array([0, 1]),
                      np.array([0.91, 0.47]))


def test_detections_round_trip_through_cdr_with_class_score_pose_and_size():
    boxes = some_boxes()
    cdr = detection3d_array_cdr(boxes, 1_700_000_000_123_456_789, "base_link", ids=["7", "8"])
    msg = shared_typestore().deserialize_cdr(cdr, DETECTION3D_ARRAY_TYPE)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1_700_000_000, 123_456_789,
                                                                                      "base_link")
    assert [d.id for d in msg.detections] == ["7", "8"]
    assert [d.results[0].hypothesis.class_id for d in msg.detections] == ["car", "pedestrian"]
    decoded, unknown = decode_detections(msg)
    assert unknown == []
    expected = boxes.copy()
    expected[:, [VX, VY]] = 0.0  # Detection3D has no velocity
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


def test_an_independent_reader_decodes_it_from_the_embedded_definition():
    boxes = some_boxes()
    cdr = detection3d_array_cdr(boxes, 5, "base_link")
    decoders = generate_dynamic(DETECTION3D_ARRAY_TYPE.replace("/msg/", "/"),
                                message_definition(DETECTION3D_ARRAY_TYPE))
    msg = decoders[DETECTION3D_ARRAY_TYPE.replace("/msg/", "/")](cdr)
    assert len(msg.detections) == 2
    first = msg.detections[0]
    assert first.results[0].hypothesis.class_id == "car" and abs(first.results[0].hypothesis.score - 0.91) < 1e-6
    np.testing.assert_allclose([first.bbox.size.x, first.bbox.size.y, first.bbox.center.position.x], [4.5, 1.9, 12.5],
                               rtol=1e-6)  # (the boxes are float32)


def test_no_boxes_is_an_empty_array():
    cdr = detection3d_array_cdr(np.zeros((0, BOX_DIM), np.float32), 0, "base_link")
    assert shared_typestore().deserialize_cdr(cdr, DETECTION3D_ARRAY_TYPE).detections == []
