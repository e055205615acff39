"""Decoding of deserialised ROS messages into numpy arrays (no ROS installation needed).

Works on the message objects ``rosbags`` deserialises, ROS 2 and ROS 1 alike (fields are
read by name; ROS 1 spells the camera matrix ``K``, ROS 2 ``k``). Every decoder validates the
layout it is given and raises :class:`DecodeError` with a short, stable ``what`` code
(``encoding``, ``truncated``, ``point_step_mismatch``, ...) instead of returning garbage, so the
caller can mark one sensor absent for one frame and keep going.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fusion_core.boxes import BOX_DIM, CLASS_NAMES, wrap_angle
from fusion_core.data.intrinsics import PinholeIntrinsics


class DecodeError(ValueError):
    """A message that cannot be decoded; ``what`` is a short code for counting, ``detail`` for humans."""

    def __init__(self, what: str, detail: str = ""):
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what = what
        self.detail = detail


def stamp_ns(header) -> int:
    """Header stamp as integer nanoseconds (exact: no float round trip)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _bytes(data) -> np.ndarray:
    """A message's ``uint8[]`` payload as a flat uint8 array (rosbags gives an ndarray already)."""
    return np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else \
        np.asarray(data, np.uint8).reshape(-1)


# --------------------------------------------------------------------------- PointCloud2
# sensor_msgs/PointField datatype -> numpy type code (byte order added per cloud)
_POINT_FIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


# Larger clouds are refused (``too_many_points``) by every reader of a recording or a live topic,
# the same rule in each so that `evaluate` and `replay` of one bag make the same frames. A scan
# of today's densest spinning LiDARs is ~260 k points (128 beams x 2048); a cloud of several
# scans merged (a misconfigured driver's accumulated sweep, 2 M points) would only stall the
# frame (the fusion node's ``max_cloud_points`` can lower the limit for a small computer).
MAX_CLOUD_POINTS = 500_000


def decode_cloud(msg, columns: tuple[str, ...], max_points: int = MAX_CLOUD_POINTS) -> tuple[np.ndarray, int]:
    """``sensor_msgs/PointCloud2`` -> ((N, len(columns)) float32, number of dropped points).

    ``columns`` are field names, the first three the coordinates (normally x, y, z); an empty
    name yields a NaN column (a field the sensor does not provide; the model reads it as 0).
    Points with a non-finite value in any field read (organised clouds mark "no return" with a
    NaN coordinate; an Inf intensity or Doppler is a broken measurement) are dropped and counted:
    one such value would otherwise poison every BEV cell its stem's max-pool reaches.
    Layout checks: every named field exists with a known scalar type inside ``point_step``;
    ``row_step == width * point_step``; ``data`` holds exactly ``row_step * height`` bytes;
    at most ``max_points`` points (``too_many_points``).
    """
    step, width, height = int(msg.point_step), int(msg.width), int(msg.height)
    if width * height > max_points:
        raise DecodeError("too_many_points", f"{width * height} points > max_cloud_points {max_points}")
    if step <= 0:
        raise DecodeError("point_step_mismatch", f"point_step {step}")
    byteorder = ">" if msg.is_bigendian else "<"
    fields = {f.name: f for f in msg.fields}
    names, formats, offsets = [], [], []
    for name in columns:
        if not name or name in names:
            continue
        f = fields.get(name)
        if f is None:
            raise DecodeError("missing_field", f"no field {name!r} (fields: {', '.join(fields) or 'none'})")
        code = _POINT_FIELD_TYPES.get(int(f.datatype))
        if code is None or int(f.count) > 1:
            raise DecodeError("field_type", f"field {name!r}: datatype {f.datatype} count {f.count}")
        if int(f.offset) < 0 or int(f.offset) + np.dtype(code).itemsize > step:
            raise DecodeError("point_step_mismatch", f"field {name!r} at offset {f.offset} exceeds point_step {step}")
        names.append(name)
        formats.append(byteorder + code)
        offsets.append(int(f.offset))
    if int(msg.row_step) != width * step:
        raise DecodeError("point_step_mismatch",
                          f"row_step {msg.row_step} != width {width} x point_step {step}")
    data = _bytes(msg.data)
    expected = width * step * height
    if data.size < expected:
        raise DecodeError("truncated", f"{data.size} bytes of data, layout needs {expected}")
    if data.size > expected:
        raise DecodeError("size_mismatch", f"{data.size} bytes of data, layout gives {expected}")
    n = width * height
    records = np.frombuffer(data, np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                            "itemsize": step}), count=n)
    out = np.empty((n, len(columns)), np.float32)
    for k, name in enumerate(columns):
        out[:, k] = records[name] if name else np.nan
    read = [k for k, name in enumerate(columns) if name]
    finite = np.isfinite(out[:, read]).all(axis=1)
    n_bad = int(n - np.count_nonzero(finite))
    return (out[finite] if n_bad else out), n_bad


# --------------------------------------------------------------------------- Image
# encoding -> (numpy type code, channels)
_RGB_ENCODINGS = {"rgb8": ("u1", 3), "bgr8": ("u1", 3)}
_DEPTH_ENCODINGS = {"32FC1": ("f4", 1), "16UC1": ("u2", 1)}


def _image_pixels(msg, code: str, channels: int) -> np.ndarray:
    """(H, W, C) view of an image's pixels, honouring ``step`` (row padding) and endianness."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(code).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    if h <= 0 or w <= 0:
        raise DecodeError("size_mismatch", f"image of {w}x{h} pixels")
    if step < row_bytes:
        raise DecodeError("size_mismatch", f"step {step} < {row_bytes} bytes per row of {w} pixels")
    if step >= 2 * row_bytes:
        # Row padding aligns rows; a row twice as long as its pixels is another pixel format
        # (a 32FC1 depth image labelled 16UC1 would otherwise decode as garbage).
        raise DecodeError("encoding", f"step {step} is {step / row_bytes:g}x the {row_bytes} bytes of a row of "
                                      f"{w} {msg.encoding} pixels: wrong encoding?")
    data = _bytes(msg.data)
    if data.size < step * h:
        raise DecodeError("truncated", f"{data.size} bytes of data, {h} rows of {step} need {step * h}")
    if data.size > step * h:
        raise DecodeError("size_mismatch", f"{data.size} bytes of data, {h} rows of {step} give {step * h}")
    rows = data.reshape(h, step)[:, :row_bytes]
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)


def decode_rgb(msg) -> np.ndarray:
    """``sensor_msgs/Image`` rgb8 or bgr8 -> (H, W, 3) uint8 RGB (bgr8 reordered)."""
    enc = msg.encoding
    if enc not in _RGB_ENCODINGS:
        raise DecodeError("encoding", f"{enc!r} is not an RGB encoding ({', '.join(_RGB_ENCODINGS)})")
    px = _image_pixels(msg, *_RGB_ENCODINGS[enc])
    # always a copy: the pixels may be a view into the (read-only) serialised message
    return np.array(px[..., ::-1] if enc == "bgr8" else px, dtype=np.uint8, copy=True)


def decode_depth(msg) -> np.ndarray:
    """``sensor_msgs/Image`` 32FC1 [m] or 16UC1 [mm] -> (H, W) float32 metres, NaN = no
    measurement (16UC1 encodes "none" as 0, REP 118)."""
    enc = msg.encoding
    if enc not in _DEPTH_ENCODINGS:
        raise DecodeError("encoding", f"{enc!r} is not a depth encoding ({', '.join(_DEPTH_ENCODINGS)})")
    px = _image_pixels(msg, *_DEPTH_ENCODINGS[enc])[..., 0]
    if enc == "16UC1":
        depth = px.astype(np.float32) * np.float32(1e-3)
        depth[px == 0] = np.nan
        return depth
    return px.astype(np.float32)  # native byte order, own copy


# --------------------------------------------------------------------------- CameraInfo
def decode_camera_info(msg) -> PinholeIntrinsics:
    """Pinhole intrinsics from ``sensor_msgs/CameraInfo`` K (row-major 3x3) and the image size."""
    k = getattr(msg, "k", None)
    if k is None:
        k = getattr(msg, "K", None)  # ROS 1 spelling
    k = np.asarray(k, np.float64).reshape(-1) if k is not None else np.zeros(0)
    if k.size != 9 or not np.isfinite(k).all() or k[0] <= 0 or k[4] <= 0:
        raise DecodeError("camera_info", f"unusable K {k.tolist()}")
    return PinholeIntrinsics(int(msg.width), int(msg.height), float(k[0]), float(k[4]), float(k[2]), float(k[5]))


# --------------------------------------------------------------------------- Imu
def decode_imu(msg) -> np.ndarray:
    """``sensor_msgs/Imu`` -> (6,) float64 linear acceleration [m/s^2] and angular velocity [rad/s]."""
    a, g = msg.linear_acceleration, msg.angular_velocity
    sample = np.array([a.x, a.y, a.z, g.x, g.y, g.z], np.float64)
    if not np.isfinite(sample).all():
        raise DecodeError("nan_sample", f"non-finite IMU sample {sample.tolist()}")
    return sample


# --------------------------------------------------------------------------- Detection3DArray
def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Heading [rad] about +z of a quaternion (the z-y-x Euler yaw)."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _class_name(detection) -> str | None:
    if not detection.results:
        return None
    r = detection.results[0]
    hyp = getattr(r, "hypothesis", None)  # vision_msgs >= 3 (ROS 2); older versions carry id directly
    return str(hyp.class_id if hyp is not None else r.id)


def _score(detection) -> float:
    r = detection.results[0]
    hyp = getattr(r, "hypothesis", None)
    return float(hyp.score if hyp is not None else r.score)


def decode_detections(msg, class_names: tuple[str, ...] = CLASS_NAMES) -> tuple[np.ndarray, list[str]]:
    """``vision_msgs/Detection3DArray`` -> ((B, BOX_DIM) float32 boxes in the message's frame,
    class names that were not recognised; their boxes are left out).

    Class from ``results[0].hypothesis.class_id`` (a name of ``class_names``), centre and yaw
    from ``bbox.center``, (l, w, h) from ``bbox.size``, score from the hypothesis. The message
    has no velocity field, so vx = vy = 0: consumers that need velocity must not use these.
    """
    rows, unknown = [], []
    for det in msg.detections:
        name = _class_name(det)
        if name not in class_names:
            unknown.append(str(name))
            continue
        c = det.bbox.center
        q = c.orientation
        s = det.bbox.size
        row = np.zeros(BOX_DIM, np.float64)
        row[:7] = (c.position.x, c.position.y, c.position.z, s.x, s.y, s.z,
                   wrap_angle(yaw_from_quaternion(q.x, q.y, q.z, q.w)))
        row[9] = class_names.index(name)
        row[10] = _score(det)
        rows.append(row)
    boxes = np.array(rows, np.float32).reshape(-1, BOX_DIM)
    return boxes, unknown


# --------------------------------------------------------------------------- labels
@dataclass
class Labels:
    """One ``/sim/labels`` message (docs/bag_format.md): condition and per-sensor faults."""

    condition: str | None = None
    severity: float | None = None
    faults: dict[str, str] = field(default_factory=dict)   # sensor -> active fault kind
    dropped: dict[str, int] = field(default_factory=dict)  # sensor -> captures dropped in the frame


def decode_labels(msg, condition_name: str = "condition", sensor_prefix: str = "sensor/") -> Labels:
    """``diagnostic_msgs/DiagnosticArray`` in the /sim/labels layout -> :class:`Labels`.
    Entries it does not know are ignored, so other diagnostics on the topic do no harm."""
    out = Labels()
    for status in msg.status:
        values = {kv.key: kv.value for kv in status.values}
        if status.name == condition_name:
            out.condition = status.message
            try:
                out.severity = float(values["severity"])
            except (KeyError, ValueError):
                pass
        elif status.name.startswith(sensor_prefix):
            sensor = status.name[len(sensor_prefix):]
            fault = values.get("fault", "none")
            if fault and fault != "none":
                out.faults[sensor] = fault
            try:
                out.dropped[sensor] = int(values.get("dropped", "0"))
            except ValueError:
                out.dropped[sensor] = 0
    return out
