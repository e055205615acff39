"""Boxes as ``vision_msgs/msg/Detection3DArray``, the standard ROS 2 message for 3-D detections
(rosbags types: the definitions of ``fusion_core.data.ros_types``, field for field vision_msgs').

One Detection3D per box: ``results`` holds one ObjectHypothesisWithPose (``class_id`` = our
class name, ``score``, the box pose), ``bbox`` the centre pose (yaw as a rotation about z) and
size (length along the heading, width, height) [m], ``id`` the track id when there is one. The
velocity has no field in Detection3D (tracks carry it); the frame's MarkerArray shows it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fusion_core.boxes import BOX_DIM, CLASS_ID, CLASS_NAMES, SCORE, YAW, H, L, W, X, Y, Z
from fusion_core.data.ros_types import shared_typestore
from fusion_core.data.topics import DETECTION3D_ARRAY_TYPE

_ZERO_COVARIANCE = np.zeros(36)


def _class_name(class_id: float) -> str:
    i = round(class_id)
    return CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else "unknown"


def detection3d_array(boxes: np.ndarray, stamp_ns: int, frame_id: str, ids: Sequence[str] | None = None):
    """(N, BOX_DIM) boxes in ``frame_id`` -> a rosbags Detection3DArray stamped ``stamp_ns``;
    ``ids`` (N,) names the objects (track ids), else ids are empty."""
    t = shared_typestore().types
    boxes = np.asarray(boxes, np.float64).reshape(-1, BOX_DIM)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id=frame_id)
    detections = []
    for k, box in enumerate(boxes.tolist()):
        yaw = box[YAW]
        pose = t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=box[X], y=box[Y], z=box[Z]),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
        hypothesis = t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=_class_name(box[CLASS_ID]), score=box[SCORE]),
            pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=_ZERO_COVARIANCE))
        detections.append(t["vision_msgs/msg/Detection3D"](
            header=header, results=[hypothesis],
            bbox=t["vision_msgs/msg/BoundingBox3D"](center=pose, size=t["geometry_msgs/msg/Vector3"](
                x=box[L], y=box[W], z=box[H])),
            id="" if ids is None else str(ids[k])))
    return t[DETECTION3D_ARRAY_TYPE](header=header, detections=detections)


def detection3d_array_cdr(boxes: np.ndarray, stamp_ns: int, frame_id: str, ids: Sequence[str] | None = None) -> bytes:
    """:func:`detection3d_array` serialised as CDR (what a bag stores and DDS carries)."""
    return bytes(shared_typestore().serialize_cdr(detection3d_array(boxes, stamp_ns, frame_id, ids),
                                                  DETECTION3D_ARRAY_TYPE))
