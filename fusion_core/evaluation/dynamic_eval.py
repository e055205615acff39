"""Evaluating one gate mode and exit policy frame by frame: mAP per group, compute and sensor
energy per frame (a device profile's cost model over the components that actually ran),
latency, gate usage per condition, the exit histogram and the context head's accuracy.

Groups: "all", each condition and fault of the source, and "dropout:<sensor>" rows, in which the
same frames are run again with that detection sensor removed (a sensor dying mid-drive).
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY, FusionSample, frame_groups
from fusion_core.energy.ledger import EnergyLedger, frame_energy
from fusion_core.energy.profile import DeviceProfile
from fusion_core.metrics.average_precision import DetectionEvaluator, GroupMetrics
from fusion_core.metrics.model_eval import in_region
from fusion_core.model.batch import BatchCollator
from fusion_core.runtime.dynamic_fusion import DynamicFusion
from fusion_core.vocabulary import DETECTION_SENSORS, EVALUATION_DROPOUT, SENSORS


@dataclass
class GroupCost:
    n_frames: int
    compute_j_per_frame: float
    sensor_j_per_frame: float
    latency_ms_median: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ModeEvaluation:
    label: str                                  # e.g. "attention k=2"
    metrics: dict[str, GroupMetrics]            # group -> detection metrics
    cost: dict[str, GroupCost]                  # group -> energy and latency
    usage: dict[str, dict[str, float]]          # group -> expert -> share of the group's frames it ran in
    configurations: dict[str, dict[str, float]]  # group -> configuration -> share (loss and oracle gates)
    exit_histogram: list[int]                   # frames per exit taken (main pass)
    component_j_per_frame: dict[str, float]     # mean compute joules per frame by component (main pass)
    context_accuracy: dict[str, float]          # condition -> share estimated right (gates that estimate it)
    missed_deadlines: int

    def mean_ap(self, group: str = "all") -> float | None:
        m = self.metrics.get(group)
        return None if m is None else m.mean_ap

    def to_json(self) -> dict:
        return {"label": self.label, "metrics": {g: m.to_json() for g, m in self.metrics.items()},
                "cost": {g: c.to_json() for g, c in self.cost.items()}, "usage": self.usage,
                "configurations": self.configurations, "exit_histogram": self.exit_histogram,
                "component_j_per_frame": self.component_j_per_frame, "context_accuracy": self.context_accuracy,
                "missed_deadlines": self.missed_deadlines}


class _Tally:
    """Per-group accumulators of one pass."""

    def __init__(self, classes: Sequence[str]):
        self.evaluator = DetectionEvaluator(classes)
        self.compute_j: dict[str, list[float]] = defaultdict(list)
        self.sensor_j: dict[str, list[float]] = defaultdict(list)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.experts: dict[str, Counter] = defaultdict(Counter)
        self.configs: dict[str, Counter] = defaultdict(Counter)

    def add(self, groups: Sequence[str], compute_j: float, sensor_j: float, latency_ms: float,
            experts: Sequence[str], configuration: str | None) -> None:
        for g in groups:
            self.compute_j[g].append(compute_j)
            self.sensor_j[g].append(sensor_j)
            self.latency[g].append(latency_ms)
            self.experts[g].update(experts)
            if configuration is not None:
                self.configs[g][configuration] += 1


def evaluate_dynamic(fusion: DynamicFusion, source: Sequence[FusionSample], label: str, profile: DeviceProfile, *,
                     frames: Sequence[int] | None = None, dropout_frames: Sequence[int] = (),
                     frame_period_s: float = 0.1, min_visibility: float = DEFAULT_MIN_VISIBILITY,
                     progress: bool = True) -> ModeEvaluation:
    """Run ``fusion`` over ``frames`` of ``source`` (default: all), then ``dropout_frames`` once per
    detection sensor with that sensor removed. Frames without ground truth are skipped."""
    if fusion.cost_table is None:
        raise ValueError("evaluate_dynamic needs a DynamicFusion with a cost table (energy per frame)")
    det = fusion.detector
    collator = BatchCollator(det.config, min_visibility)
    frames = range(len(source)) if frames is None else frames
    main = _Tally(det.config.classes)
    dropout = {s: _Tally(det.config.classes) for s in DETECTION_SENSORS} if dropout_frames else {}
    ledger = EnergyLedger(profile)
    exits: Counter[int] = Counter()
    context_hits: dict[str, list[bool]] = defaultdict(list)
    missed = 0
    jobs = [(i, None) for i in frames] + [(i, s) for s in dropout for i in dropout_frames]
    for i, drop in tqdm(jobs, desc=f"evaluate {label}", unit="frame", disable=not progress, leave=False):
        sample = source[int(i)]
        if sample.gt_boxes is None:
            continue
        if drop is not None:
            if not sample.present(drop):
                continue
            sample = sample.without(drop, EVALUATION_DROPOUT)
        batch = collator([sample])
        gt = batch.gt_boxes[0]
        keep = in_region(gt, det.config.grid)
        result = fusion.run_frame(batch.inputs, batch.targets, gt[keep & ~batch.gt_hidden[0]])
        flops = fusion.cost_table.frame_flops(result.components)
        sensors_on = [s for s in SENSORS if sample.present(s)]
        energy = frame_energy(profile, flops, sensors_on, frame_period_s, result.latency_ms)
        tally = main if drop is None else dropout[drop]
        groups = ("all", *frame_groups(sample)) if drop is None else ("all",)
        tally.evaluator.add_frame(result.boxes, gt[keep], groups[1:], ignore=batch.gt_hidden[0][keep])
        tally.add(groups, energy.compute_total_j, energy.sensor_total_j, result.latency_ms, result.active_experts,
                  result.configuration)
        missed += int(result.missed_deadline)
        if drop is None:
            ledger.add(energy)
            exits[result.exit_index] += 1
            if result.condition_estimate is not None and sample.condition is not None:
                context_hits[sample.condition].append(result.condition_estimate == sample.condition)

    metrics = dict(main.evaluator.result())
    tallies = [(main, None)] + [(t, s) for s, t in dropout.items()]
    cost, usage, configs = {}, {}, {}
    for tally, drop in tallies:
        results = tally.evaluator.result() if drop is not None else None
        for g in tally.compute_j:
            name = g if drop is None else f"dropout:{drop}"
            if drop is not None:
                if g != "all":
                    continue
                metrics[name] = results["all"]
            n = len(tally.compute_j[g])
            cost[name] = GroupCost(n, float(np.mean(tally.compute_j[g])), float(np.mean(tally.sensor_j[g])),
                                   float(statistics.median(tally.latency[g])))
            usage[name] = {e: tally.experts[g][e] / n for e in det.expert_names}
            if tally.configs[g]:
                configs[name] = {c: k / n for c, k in tally.configs[g].items()}
    n_exits = det.config.n_exits
    return ModeEvaluation(
        label=label, metrics=metrics, cost=cost, usage=usage, configurations=configs,
        exit_histogram=[exits[k] for k in range(n_exits)],
        component_j_per_frame={c: j / max(1, ledger.n_frames) for c, j in ledger.totals_j().items()
                               if not c.startswith("sensor:")} if ledger.n_frames else {},
        context_accuracy={c: float(np.mean(v)) for c, v in sorted(context_hits.items())},
        missed_deadlines=missed)
