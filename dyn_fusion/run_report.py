"""The final report of a stack run, from the files its nodes left in the run folder.

Inputs (``ros_nodes.run_record``): ``frames.jsonl`` (every fused frame, with its detections),
``ground_truth.jsonl`` (simulator runs and bags with ground truth), ``ledger.json`` and
``drops.json``. Outputs: ``report.json`` and ``report.md`` in the same folder.

mAP pairs each fused frame with the ground-truth frame nearest its stamp within
``gt_tolerance_s`` (the frame's stamp is its LiDAR scan's, the ground truth's the simulator's
frame time; they differ by the sensor's phase). Ground truth outside the model's detection
region is left out, as in offline evaluation; the simulator's markers do not carry occlusion, so
fully hidden objects count as misses here (offline evaluation ignores them): live mAP is a
little stricter than ``dyn-fusion evaluate`` on the same frames.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_core.atomic_files import atomic_write_text
from fusion_core.boxes import CLASS_NAMES, boxes_from_records
from fusion_core.metrics.average_precision import DetectionEvaluator
from fusion_core.metrics.model_eval import in_region
from fusion_core.model.config import BevGridConfig
from fusion_core.vocabulary import SENSORS

_NS = 1_000_000_000
UNUSED_BY_DESIGN = ":sync:unmatched"  # the drop cause of a message no frame was nearest to


@dataclass(frozen=True)
class RunReport:
    frames_fused: int
    frames_evaluated: int                 # fused frames with ground truth near their stamp
    ground_truth_frames: int
    map_all: float | None                 # None without ground truth
    map_by_condition: dict[str, float]
    joules_by_component: dict[str, float]   # totals over the run
    joules_per_frame: dict[str, float]
    mean_power_w: dict[str, float]
    latency_ms: dict[str, float]          # "stamp_to_publish_p50", ..., "receive_to_publish_p95"
    sensor_presence: dict[str, float]     # share of fused frames each sensor was present in
    absence_reasons: dict[str, dict[str, int]]  # sensor -> reason -> frames
    drops: dict[str, int]                 # "<sensor>:<cause>" -> count
    received: dict[str, int]              # messages fusion_node received, by role
    published: dict[str, int]             # messages the source published on each role's topic
    lost_in_transport: dict[str, int]     # role -> published - received (no node could count these)
    source_error: str | None              # why the source stopped early (a damaged bag), None otherwise
    expert_usage: dict[str, float]        # share of frames each expert ran
    exit_histogram: dict[int, int]
    pivots: dict[str, int]                # frames per pivot role (a fallback means the LiDAR was silent)
    node_cpu_share: dict[str, float]      # node -> CPU time / wall time over the run (1.0 = one core)
    partial: str | None = None            # why the run ended before its source did (a node died, interrupted)
    source_warnings: tuple[str, ...] = ()  # what the bag says wrongly of itself (a metadata.yaml type its storage
                                           # contradicts: the storage's was played), as evaluate reports it
    latency_clock: str = "system"         # the clock latencies are measured on: "system" (live) or "bag" (/clock)
    health: dict[str, object] = dataclasses.field(default_factory=dict)  # frames per level ("ok", "warn",
    # "error") and "problems": the frames' health messages (numbers as N) -> frames, most frequent first
    boxes_per_frame: dict[str, float] = dataclasses.field(default_factory=dict)  # "reported" (every box the
    # model gave, mAP's input), "published" (score threshold + NMS), "ground_truth" (objects in the region)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _percentiles(values: list[float], name: str) -> dict[str, float]:
    v = np.array([x for x in values if np.isfinite(x)], np.float64)
    return {f"{name}_p50": float(np.percentile(v, 50)), f"{name}_p95": float(np.percentile(v, 95))} if v.size else {}


def build_report(run_dir: Path, grid: BevGridConfig, gt_tolerance_s: float = 0.05, live: bool = True,
                 partial: str | None = None) -> RunReport:
    """``live``: header stamps and fusion_node's clock are the system's (a simulator run); else a
    replay, where fusion_node's clock is the player's ``/clock`` (``use_sim_time``), the time
    the bag's stamps are in: stamp -> publish latency is measured on that clock.
    ``partial``: why the run did not end normally (the report then says so first)."""
    missing = [n for n in ("frames.jsonl", "ledger.json", "drops.json") if not (run_dir / n).is_file()]
    if missing:  # written whole or not at all (fusion_core.atomic_files): a failed write leaves none
        lack = f"the run record lacks {', '.join(missing)} (see logs/energy_monitor.log)"
        partial = lack if partial is None else f"{partial}; {lack}"
    frames = _read_jsonl(run_dir / "frames.jsonl")
    truth = _read_jsonl(run_dir / "ground_truth.jsonl")
    ledger = json.loads((run_dir / "ledger.json").read_text()) if (run_dir / "ledger.json").is_file() else {}
    drops = json.loads((run_dir / "drops.json").read_text()) if (run_dir / "drops.json").is_file() else {}
    nodes = json.loads((run_dir / "nodes.json").read_text()) if (run_dir / "nodes.json").is_file() else {}

    evaluator = DetectionEvaluator(CLASS_NAMES)
    gt_stamps = np.array([g["stamp_ns"] for g in truth], np.int64)
    tol_ns = round(gt_tolerance_s * _NS)
    evaluated, n_truth = 0, 0
    for f in frames:
        if f["detections"] is None or not len(gt_stamps):
            continue
        k = int(np.argmin(np.abs(gt_stamps - f["stamp_ns"])))
        if abs(int(gt_stamps[k]) - f["stamp_ns"]) > tol_ns:
            continue
        gt = boxes_from_records(truth[k]["boxes"])
        det = boxes_from_records(f["detections"])
        condition = truth[k].get("condition")
        evaluator.add_frame(det, gt[in_region(gt, grid)], (condition,) if condition else ())
        evaluated += 1
        n_truth += int(in_region(gt, grid).sum())
    metrics = evaluator.result() if evaluated else {}
    experts: Counter[str] = Counter(e for f in frames for e in f["active_experts"])
    latency = _percentiles([f.get("receive_to_publish_ms", float("nan")) for f in frames], "receive_to_publish")
    latency.update(_percentiles([f["stamp_to_publish_ms"] for f in frames], "stamp_to_publish"))
    reasons: dict[str, Counter[str]] = {}
    for f in frames:
        for sensor, reason in f.get("absent", {}).items():
            reasons.setdefault(sensor, Counter())[reason] += 1
    sensors = SENSORS
    return RunReport(
        frames_fused=len(frames), frames_evaluated=evaluated, ground_truth_frames=len(truth),
        map_all=metrics["all"].mean_ap if "all" in metrics else None,
        map_by_condition={g: m.mean_ap for g, m in metrics.items() if g != "all"},
        joules_by_component=ledger.get("totals_j", {}), joules_per_frame=ledger.get("mean_j_per_frame", {}),
        mean_power_w=ledger.get("mean_power_w", {}), latency_ms=latency,
        sensor_presence={s: 1 - sum(reasons.get(s, {}).values()) / len(frames) for s in sensors} if frames else {},
        absence_reasons={s: dict(c) for s, c in sorted(reasons.items())},
        drops=drops.get("fusion_node", {}), received=drops.get("fusion_node_received", {}),
        published={role: drops.get("source_published", {}).get(topic, 0)
                   for role, topic in drops.get("fusion_node_topics", {}).items()} if drops.get("source_published") else {},
        lost_in_transport=drops.get("lost_in_transport", {}),
        source_error=drops.get("source_error"),
        expert_usage={e: n / len(frames) for e, n in sorted(experts.items())} if frames else {},
        exit_histogram=dict(sorted(Counter(f["exit_index"] for f in frames).items())),
        pivots=dict(Counter(f["pivot"] for f in frames)),
        node_cpu_share={n: u["cpu_share"] for n, u in nodes.items() if u.get("cpu_share") is not None},
        partial=partial,
        source_warnings=tuple(drops.get("source_warnings", ())),
        boxes_per_frame=_boxes_per_frame(frames, n_truth / evaluated if evaluated else None),
        latency_clock="system" if live else "bag",
        health=_health(frames),
    )


def _health(frames: list[dict]) -> dict[str, object]:
    """How the fusion node judged its frames (their ``health_level`` and ``health_message``)."""
    levels = Counter(f.get("health_level", 0) for f in frames)
    problems = Counter(re.sub(r"\d+(\.\d+)?", "N", problem.strip()) for f in frames if f.get("health_level", 0)
                       for problem in f.get("health_message", "").split(";") if problem.strip())
    return {"ok": levels.get(0, 0), "warn": levels.get(1, 0), "error": levels.get(2, 0),
            "problems": dict(problems.most_common())}


def _boxes_per_frame(frames: list[dict], truth_per_frame: float | None) -> dict[str, float]:
    out = {}
    for key, name in (("detections", "reported"), ("published", "published")):
        counts = [len(f[key]) for f in frames if f.get(key) is not None]
        if counts:
            out[name] = float(np.mean(counts))
    if truth_per_frame is not None:
        out["ground_truth"] = truth_per_frame
    return out


def report_markdown(r: RunReport, title: str) -> str:
    lines = [f"# {title}", ""]
    if r.partial:
        lines += [f"**This run is partial**: {r.partial}. What was recorded up to then is reported below.", ""]
    if r.source_error:
        lines += [(f"**The source stopped early**: {r.source_error}. Everything before that point was played "
                   f"and is reported below."), ""]
    for warning in r.source_warnings:  # the words of evaluate's note (fusion_core.data.open_source)
        lines += [f"**The source disagrees with itself**: {warning}.", ""]
    if r.map_all is None:
        lines.append(f"- frames fused: {r.frames_fused} (no ground truth: no mAP)")
    else:
        by_cond = ", ".join(f"{c} {m:.3f}" for c, m in r.map_by_condition.items())
        lines.append(f"- mAP against ground truth: **{r.map_all:.3f}** on {r.frames_evaluated} of {r.frames_fused} "
                     f"fused frames ({r.ground_truth_frames} ground-truth frames){'; ' + by_cond if by_cond else ''}")
    if r.health:
        h = r.health
        top = ", ".join(f"{p} {n}" for p, n in list(h["problems"].items())[:4])
        lines.append(f"- health of the frames: ok {h['ok']}, WARN {h['warn']}, ERROR {h['error']}"
                     + (f" ({top})" if top else ""))
    if "published" in r.boxes_per_frame:
        b = r.boxes_per_frame
        lines.append(f"- boxes per frame: {b['published']:.1f} published (score threshold and NMS: fusion_node "
                     f"publish.*), {b.get('reported', float('nan')):.1f} reported by the model (mAP is computed on "
                     f"those)" + (f", {b['ground_truth']:.1f} objects in the ground truth" if "ground_truth" in b else ""))
    if "stamp_to_publish_p50" in r.latency_ms:
        clock = " (on the bag's clock, /clock)" if r.latency_clock == "bag" else ""
        lines.append(f"- latency, sensor stamp -> detections published{clock}: p50 "
                     f"{r.latency_ms['stamp_to_publish_p50']:.1f} ms, p95 {r.latency_ms['stamp_to_publish_p95']:.1f} ms")
    if "receive_to_publish_p50" in r.latency_ms:
        lines.append(f"- latency, last message received -> detections published: p50 "
                     f"{r.latency_ms['receive_to_publish_p50']:.1f} ms, p95 {r.latency_ms['receive_to_publish_p95']:.1f} ms")
    if r.sensor_presence:
        lines.append("- sensors used (share of fused frames): " + ", ".join(
            f"{s} {p:.0%}" for s, p in r.sensor_presence.items()))
    for sensor, why in r.absence_reasons.items():
        lines.append(f"  - {sensor} absent: " + ", ".join(f"{k} {v}" for k, v in sorted(why.items())))
    if r.pivots:
        lines.append("- frames per pivot: " + ", ".join(f"{k} {v}" for k, v in r.pivots.items()))
    if r.node_cpu_share:
        lines.append("- CPU per node (share of one core): " + ", ".join(
            f"{n} {share:.2f}" for n, share in sorted(r.node_cpu_share.items())))
    if r.exit_histogram:
        lines.append("- exits taken: " + ", ".join(f"exit {k}: {v}" for k, v in r.exit_histogram.items()))
    if r.expert_usage:
        lines.append("- experts run (share of frames): " + ", ".join(f"{e} {s:.0%}" for e, s in r.expert_usage.items()))
    lines += ["", "| component | J total | mJ / frame | mean W |", "|---|---|---|---|"]
    for c, j in sorted(r.joules_by_component.items(), key=lambda cj: -cj[1]):
        lines.append(f"| {c} | {j:.3f} | {r.joules_per_frame.get(c, 0.0) * 1e3:.2f} | {r.mean_power_w.get(c, 0.0):.3f} |")
    if r.published:
        lost = sum(r.lost_in_transport.values())
        lines += ["", f"Messages published by the source -> received by fusion_node ({lost} lost in transport): "
                  + ", ".join(f"{k} {r.published[k]} -> {r.received.get(k, 0)}" for k in sorted(r.published))]
    else:
        lines += ["", "Messages fusion_node received (the source reported no counts): "
                  + (", ".join(f"{k} {v}" for k, v in sorted(r.received.items())) or "none reported")]
    # Messages no frame was nearest to (a 20 Hz radar's every other scan with 10 Hz frames, IMU
    # samples after the last frame) are normal in any run; everything else dropped is a fault.
    unused = {k: v for k, v in sorted(r.drops.items()) if k.endswith(UNUSED_BY_DESIGN)}
    faults = {k: v for k, v in sorted(r.drops.items()) if k not in unused}
    lines += ["", "Dropped (faults, by sensor and cause): " + (", ".join(f"{k} {v}" for k, v in faults.items()) or "none"),
              "", "Not needed by any frame (sync:unmatched: between frames, e.g. every other scan of a 20 Hz radar "
              "with 10 Hz frames): "
              + (", ".join(f"{k.removesuffix(UNUSED_BY_DESIGN)} {v}" for k, v in unused.items()) or "none"), ""]
    return "\n".join(lines)


def write_report(run_dir: Path, grid: BevGridConfig, title: str, live: bool = True,
                 partial: str | None = None) -> RunReport:
    report = build_report(run_dir, grid, live=live, partial=partial)
    atomic_write_text(run_dir / "report.json", json.dumps(report.to_json(), indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", report_markdown(report, title))
    return report
