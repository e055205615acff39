"""Late fusion of box sets from several single-sensor detectors by weighted box fusion (WBF).

This backs the ``late`` gate mode (HydraFusion's late-fusion baseline): every single-sensor
expert produces its own (N, 11) box array (layout: :mod:`fusion_core.boxes`), and
:func:`weighted_box_fusion` merges them into one. WBF (Solovyev et al., "Weighted boxes fusion:
Ensembling boxes from different object detection models", 2021) averages the boxes that agree
instead of keeping one and suppressing the rest as NMS does, and lowers the confidence of boxes
that only some of the sources saw.

Boxes are compared in bird's-eye view (BEV): the rotated rectangle of centre (x, y), length l
along the heading yaw and width w across it, in the ego frame (metres, radians). The exact IoU of
two such rectangles is computed by clipping one convex polygon by the other
(Sutherland-Hodgman) and taking the shoelace area of what remains.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fusion_core.boxes import (
    BOX_DIM,
    CLASS_ID,
    SCORE,
    VX,
    VY,
    YAW,
    H,
    L,
    W,
    X,
    Y,
    Z,
    box_corners_bev,
    empty_boxes,
    wrap_angle,
)

CONF_TYPES: tuple[str, ...] = ("avg", "max")

# Columns fused by a plain weighted mean (yaw is circular and handled separately).
_LINEAR_COLUMNS = np.array([X, Y, Z, L, W, H, VX, VY])


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """BEV corners of the rotated rectangles of (N, 11) boxes, shape (N, 4, 2), metres, float64.

    Corner order is counter-clockwise (for positive l and w) starting at front-left:
    (+l/2, +w/2), (-l/2, +w/2), (-l/2, -w/2), (+l/2, -w/2) in the box frame, rotated by yaw and
    moved to (x, y).
    """
    boxes = _as_box_array(boxes, "boxes")
    return box_corners_bev(boxes)


def rotated_bev_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact IoU of the rotated BEV rectangles of (Na, 11) boxes ``a`` and (Nb, 11) boxes ``b``.

    Returns an (Na, Nb) float64 matrix in [0, 1]. Height (z, h) is ignored. A box whose length or
    width is not positive (or whose x, y, l, w, yaw are not finite) has IoU 0 with everything,
    itself included, so the result never contains NaN.
    """
    a = _as_box_array(a, "a")
    b = _as_box_array(b, "b")
    iou = np.zeros((len(a), len(b)), dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return iou

    valid_a, valid_b = _has_bev_area(a), _has_bev_area(b)
    area_a = a[:, L] * a[:, W]
    area_b = b[:, L] * b[:, W]
    # Two rectangles can only overlap if their circumscribed circles do; this cheap vectorised
    # test skips the (Python-level) polygon clipping for nearly all pairs of a real frame.
    with np.errstate(invalid="ignore"):
        radius_a = 0.5 * np.hypot(a[:, L], a[:, W])
        radius_b = 0.5 * np.hypot(b[:, L], b[:, W])
        centre_distance_m = np.hypot(a[:, None, X] - b[None, :, X], a[:, None, Y] - b[None, :, Y])
        may_overlap = centre_distance_m <= radius_a[:, None] + radius_b[None, :]
    may_overlap &= valid_a[:, None] & valid_b[None, :]

    corners_a = box_corners_bev(a).tolist()
    corners_b = box_corners_bev(b).tolist()
    for i, j in zip(*np.nonzero(may_overlap)):
        intersection = _polygon_area(_clip_convex_polygon(corners_a[i], corners_b[j]))
        # Rounding can push the clipped area a hair above the smaller rectangle (identical boxes).
        intersection = min(intersection, area_a[i], area_b[j])
        union = area_a[i] + area_b[j] - intersection
        if union > 0.0:
            iou[i, j] = intersection / union
    return iou


def weighted_box_fusion(
    box_sets: Sequence[np.ndarray],
    source_weights: Sequence[float] | None = None,
    *,
    iou_threshold: float = 0.1,
    match_distance_m: float = 1.0,
    skip_score: float = 0.0,
    conf_type: str = "avg",
) -> np.ndarray:
    """Fuse the box sets of several sources (one (N_s, 11) array per sensor) into one.

    Args:
        box_sets: one box array per source, each (N_s, 11) in the layout of
            :mod:`fusion_core.boxes`; N_s may be 0. Scores must be finite and non-negative.
        source_weights: one non-negative trust weight per source (default: all 1). A source with
            weight 0 is switched off: its boxes are ignored and it adds nothing to the totals.
        iou_threshold: a box joins a cluster if its rotated BEV IoU with the cluster's current
            fused box is >= this, in (0, 1].
        match_distance_m: ... or if the BEV centre distance to the fused box is <= this, metres
            (>= 0). Small objects (pedestrians, 0.5 m wide) often have IoU 0 with a box whose
            centre is only 0.5 m off, yet they are the same object, and the project's evaluator
            (:mod:`fusion_core.metrics.average_precision`) matches detections by BEV centre
            distance too; IoU alone would leave such pairs as duplicate detections, one of which
            the evaluator counts as a false positive.
        skip_score: boxes with score < this are dropped before fusion.
        conf_type: how the fused score is formed (below).

    Algorithm. Boxes of different classes never fuse. Within a class, boxes are visited in
    descending ``score * source_weight`` (stable: ties keep source order, then row order). Each
    box joins the first existing cluster (clusters are kept in creation order, so the first is
    the one seeded by the most confident box) that (a) matches it by IoU or centre distance as
    above and (b) has no box of the same source yet; otherwise it starts a new cluster. After
    every join the cluster's fused box is recomputed, and later boxes are matched against it.

    Fused box of a cluster, with member weights ``score * source_weight``:
        x, y, z, l, w, h, vx, vy: weighted mean (all members weigh the same if every weight
            is 0, i.e. every member has score 0);
        yaw: weighted circular mean ``atan2(sum w sin(yaw), sum w cos(yaw))`` wrapped to
            [-pi, pi), so 3.1 and -3.1 average to -pi, not 0 (if the headings cancel, i.e. the
            resultant is < 1e-3 of the total weight, as for 0 and pi with equal weights, the most
            confident member's yaw is kept);
        class_id: that of the cluster;
        score, conf_type "avg" (WBF's rescaling):
            ``mean(member scores) * min(W_members, W_all) / W_all``, where W_members is the total
            source weight of the sources in the cluster and W_all that of all sources (empty sets
            included). With unit weights, a box that only one of four sensors saw keeps a quarter
            of its score, and one all four agree on keeps the mean score;
        score, conf_type "max": the largest member score, not rescaled.

    Returns:
        (M, 11) float32 boxes sorted by fused score, descending (stable); ``empty_boxes()`` if no
        box survives ``skip_score`` (or there are no sources).

    Raises:
        ValueError: a set that is not 2-D with 11 columns, or holds NaN/inf or a negative score
            (the message names the set index); weights of the wrong length, negative, non-finite
            or all 0; an unknown conf_type; iou_threshold outside (0, 1]; match_distance_m < 0.
    """
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if not match_distance_m >= 0.0:
        raise ValueError(f"match_distance_m must be >= 0 metres, got {match_distance_m}")

    validated_sets = [_validated_box_set(box_set, index) for index, box_set in enumerate(box_sets)]
    weight_per_source = _validated_source_weights(source_weights, len(validated_sets))
    if not validated_sets:
        return empty_boxes()
    total_source_weight = float(weight_per_source.sum())

    candidate_boxes, candidate_sources = [], []
    for source_index, box_set in enumerate(validated_sets):
        kept = box_set[box_set[:, SCORE] >= skip_score]
        if weight_per_source[source_index] == 0.0 or len(kept) == 0:
            continue
        candidate_boxes.append(kept)
        candidate_sources.append(np.full(len(kept), source_index))
    if not candidate_boxes:
        return empty_boxes()
    boxes = np.concatenate(candidate_boxes)
    source_of_box = np.concatenate(candidate_sources)
    fusion_weight = boxes[:, SCORE] * weight_per_source[source_of_box]

    fused_rows = []
    for class_id in np.unique(boxes[:, CLASS_ID]):
        in_class = np.flatnonzero(boxes[:, CLASS_ID] == class_id)
        visiting_order = in_class[np.argsort(-fusion_weight[in_class], kind="stable")]
        clusters = _cluster_class(
            boxes, source_of_box, fusion_weight, visiting_order, iou_threshold, match_distance_m
        )
        for cluster in clusters:
            member_scores = boxes[cluster.member_rows, SCORE]
            if conf_type == "avg":
                seen_weight = float(weight_per_source[sorted(cluster.sources)].sum())
                score = member_scores.mean() * min(seen_weight, total_source_weight)
                score /= total_source_weight
            else:
                score = member_scores.max()
            fused = cluster.fused_box.copy()
            fused[SCORE] = score
            fused_rows.append(fused)

    fused_boxes = np.stack(fused_rows)
    fused_boxes = fused_boxes[np.argsort(-fused_boxes[:, SCORE], kind="stable")]
    return fused_boxes.astype(np.float32)


@dataclass
class _Cluster:
    """Boxes of one class believed to be the same object, at most one per source."""

    member_rows: list[int]  # rows into the concatenated candidate boxes
    sources: set[int]
    fused_box: np.ndarray  # (11,) float64; score column not yet final


def _cluster_class(
    boxes: np.ndarray,
    source_of_box: np.ndarray,
    fusion_weight: np.ndarray,
    visiting_order: np.ndarray,
    iou_threshold: float,
    match_distance_m: float,
) -> list[_Cluster]:
    """Greedy WBF clustering of one class's boxes, visited in ``visiting_order``."""
    clusters: list[_Cluster] = []
    for row in visiting_order.tolist():
        source = int(source_of_box[row])
        chosen: _Cluster | None = None
        if clusters:
            fused_boxes = np.stack([cluster.fused_box for cluster in clusters])
            iou = rotated_bev_iou(boxes[row : row + 1], fused_boxes)[0]
            distance_m = np.hypot(fused_boxes[:, X] - boxes[row, X], fused_boxes[:, Y] - boxes[row, Y])
            matches = (iou >= iou_threshold) | (distance_m <= match_distance_m)
            for cluster, is_match in zip(clusters, matches):
                # A source contributes at most one box per cluster: two boxes of the same
                # detector on one object are a duplicate (e.g. a missed NMS), not independent
                # evidence, so letting both in would inflate the averaged position towards that
                # detector and the rescaled score as if a second sensor had confirmed it.
                if is_match and source not in cluster.sources:
                    chosen = cluster
                    break
        if chosen is None:
            clusters.append(_Cluster([row], {source}, boxes[row].copy()))
        else:
            chosen.member_rows.append(row)
            chosen.sources.add(source)
            chosen.fused_box = _fuse_members(boxes[chosen.member_rows], fusion_weight[chosen.member_rows])
    return clusters


def _fuse_members(members: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fused (11,) box of (K, 11) member boxes with weights (K,); score column left as member 0's.

    Members are in visiting order, so member 0 is the most confident one.
    """
    if weights.sum() <= 0.0:
        weights = np.ones(len(members))
    fused = members[0].copy()
    fused[_LINEAR_COLUMNS] = weights @ members[:, _LINEAR_COLUMNS] / weights.sum()
    sin_sum = float(weights @ np.sin(members[:, YAW]))
    cos_sum = float(weights @ np.cos(members[:, YAW]))
    # Opposite headings of equal weight (a detector that flipped the heading) cancel, and the
    # angle of a near-zero resultant is rounding noise (float32 yaws): keep the most confident
    # member's heading instead.
    if np.hypot(sin_sum, cos_sum) > 1e-3 * weights.sum():
        fused[YAW] = wrap_angle(np.arctan2(sin_sum, cos_sum))
    return fused


def _validated_box_set(box_set: np.ndarray, index: int) -> np.ndarray:
    """Source ``index``'s boxes as an (N, 11) float64 array, or ValueError naming the set."""
    array = np.asarray(box_set, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != BOX_DIM:
        raise ValueError(
            f"box set {index} must have shape (N, {BOX_DIM}), got {np.shape(box_set)}"
        )
    if not np.isfinite(array).all():
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(f"box set {index} holds NaN or inf values (rows {bad_rows.tolist()})")
    if (array[:, SCORE] < 0.0).any():
        raise ValueError(f"box set {index} holds negative scores")
    return array


def _validated_source_weights(source_weights: Sequence[float] | None, n_sources: int) -> np.ndarray:
    """(S,) float64 source weights: all 1 when None; ValueError when unusable."""
    if source_weights is None:
        return np.ones(n_sources)
    weights = np.asarray(source_weights, dtype=np.float64)
    if weights.shape != (n_sources,):
        raise ValueError(
            f"source_weights must have one weight per box set ({n_sources}), got shape {weights.shape}"
        )
    if not np.isfinite(weights).all() or (weights < 0.0).any():
        raise ValueError(f"source_weights must be finite and >= 0, got {weights.tolist()}")
    if n_sources > 0 and weights.sum() <= 0.0:
        raise ValueError("at least one source weight must be positive")
    return weights


def _as_box_array(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != BOX_DIM:
        raise ValueError(f"{name} must have shape (N, {BOX_DIM}), got {array.shape}")
    return array


def _has_bev_area(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: the BEV rectangle is finite and has positive length and width."""
    finite = np.isfinite(boxes[:, [X, Y, L, W, YAW]]).all(axis=1)
    with np.errstate(invalid="ignore"):
        return finite & (boxes[:, L] > 0.0) & (boxes[:, W] > 0.0)


Point = tuple[float, float]


def _clip_convex_polygon(subject: list[list[float]], clip: list[list[float]]) -> list[Point]:
    """Sutherland-Hodgman: the part of convex polygon ``subject`` inside convex ``clip``.

    Both are vertex lists in counter-clockwise order; "inside" an edge p -> q is its left side
    (cross product >= 0). Plain Python floats: the polygons have at most 8 vertices, where numpy's
    per-call overhead would dominate.
    """
    output: list[Point] = [(float(x), float(y)) for x, y in subject]
    for k in range(len(clip)):
        if not output:
            break
        px, py = clip[k]
        qx, qy = clip[(k + 1) % len(clip)]
        ex, ey = qx - px, qy - py
        polygon, output = output, []
        previous = polygon[-1]
        previous_side = ex * (previous[1] - py) - ey * (previous[0] - px)
        for current in polygon:
            current_side = ex * (current[1] - py) - ey * (current[0] - px)
            if current_side >= 0.0:
                if previous_side < 0.0:
                    output.append(_crossing(previous, current, previous_side, current_side))
                output.append(current)
            elif previous_side >= 0.0:
                output.append(_crossing(previous, current, previous_side, current_side))
            previous, previous_side = current, current_side
    return output


def _crossing(start: Point, end: Point, start_side: float, end_side: float) -> Point:
    """Where segment start -> end crosses the clip line; the sides have opposite signs."""
    t = start_side / (start_side - end_side)
    return (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))


def _polygon_area(polygon: list[Point]) -> float:
    """Shoelace area of a simple polygon (absolute value, so either orientation), m^2."""
    if len(polygon) < 3:
        return 0.0
    twice_area = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]):
        twice_area += x0 * y1 - x1 * y0
    return abs(twice_area) / 2.0
