"""Detections as ``visualization_msgs/MarkerArray`` (vision_msgs cannot be installed here) and back.

One array per frame, in RViz's convention: first a DELETEALL marker (so boxes of the previous
frame vanish), then per detection a CUBE (namespace ``"boxes"``) and a TEXT_VIEW_FACING label
(namespace ``"labels"``) with the same id. The cube is the machine-readable part: pose = box
centre and yaw (a rotation about z), scale = (l, w, h) [m], and its ``text`` field (unused by
RViz for cubes) holds ``"<class> <score>"`` with the score to 4 decimals, so a recorder can
rebuild the boxes exactly enough for evaluation (velocity is not carried).
"""
from __future__ import annotations

import math

import numpy as np

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
    empty_boxes,
)
from fusion_core.data.ros_decode import yaw_from_quaternion
from ros_nodes import ros_io

BOXES_NS = "boxes"
LABELS_NS = "labels"
CLASS_COLORS_RGBA: dict[str, tuple[float, float, float, float]] = {
    "car": (0.2, 0.5, 1.0, 0.6), "pedestrian": (1.0, 0.55, 0.1, 0.6), "cyclist": (0.2, 0.85, 0.3, 0.6)}
_GREY = (0.7, 0.7, 0.7, 0.6)
_NS = 1_000_000_000


class MarkerDecodeError(ValueError):
    """A marker array that does not follow the layout above."""


def _marker(header, ns: str, marker_id: int, kind: int, action: int, xyz, yaw: float, scale, rgba, text: str = ""):
    t = ros_io.types()
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
    return t["visualization_msgs/msg/Marker"](
        header=header, ns=ns, id=marker_id, type=kind, action=action, pose=pose,
        scale=t["geometry_msgs/msg/Vector3"](*(float(v) for v in scale)),
        color=t["std_msgs/msg/ColorRGBA"](*rgba), lifetime=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
        frame_locked=False, points=[], colors=[], texture_resource="",
        texture=t["sensor_msgs/msg/CompressedImage"](header=header, format="", data=np.zeros(0, np.uint8)),
        uv_coordinates=[], text=text, mesh_resource="",
        mesh_file=t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False)


def boxes_to_markers(boxes: np.ndarray, stamp_ns: int, frame_id: str = "base_link"):
    """(N, 11) boxes (fusion_core.boxes layout) -> a rosbags MarkerArray (DELETEALL first)."""
    marker_cls = ros_io.types()["visualization_msgs/msg/Marker"]
    header = ros_io.header(stamp_ns, frame_id)
    markers = [_marker(header, "", 0, marker_cls.CUBE, marker_cls.DELETEALL, (0, 0, 0), 0.0, (0, 0, 0), (0, 0, 0, 0))]
    for k, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, BOX_DIM)):
        cid = int(box[CLASS_ID])
        name = CLASS_NAMES[cid] if 0 <= cid < len(CLASS_NAMES) else f"class_{cid}"
        rgba = CLASS_COLORS_RGBA.get(name, _GREY)
        markers.append(_marker(header, BOXES_NS, k, marker_cls.CUBE, marker_cls.ADD, box[[X, Y, Z]], box[YAW],
                               box[[L, W, H]], rgba, text=f"{name} {box[SCORE]:.4f}"))
        markers.append(_marker(header, LABELS_NS, k, marker_cls.TEXT_VIEW_FACING, marker_cls.ADD,
                               (box[X], box[Y], box[Z] + box[H] / 2 + 0.5), 0.0, (0, 0, 0.6), (1, 1, 1, 1),
                               text=f"{name} {box[SCORE]:.2f}"))
    return ros_io.types()["visualization_msgs/msg/MarkerArray"](markers=markers)


def markers_to_boxes(msg) -> tuple[int, np.ndarray]:
    """A MarkerArray written by :func:`boxes_to_markers` -> (stamp [ns], (N, 11) float32 boxes;
    velocity 0). MarkerDecodeError for cubes whose text is not ``"<known class> <score>"``."""
    boxes = []
    stamp_ns = None
    for marker in msg.markers:
        if stamp_ns is None:
            stamp_ns = marker.header.stamp.sec * _NS + marker.header.stamp.nanosec
        if marker.ns != BOXES_NS or marker.action != 0:
            continue
        parts = marker.text.split()
        if len(parts) != 2 or parts[0] not in CLASS_NAMES:
            raise MarkerDecodeError(f"cube {marker.id}: text {marker.text!r} is not '<class> <score>'")
        try:
            score = float(parts[1])
        except ValueError:
            raise MarkerDecodeError(f"cube {marker.id}: score {parts[1]!r} is not a number") from None
        boxes.append(cube_box(marker, CLASS_NAMES.index(parts[0]), score))
    return (0 if stamp_ns is None else stamp_ns), (np.stack(boxes) if boxes else empty_boxes())


def cube_box(marker, class_id: int, score: float = 0.0) -> np.ndarray:
    """(11,) float32 box of a CUBE marker: pose = centre and yaw, scale = (l, w, h); velocity 0."""
    q, p, s = marker.pose.orientation, marker.pose.position, marker.scale
    row = np.zeros(BOX_DIM, np.float32)
    row[[X, Y, Z, L, W, H, YAW]] = (p.x, p.y, p.z, s.x, s.y, s.z, yaw_from_quaternion(q.x, q.y, q.z, q.w))
    row[CLASS_ID], row[SCORE] = class_id, score
    return row
