"""The one box array layout used everywhere (simulator ground truth, model output, evaluator,
ROS conversion, bags and shards).

A set of boxes is a float32 array of shape (N, BOX_DIM) in the ego frame (x forward, y left,
z up, metres; yaw counter-clockwise from +x, radians):

    column  name      unit
    0       x         m     box centre
    1       y         m
    2       z         m     centre of the box (not the bottom face)
    3       l         m     length along the box's heading
    4       w         m     width
    5       h         m     height
    6       yaw       rad   heading, wrapped to [-pi, pi)
    7       vx        m/s   velocity over ground, expressed in the ego frame
    8       vy        m/s
    9       class_id  -     index into CLASS_NAMES (stored as float)
    10      score     -     1.0 for ground truth
"""
from __future__ import annotations

import numpy as np

BOX_FIELDS: tuple[str, ...] = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy", "class_id", "score")
BOX_DIM = len(BOX_FIELDS)
X, Y, Z, L, W, H, YAW, VX, VY, CLASS_ID, SCORE = range(BOX_DIM)

CLASS_NAMES: tuple[str, ...] = ("car", "pedestrian", "cyclist")


def empty_boxes() -> np.ndarray:
    """An empty (0, BOX_DIM) float32 box array."""
    return np.zeros((0, BOX_DIM), dtype=np.float32)


def wrap_angle(angle_rad: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(angle_rad) + np.pi) % (2.0 * np.pi) - np.pi


def make_boxes(
    centers_m: np.ndarray,
    sizes_m: np.ndarray,
    yaws_rad: np.ndarray,
    velocities_mps: np.ndarray,
    class_ids: np.ndarray,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Assemble an (N, BOX_DIM) array from its parts: centres (N, 3), sizes (N, 3), yaws (N,),
    velocities (N, 2), class ids (N,), optional scores (N,) (default 1)."""
    n = len(centers_m)
    boxes = np.empty((n, BOX_DIM), dtype=np.float32)
    boxes[:, X : Z + 1] = centers_m
    boxes[:, L : H + 1] = sizes_m
    boxes[:, YAW] = wrap_angle(yaws_rad)
    boxes[:, VX : VY + 1] = velocities_mps
    boxes[:, CLASS_ID] = class_ids
    boxes[:, SCORE] = 1.0 if scores is None else scores
    return boxes


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """Bird's-eye corners of each box, shape (N, 4, 2), counter-clockwise from front-left."""
    c, s = np.cos(boxes[:, YAW]), np.sin(boxes[:, YAW])
    hl, hw = boxes[:, L] / 2.0, boxes[:, W] / 2.0
    local = np.stack(
        [np.stack([hl, hw], -1), np.stack([-hl, hw], -1), np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1)],
        axis=1,
    )  # (N, 4, 2)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], axis=1)  # (N, 2, 2)
    return np.einsum("nij,nkj->nki", rot, local) + boxes[:, None, X : Y + 1]


def points_in_boxes(points_xyz: np.ndarray, boxes: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
    """Boolean (P, N): whether each point lies inside each box (grown by margin_m on every side)."""
    if len(boxes) == 0 or len(points_xyz) == 0:
        return np.zeros((len(points_xyz), len(boxes)), dtype=bool)
    d = points_xyz[:, None, :3] - boxes[None, :, X : Z + 1]  # (P, N, 3)
    c, s = np.cos(boxes[:, YAW]), np.sin(boxes[:, YAW])
    local_x = d[..., 0] * c + d[..., 1] * s
    local_y = -d[..., 0] * s + d[..., 1] * c
    return (
        (np.abs(local_x) <= boxes[:, L] / 2 + margin_m)
        & (np.abs(local_y) <= boxes[:, W] / 2 + margin_m)
        & (np.abs(d[..., 2]) <= boxes[:, H] / 2 + margin_m)
    )


# Named fields of a box in written records (frames.jsonl, ground_truth.jsonl), units in the names.
RECORD_FIELDS: tuple[str, ...] = ("x_m", "y_m", "z_m", "length_m", "width_m", "height_m", "yaw_rad", "vx_mps",
                                  "vy_mps", "class", "score")


def boxes_to_records(boxes: np.ndarray, decimals: int = 4) -> list[dict]:
    """(N, BOX_DIM) boxes as N dicts with named fields (``RECORD_FIELDS``; ``class`` by name), for
    files people and other tools read."""
    out = []
    for row in np.asarray(boxes, np.float64).reshape(-1, BOX_DIM):
        record = {name: round(float(v), decimals) for name, v in zip(RECORD_FIELDS, row)}
        record["class"] = CLASS_NAMES[int(row[CLASS_ID])]
        out.append(record)
    return out


def boxes_from_records(records: list[dict]) -> np.ndarray:
    """The inverse of :func:`boxes_to_records`; ValueError naming a missing field or unknown class."""
    boxes = np.zeros((len(records), BOX_DIM), np.float32)
    for i, record in enumerate(records):
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"box record {i}: missing {', '.join(missing)}")
        if record["class"] not in CLASS_NAMES:
            raise ValueError(f"box record {i}: unknown class {record['class']!r} (known: {', '.join(CLASS_NAMES)})")
        boxes[i] = [CLASS_NAMES.index(record["class"]) if f == "class" else record[f] for f in RECORD_FIELDS]
    return boxes
