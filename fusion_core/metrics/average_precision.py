"""Bird's-eye-view centre-distance average precision (nuScenes-style matching).

Definition implemented here, per class ``c`` and match threshold ``d`` (metres):

1. Matching (per frame). The detections of class ``c`` in a frame are visited in descending
   score (stable sort: equal scores keep their input row order). Each one takes the nearest
   ground-truth box of class ``c`` in the *same frame* that no earlier detection took, by 2-D
   centre distance ``hypot(dx, dy)`` (equal distances: the earlier ground-truth row). If that
   distance is ``<= d`` the detection is a true positive and the box is taken; otherwise it is a
   false positive (there is no fallback to a farther box). A second detection of an already taken
   box therefore becomes a false positive. Ground truth is never matched across frames or
   classes. Because matching never crosses frames, doing it frame by frame is identical to
   doing it over one global score order.
2. Ranking (over all frames of a group). All detections of class ``c`` are sorted by descending
   score (stable: ties keep the order in which frames were added, then row order). With
   ``TP_k``, ``FP_k`` the cumulative counts after the k-th detection and ``G`` the number of
   ground-truth boxes of class ``c``:
   ``precision_k = TP_k / (TP_k + FP_k)`` and ``recall_k = TP_k / G``.
3. Area. The precision envelope ``p*_k = max_{j >= k} precision_j`` (made monotonically
   non-increasing from the right) is summed over recall steps:
   ``AP = sum_k (recall_k - recall_{k-1}) * p*_k`` with ``recall_0 = 0`` (all-point
   interpolation, as in PASCAL VOC 2010+). Only true positives raise recall, so this equals
   ``(1/G) * sum over true positives k of p*_k``. Recall never reached contributes nothing.
   nuScenes additionally samples precision at 101 recall levels and clips the curve at 10%
   recall and 10% precision (``min_recall = min_precision = 0.1``) before normalising; we do
   *not* clip, so our values are not numerically comparable with published nuScenes mAP.

Undefined and empty cases: AP is ``None`` for a class with no ground truth in the evaluated
frames (any detections of it would all be false positives, but there is nothing to recall);
such classes are left out of every mean. Ground truth present but no detections gives AP 0.0.
``ap_per_class`` is the mean over thresholds; ``mean_ap`` (mAP) is the mean over all defined
(class, threshold) pairs, ``None`` when none is defined.

Ignored ground truth (``add_frame(..., ignore=mask)``, e.g. boxes hidden behind other objects):
such boxes take part in matching like any other, but are not counted in ``G``, and a detection
that takes one is dropped at that threshold, neither true nor false positive (KITTI's
"don't care"). A detection of a hidden object is thus neither rewarded nor punished.

Groups: every frame belongs to ``"all"`` plus the tags it was added with (e.g.
``"condition:fog"``, ``"fault:lidar:dropout"``); every group is evaluated on its own frames only.

Only the columns x, y, class_id and score of the box layout (:mod:`fusion_core.boxes`) are
read; they must be finite, and class ids must be integers indexing ``class_names``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fusion_core.boxes import BOX_DIM, CLASS_ID, CLASS_NAMES, SCORE, X, Y

DEFAULT_THRESHOLDS_M: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
ALL_GROUP = "all"


@dataclass(frozen=True)
class ClassThresholdAP:
    """AP of one class at one match threshold, with the curve it came from.

    The three arrays have shape (n_det,) and follow the detections in ranking order
    (descending score): after the k-th detection, precision[k] and recall[k] (both in [0, 1]).
    They are empty when n_det == 0 or n_gt == 0 (recall is undefined without ground truth).
    """

    class_name: str
    threshold_m: float  # match radius on the 2-D centre distance, metres
    ap: float | None  # None when n_gt == 0
    n_gt: int
    n_det: int  # detections counted at this threshold (those that took an ignored box are dropped)
    precision: np.ndarray  # (n_det,) float64
    recall: np.ndarray  # (n_det,) float64
    scores: np.ndarray  # (n_det,) float64, descending: the score at which each point is reached

    def precision_envelope(self) -> np.ndarray:
        """(n_det,) precision made non-increasing from the right (the curve AP integrates)."""
        return np.maximum.accumulate(self.precision[::-1])[::-1]

    def sampled_curve(self, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        """The envelope at ``n_points`` evenly spaced recall levels in [0, 1]: (recall, precision),
        each (n_points,). Precision is 0 at recall levels the detector never reaches."""
        levels = np.linspace(0.0, 1.0, n_points)
        envelope = self.precision_envelope()
        # First ranked point whose recall reaches each level; the envelope there is the best
        # precision achievable at that recall or higher.
        first = np.searchsorted(self.recall, levels - 1e-12, side="left")
        padded = np.append(envelope, 0.0)
        return levels, padded[first]


@dataclass(frozen=True)
class GroupMetrics:
    """Detection metrics of one frame group. Mappings are keyed by class name, then threshold
    (metres); they are built once and must not be mutated."""

    group: str
    n_frames: int
    class_names: tuple[str, ...]
    thresholds_m: tuple[float, ...]
    n_gt_per_class: dict[str, int]
    n_det_per_class: dict[str, int]
    ap: dict[str, dict[float, ClassThresholdAP]]  # class -> threshold_m -> result
    ap_per_class: dict[str, float | None]  # mean over thresholds; None without ground truth
    ap_per_threshold: dict[float, float | None]  # mean over defined classes
    mean_ap: float | None  # mean over defined (class, threshold) pairs

    def to_json(self, pr_curve_points: int = 0) -> dict:
        """Plain JSON-able data (str keys, floats, ints, None). With ``pr_curve_points > 0`` each
        (class, threshold) also gets its precision envelope sampled at that many recall levels."""
        out: dict = {
            "group": self.group,
            "n_frames": self.n_frames,
            "thresholds_m": [float(t) for t in self.thresholds_m],
            "mean_ap": self.mean_ap,
            "ap_per_class": dict(self.ap_per_class),
            "ap_per_threshold": {_threshold_key(t): v for t, v in self.ap_per_threshold.items()},
            "ap": {c: {_threshold_key(t): r.ap for t, r in by_t.items()} for c, by_t in self.ap.items()},
            "n_gt_per_class": dict(self.n_gt_per_class),
            "n_det_per_class": dict(self.n_det_per_class),
        }
        if pr_curve_points > 0:
            curves: dict = {}
            for c, by_t in self.ap.items():
                curves[c] = {}
                for t, r in by_t.items():
                    if r.ap is None:
                        continue
                    recall, precision = r.sampled_curve(pr_curve_points)
                    curves[c][_threshold_key(t)] = {"recall": recall.tolist(), "precision": precision.tolist()}
            out["pr_curves"] = curves
        return out


def _threshold_key(threshold_m: float) -> str:
    """JSON key of a threshold: '0.5', '1.0', ... (repr keeps it exact and round-trippable)."""
    return repr(float(threshold_m))


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def average_precision(tp_ranked: np.ndarray, n_gt: int) -> tuple[float | None, np.ndarray, np.ndarray]:
    """AP from true-positive flags in ranking order (descending score).

    tp_ranked: (n_det,) bool. Returns (ap, precision (n_det,), recall (n_det,)); see the module
    docstring for the definition. ap is None and both arrays empty when n_gt == 0.
    """
    tp_ranked = np.asarray(tp_ranked, dtype=bool)
    if n_gt == 0:
        return None, np.zeros(0), np.zeros(0)
    if len(tp_ranked) == 0:
        return 0.0, np.zeros(0), np.zeros(0)
    cum_tp = np.cumsum(tp_ranked, dtype=np.float64)
    ranks = np.arange(1, len(tp_ranked) + 1, dtype=np.float64)  # TP_k + FP_k
    precision = cum_tp / ranks
    recall = cum_tp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(recall, prepend=0.0)
    return float(np.sum(recall_steps * envelope)), precision, recall


def match_frame_class(det_xy: np.ndarray, det_scores: np.ndarray, gt_xy: np.ndarray,
                      thresholds_m: np.ndarray) -> np.ndarray:
    """Greedy nearest-centre matching of one class in one frame, all thresholds at once.

    det_xy (D, 2) m, det_scores (D,), gt_xy (G, 2) m, thresholds_m (T,) m.
    Returns tp (D, T) bool in the detections' input row order.
    """
    return match_frame_class_rows(det_xy, det_scores, gt_xy, thresholds_m) >= 0


def match_frame_class_rows(det_xy: np.ndarray, det_scores: np.ndarray, gt_xy: np.ndarray,
                           thresholds_m: np.ndarray) -> np.ndarray:
    """:func:`match_frame_class`, returning which ground-truth row each detection took:
    (D, T) int64, -1 for a false positive."""
    n_det, n_thr = len(det_xy), len(thresholds_m)
    tp = np.full((n_det, n_thr), -1, dtype=np.int64)
    if n_det == 0 or len(gt_xy) == 0:
        return tp
    distance_m = np.linalg.norm(det_xy[:, None, :] - gt_xy[None, :, :], axis=-1)  # (D, G)
    # Only (detection, box) pairs within the largest radius can ever match. Dropping the others
    # does not change the outcome: if the nearest free box is farther than that radius, the
    # detection is a false positive at every threshold either way. This leaves ~1-2 pairs per
    # detection, so the greedy walk below is cheap plain Python.
    pair_det, pair_gt = np.nonzero(distance_m <= thresholds_m.max())
    if len(pair_det) == 0:
        return tp
    pair_distance_m = distance_m[pair_det, pair_gt]
    rank = np.empty(n_det, dtype=np.int64)
    rank[np.argsort(-det_scores, kind="stable")] = np.arange(n_det)  # 0 = highest score
    # Visit pairs by detection rank, then distance, then ground-truth row (tie rule).
    order = np.lexsort((pair_gt, pair_distance_m, rank[pair_det]))

    radii_m = thresholds_m.tolist()
    taken: list[set[int]] = [set() for _ in radii_m]  # per threshold: boxes already matched
    hits: list[tuple[int, int, int]] = []  # (detection row, threshold index, ground-truth row)
    current_det, undecided = -1, []
    for d, g, dist in zip(pair_det[order].tolist(), pair_gt[order].tolist(), pair_distance_m[order].tolist()):
        if d != current_det:
            current_det, undecided = d, list(range(n_thr))
        still_undecided = []
        for t in undecided:
            if g in taken[t]:
                still_undecided.append(t)  # look at the next-nearest box for this threshold
            elif dist <= radii_m[t]:
                taken[t].add(g)
                hits.append((d, t, g))
            # else: the nearest free box is outside this radius -> false positive, no fallback
        undecided = still_undecided
    if hits:
        rows, cols, gt_rows = zip(*hits)
        tp[list(rows), list(cols)] = gt_rows
    return tp


def _validated_boxes(boxes: np.ndarray, what: str, n_classes: int) -> np.ndarray:
    """Check one (N, BOX_DIM) array and return it as float64; ValueError names the problem."""
    arr = np.asarray(boxes)
    if arr.ndim != 2 or arr.shape[1] != BOX_DIM:
        raise ValueError(f"{what}: expected shape (N, {BOX_DIM}), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{what}: expected a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    for column, name in ((X, "x"), (Y, "y"), (SCORE, "score"), (CLASS_ID, "class_id")):
        bad = ~np.isfinite(arr[:, column])
        if bad.any():
            raise ValueError(f"{what}: {name} is not finite (NaN or inf) in row {int(np.argmax(bad))}")
    class_id = arr[:, CLASS_ID]
    bad = (class_id != np.round(class_id)) | (class_id < 0) | (class_id >= n_classes)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{what}: class_id {class_id[row]:g} in row {row} is not an integer "
                         f"in [0, {n_classes}) (the evaluator's class list)")
    return arr


class DetectionEvaluator:
    """Accumulates frames, then computes :class:`GroupMetrics` per frame group.

    Matching is done when a frame is added (it never crosses frames), so memory holds only
    per-detection scores and true-positive flags, and :meth:`result` is a sort and a cumsum
    per (group, class).
    """

    def __init__(self, class_names: Sequence[str] = CLASS_NAMES,
                 thresholds_m: Sequence[float] = DEFAULT_THRESHOLDS_M) -> None:
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.thresholds_m: tuple[float, ...] = tuple(float(t) for t in thresholds_m)
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names: expected a non-empty list of distinct names, got {self.class_names}")
        if not self.thresholds_m or len(set(self.thresholds_m)) != len(self.thresholds_m):
            raise ValueError(f"thresholds_m: expected distinct thresholds, got {self.thresholds_m}")
        if not all(np.isfinite(t) and t > 0 for t in self.thresholds_m):
            raise ValueError(f"thresholds_m: expected finite positive metres, got {self.thresholds_m}")
        self._thresholds = np.asarray(self.thresholds_m, dtype=np.float64)
        n_classes = len(self.class_names)
        # Per class, one entry per added frame that had detections of it.
        self._scores: list[list[np.ndarray]] = [[] for _ in range(n_classes)]  # (D,) each
        # (D, T) int8 each: 1 true positive, 0 false positive, -1 took an ignored box (dropped).
        self._tp: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
        self._frame_of_det: list[list[np.ndarray]] = [[] for _ in range(n_classes)]  # (D,) each
        self._n_gt_per_frame: list[np.ndarray] = []  # (C,) per frame
        self._frames_of_group: dict[str, list[int]] = {ALL_GROUP: []}  # insertion order = report order

    @property
    def n_frames(self) -> int:
        return len(self._n_gt_per_frame)

    def add_frame(self, detections: np.ndarray, ground_truth: np.ndarray, groups: Sequence[str] = (),
                  ignore: np.ndarray | None = None) -> None:
        """Add one frame: detections and ground truth (N, BOX_DIM) box arrays in the same ego
        frame (metres), the group tags the frame belongs to besides "all", and optionally
        ``ignore`` (G,) bool: ground-truth rows that are "don't care" (see the module docstring)."""
        if isinstance(groups, str):
            # A bare string would silently become one group per character.
            raise TypeError(f"groups: expected a sequence of tags, got the string {groups!r}")
        groups = tuple(groups)
        for tag in groups:
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"groups: expected non-empty strings, got {tag!r}")
        n_classes = len(self.class_names)
        det = _validated_boxes(detections, "detections", n_classes)
        gt = _validated_boxes(ground_truth, "ground_truth", n_classes)
        if ignore is None:
            ignore = np.zeros(len(gt), dtype=bool)
        ignore = np.asarray(ignore)
        if ignore.shape != (len(gt),) or ignore.dtype != bool:
            raise ValueError(f"ignore: expected a ({len(gt)},) bool mask over the ground-truth rows, "
                             f"got shape {ignore.shape} dtype {ignore.dtype}")

        frame = self.n_frames
        det_class = det[:, CLASS_ID].astype(np.int64)
        gt_class = gt[:, CLASS_ID].astype(np.int64)
        for c in range(n_classes):
            det_c = det[det_class == c]
            if len(det_c) == 0:
                continue
            in_class = gt_class == c
            rows = match_frame_class_rows(det_c[:, [X, Y]], det_c[:, SCORE], gt[in_class][:, [X, Y]], self._thresholds)
            took_ignored = (rows >= 0) & np.append(ignore[in_class], False)[rows]  # row -1 reads the False pad
            state = np.where(took_ignored, -1, (rows >= 0).astype(np.int8)).astype(np.int8)
            self._scores[c].append(det_c[:, SCORE])
            self._tp[c].append(state)
            self._frame_of_det[c].append(np.full(len(det_c), frame, dtype=np.int64))
        self._n_gt_per_frame.append(np.bincount(gt_class[~ignore], minlength=n_classes))
        for tag in dict.fromkeys((ALL_GROUP, *groups)):  # dedupe, keep order
            self._frames_of_group.setdefault(tag, []).append(frame)

    def result(self) -> dict[str, GroupMetrics]:
        """Metrics per group, "all" first, then groups in the order they were first seen."""
        n_frames, n_thr = self.n_frames, len(self.thresholds_m)
        n_gt_per_frame = (np.stack(self._n_gt_per_frame) if n_frames
                          else np.zeros((0, len(self.class_names)), dtype=np.int64))  # (F, C)
        # Rank each class once over all frames; a group is then a mask that keeps this order.
        ranked = []
        for c in range(len(self.class_names)):
            if self._scores[c]:
                scores = np.concatenate(self._scores[c])
                order = np.argsort(-scores, kind="stable")
                ranked.append((scores[order], np.concatenate(self._tp[c])[order],
                               np.concatenate(self._frame_of_det[c])[order]))
            else:
                ranked.append((np.zeros(0), np.zeros((0, n_thr), dtype=np.int8), np.zeros(0, dtype=np.int64)))

        results: dict[str, GroupMetrics] = {}
        for group, frames in self._frames_of_group.items():
            in_group = np.zeros(n_frames, dtype=bool)
            in_group[frames] = True
            results[group] = self._group_metrics(group, in_group, n_gt_per_frame, ranked)
        return results

    def _group_metrics(self, group: str, in_group: np.ndarray, n_gt_per_frame: np.ndarray,
                       ranked: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> GroupMetrics:
        n_gt_total = n_gt_per_frame[in_group].sum(axis=0)  # (C,)
        ap: dict[str, dict[float, ClassThresholdAP]] = {}
        n_gt_per_class: dict[str, int] = {}
        n_det_per_class: dict[str, int] = {}
        for c, name in enumerate(self.class_names):
            scores, tp, frame_of_det = ranked[c]
            keep = in_group[frame_of_det]
            scores, tp = scores[keep], tp[keep]
            n_gt = int(n_gt_total[c])
            n_gt_per_class[name], n_det_per_class[name] = n_gt, len(scores)
            ap[name] = {}
            for t, threshold in enumerate(self.thresholds_m):
                counted = tp[:, t] >= 0  # detections of ignored boxes are dropped at this threshold
                value, precision, recall = average_precision(tp[counted, t] == 1, n_gt)
                ap[name][threshold] = ClassThresholdAP(
                    class_name=name, threshold_m=threshold, ap=value, n_gt=n_gt, n_det=int(counted.sum()),
                    precision=precision, recall=recall,
                    scores=scores[counted] if n_gt else np.zeros(0))
        return GroupMetrics(
            group=group,
            n_frames=int(in_group.sum()),
            class_names=self.class_names,
            thresholds_m=self.thresholds_m,
            n_gt_per_class=n_gt_per_class,
            n_det_per_class=n_det_per_class,
            ap=ap,
            ap_per_class={c: _mean_or_none([r.ap for r in ap[c].values()]) for c in self.class_names},
            ap_per_threshold={t: _mean_or_none([ap[c][t].ap for c in self.class_names]) for t in self.thresholds_m},
            mean_ap=_mean_or_none([r.ap for by_t in ap.values() for r in by_t.values()]),
        )
