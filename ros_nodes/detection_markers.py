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
import struct
from dataclasses import dataclass

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
# visualization_msgs/Marker constants
_CUBE, _TEXT_VIEW_FACING = 1, 9
_ADD, _DELETEALL = 0, 3


class MarkerDecodeError(ValueError):
    """A marker array that does not follow the layout above."""


@dataclass(frozen=True)
class _MarkerContent:
    """What varies between the markers of an array (everything else is empty or zero)."""

    ns: str
    marker_id: int
    kind: int
    action: int
    xyz: tuple[float, float, float]
    yaw: float
    scale: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    text: str = ""

    def quaternion(self) -> tuple[float, float, float, float]:
        return 0.0, 0.0, math.sin(self.yaw / 2), math.cos(self.yaw / 2)


def _marker_contents(boxes: np.ndarray) -> list[_MarkerContent]:
    """The array's markers in order: DELETEALL, then per box a cube and a label."""
    out = [_MarkerContent("", 0, _CUBE, _DELETEALL, (0.0, 0.0, 0.0), 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))]
    for k, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, BOX_DIM).tolist()):
        cid = int(box[CLASS_ID])
        name = CLASS_NAMES[cid] if 0 <= cid < len(CLASS_NAMES) else f"class_{cid}"
        out.append(_MarkerContent(BOXES_NS, k, _CUBE, _ADD, (box[X], box[Y], box[Z]), box[YAW],
                                  (box[L], box[W], box[H]), CLASS_COLORS_RGBA.get(name, _GREY),
                                  f"{name} {box[SCORE]:.4f}"))
        out.append(_MarkerContent(LABELS_NS, k, _TEXT_VIEW_FACING, _ADD, (box[X], box[Y], box[Z] + box[H] / 2 + 0.5),
                                  0.0, (0.0, 0.0, 0.6), (1.0, 1.0, 1.0, 1.0), f"{name} {box[SCORE]:.2f}"))
    return out


def boxes_to_markers(boxes: np.ndarray, stamp_ns: int, frame_id: str = "base_link"):
    """(N, 11) boxes (fusion_core.boxes layout) -> a rosbags MarkerArray (DELETEALL first)."""
    t = ros_io.types()
    header = ros_io.header(stamp_ns, frame_id)
    markers = []
    for m in _marker_contents(boxes):
        qx, qy, qz, qw = m.quaternion()
        pose = t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](*m.xyz),
                                           orientation=t["geometry_msgs/msg/Quaternion"](qx, qy, qz, qw))
        markers.append(t["visualization_msgs/msg/Marker"](
            header=header, ns=m.ns, id=m.marker_id, type=m.kind, action=m.action, pose=pose,
            scale=t["geometry_msgs/msg/Vector3"](*m.scale), color=t["std_msgs/msg/ColorRGBA"](*m.rgba),
            lifetime=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0), frame_locked=False, points=[],
            colors=[], texture_resource="",
            texture=t["sensor_msgs/msg/CompressedImage"](header=header, format="", data=np.zeros(0, np.uint8)),
            uv_coordinates=[], text=m.text, mesh_resource="",
            mesh_file=t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
            mesh_use_embedded_materials=False))
    return t["visualization_msgs/msg/MarkerArray"](markers=markers)


def boxes_to_markers_cdr(boxes: np.ndarray, stamp_ns: int, frame_id: str = "base_link") -> bytes:
    """The CDR bytes of ``boxes_to_markers(boxes, stamp_ns, frame_id)``, written directly.

    fusion_node publishes every frame's array: building ~120 rosbags Marker objects and
    serialising them cost 7-13 ms of its worker per frame (60 boxes), this about 1 ms. The bytes
    are identical (tests/ros_nodes/test_detection_markers.py compares them with rosbags')."""
    sec, nanosec = divmod(int(stamp_ns), _NS)
    frame = frame_id.encode()
    # Runs of fields that are the same in every marker. Each starts 4-aligned and is a whole
    # number of 4-byte words, so its bytes do not depend on where in the message it lands.
    header = _words(struct.pack("<iI", sec, nanosec) + _cdr_string(frame))
    # lifetime, frame_locked, points, colors, texture_resource, texture (header, format, data), uv_coordinates
    middle = _words(bytes(8) + b"\x00") + bytes(8) + _words(_cdr_string(b"")) + header + _words(_cdr_string(b"")) \
        + bytes(8)
    # mesh_resource, mesh_file (filename, data), then mesh_use_embedded_materials (1 byte, unpadded)
    tail = _words(_cdr_string(b"")) + _words(_cdr_string(b"")) + bytes(4) + b"\x00"
    contents = _marker_contents(boxes)
    buf = bytearray(b"\x00\x01\x00\x00")  # encapsulation: CDR little endian; alignment counts after it
    buf += struct.pack("<I", len(contents))
    for m in contents:
        buf += bytes(-(len(buf) - 4) % 4)
        buf += header
        buf += _words(_cdr_string(m.ns.encode()))
        buf += struct.pack("<iii", m.marker_id, m.kind, m.action)
        buf += bytes(-(len(buf) - 4) % 8)  # pose's float64s
        buf += struct.pack("<10d4f", *m.xyz, *m.quaternion(), *m.scale, *m.rgba)  # pose, scale, color
        buf += middle
        buf += _cdr_string(m.text.encode())
        buf += bytes(-(len(buf) - 4) % 4)
        buf += tail
    return bytes(buf)


def _cdr_string(utf8: bytes) -> bytes:
    """A CDR string: uint32 length with the terminating NUL, the bytes, the NUL (unpadded)."""
    return struct.pack("<I", len(utf8) + 1) + utf8 + b"\x00"


def _words(chunk: bytes) -> bytes:
    """``chunk`` zero-padded to whole 4-byte words."""
    return chunk + bytes(-len(chunk) % 4)


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
