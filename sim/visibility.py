"""Geometric visibility of ground-truth boxes: the fraction of probe rays from the LiDAR mount
that reach each box before anything else.

It is computed on the scene geometry alone, before weather and faults, so it says whether an
object *could* be seen, not whether a particular sensor saw it this frame. That matters for
evaluation: a car hidden behind a truck is not a miss, but a car lost in fog is one (radar may
still find it), so visibility must not be taken from post-weather LiDAR returns.
"""
from __future__ import annotations

import numpy as np

from fusion_core.boxes import YAW, H, L, W, X, Y, Z
from sim.raycast import CastScene

# Probe points in box-local units (fractions of l, w, h from the centre): a 5 x 5 footprint
# grid at three heights, reaching near the box's edges (a car half behind a truck still shows)
# but staying inside, so a mesh slightly smaller than its box still gets hit.
_FOOTPRINT = np.array([-0.4, -0.2, 0.0, 0.2, 0.4])
_HEIGHTS = np.array([-0.35, 0.0, 0.35])
PROBE_LOCAL = np.array([(a, b, c) for c in _HEIGHTS for a in _FOOTPRINT for b in _FOOTPRINT])  # (P, 3)
N_PROBES = len(PROBE_LOCAL)


def probe_points(boxes: np.ndarray) -> np.ndarray:
    """(N, P, 3) world probe points of (N, BOX_DIM) world-frame boxes."""
    local = PROBE_LOCAL[None] * boxes[:, None, [L, W, H]]  # (N, P, 3)
    c, s = np.cos(boxes[:, YAW])[:, None], np.sin(boxes[:, YAW])[:, None]
    out = np.empty_like(local)
    out[..., 0] = boxes[:, None, X] + c * local[..., 0] - s * local[..., 1]
    out[..., 1] = boxes[:, None, Y] + s * local[..., 0] + c * local[..., 1]
    out[..., 2] = boxes[:, None, Z] + local[..., 2]
    return out


def visible_fraction(scene: CastScene, origin_m: np.ndarray, boxes: np.ndarray, object_ids: np.ndarray) -> np.ndarray:
    """(N,) float32 in [0, 1]: share of each box's probe rays from ``origin_m`` (3,) whose first
    hit is that box's own object (``object_ids`` (N,), the scene's object id of each box)."""
    if len(boxes) == 0:
        return np.zeros(0, np.float32)
    points = probe_points(boxes).reshape(-1, 3)
    offset = points - origin_m
    dist = np.linalg.norm(offset, axis=1, keepdims=True)
    hits = scene.cast(origin_m, offset / np.maximum(dist, 1e-6))
    own = hits.object_id.reshape(len(boxes), N_PROBES) == np.asarray(object_ids)[:, None]
    return own.mean(axis=1).astype(np.float32)
