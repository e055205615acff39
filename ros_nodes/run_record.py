"""What a run leaves in its folder, gathered from the stack's topics (no rclpy here).

:class:`RunRecorder` takes decoded messages from the energy monitor's subscriptions and writes,
on :meth:`RunRecorder.write`:

- ``ledger.csv``      one row per frame, joules by component (``EnergyLedger.write_csv``)
- ``ledger.json``     totals, joules per frame, average power per component, latency p50/p95
- ``frames.jsonl``    one line per fused frame: stamp, gate, experts, exit, latencies, every box the
                      model reported (``detections``) and those published (``published``: score
                      threshold and NMS), boxes as named fields (``fusion_core.boxes.RECORD_FIELDS``)
- ``ground_truth.jsonl`` one line per ground-truth frame (simulator runs): stamp, boxes, condition
- ``drops.json``      the fusion node's drop counters by sensor and cause (its last report), what
                      it received per role, what the source published per topic and the
                      difference (``lost_in_transport``)

Everything keyed by header stamps [ns], so the report can pair detections with ground truth.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion_core.atomic_files import atomic_write_text, atomic_writer
from fusion_core.boxes import CLASS_NAMES, boxes_to_records, empty_boxes
from fusion_core.energy.ledger import EnergyLedger, FrameEnergy
from ros_nodes.detection_markers import cube_box
from ros_nodes.source_counts import SourceCounts

_NS = 1_000_000_000
FRAME_STATUS = "dyn_fusion: frame"
HEALTH_STATUS = "dyn_fusion: health"


@dataclass
class FrameRecord:
    """One fused frame as the fusion node reported it."""

    stamp_ns: int
    pivot: str
    gate_mode: str
    configuration: str
    active_experts: list[str]
    exit_index: int
    condition_estimate: str
    inference_ms: float
    stamp_to_publish_ms: float
    energy: FrameEnergy
    receive_to_publish_ms: float = float("nan")
    absent: dict[str, str] = field(default_factory=dict)   # sensor -> reason (from the health status)
    health_level: int = 0                                   # 0 OK, 1 WARN, 2 ERROR
    health_message: str = ""


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def frame_record(status) -> FrameRecord:
    """A ``dyn_fusion: frame`` DiagnosticStatus -> FrameRecord (ValueError naming the problem when
    a key is missing or a value is invalid)."""
    v = _values(status)
    try:
        compute = {k.removeprefix("energy_j:"): float(x) for k, x in v.items() if k.startswith("energy_j:")}
        sensors = {k.removeprefix("sensor_energy_j:"): float(x) for k, x in v.items()
                   if k.startswith("sensor_energy_j:")}
        stamp_ms, received_ms = float(v["stamp_to_publish_ms"]), float(v.get("receive_to_publish_ms", "nan"))
        # header stamps ahead of the receiver's clock (a simulator faster than real time, clock
        # skew between sensor and computer) make stamp -> publish negative: the ledger then keeps
        # receive -> publish, which is always measured on one clock
        ledger_ms = stamp_ms if stamp_ms >= 0 or not received_ms >= 0 else received_ms
        return FrameRecord(
            stamp_ns=int(v["stamp_ns"]), pivot=v["pivot"], gate_mode=v["gate_mode"], configuration=v["configuration"],
            active_experts=[e for e in v["active_experts"].split(",") if e], exit_index=int(v["exit_index"]),
            condition_estimate=v["condition_estimate"], inference_ms=float(v["inference_ms"]),
            stamp_to_publish_ms=stamp_ms, receive_to_publish_ms=received_ms,
            energy=FrameEnergy(compute, sensors, ledger_ms))
    except KeyError as missing:
        raise ValueError(f"frame status without {missing}") from None


def ground_truth_from_markers(msg) -> tuple[int, np.ndarray]:
    """The simulator's ``/ground_truth/markers`` -> (stamp [ns], (G, 11) boxes): each CUBE of
    namespace "boxes" paired with the "labels" text of the same id ("car #12")."""
    classes = {m.id: m.text.split(" ")[0] for m in msg.markers if m.ns == "labels"}
    stamp_ns, rows = None, []
    for m in msg.markers:
        if stamp_ns is None:
            stamp_ns = m.header.stamp.sec * _NS + m.header.stamp.nanosec
        if m.ns != "boxes" or m.action != 0:
            continue
        name = classes.get(m.id)
        if name not in CLASS_NAMES:
            continue
        rows.append(cube_box(m, CLASS_NAMES.index(name)))
    return (stamp_ns or 0), (np.stack(rows) if rows else empty_boxes())


class RunRecorder:
    """Collects frames, detections, ground truth and drops; writes the run folder's files."""

    def __init__(self):
        self.frames: dict[int, FrameRecord] = {}
        self.detections: dict[int, np.ndarray] = {}
        self.published: dict[int, np.ndarray] = {}
        self.ground_truth: dict[int, np.ndarray] = {}
        self.conditions: dict[int, str] = {}
        self.drops: dict[str, int] = {}
        self.received: dict[str, int] = {}    # messages the fusion node received, by role
        self.role_topics: dict[str, str] = {}  # role -> the topic the fusion node subscribed for it
        self.source_published: dict[str, int] = {}  # topic -> messages the source published (its final count)
        self.source_node = ""
        self.source_error: str | None = None  # why the source stopped early (a damaged bag)
        self.source_warnings: list[str] = []  # what the bag says wrongly of itself (read all the same)
        self.bad_messages = 0

    def add_frame(self, record: FrameRecord) -> None:
        self.frames[record.stamp_ns] = record

    def add_health(self, status, record: FrameRecord | None) -> None:
        """Keep the newest drop counters (running totals); attach level, message and absences to
        the frame reported in the same array."""
        values = _values(status)
        self.drops = {k.removeprefix("drops:"): int(x) for k, x in values.items() if k.startswith("drops:")}
        self.received = {k.removeprefix("received:"): int(x) for k, x in values.items() if k.startswith("received:")}
        self.role_topics = {k.removeprefix("topic:"): x for k, x in values.items() if k.startswith("topic:")}
        if record is not None:
            record.health_level = int(status.level)
            record.health_message = status.message
            record.absent = {k.removeprefix("absent:"): x for k, x in values.items() if k.startswith("absent:")}

    def add_source_counts(self, counts: SourceCounts) -> None:
        self.source_node, self.source_published = counts.node, dict(counts.published)
        self.source_error = counts.error
        self.source_warnings = list(counts.warnings)

    def transport_losses(self) -> dict[str, int]:
        """role -> messages the source published on the role's topic that the fusion node never
        received (lost inside DDS, or before it subscribed); empty without the source's counts."""
        if not self.source_published:
            return {}
        return {role: self.source_published.get(topic, 0) - self.received.get(role, 0)
                for role, topic in sorted(self.role_topics.items())}

    def add_detections(self, stamp_ns: int, boxes: np.ndarray) -> None:
        """Every box the model reported for the frame (what the report's mAP is computed on)."""
        self.detections[stamp_ns] = boxes

    def add_published(self, stamp_ns: int, boxes: np.ndarray) -> None:
        """The boxes published as the frame's detections (score threshold and NMS applied)."""
        self.published[stamp_ns] = boxes

    def add_ground_truth(self, stamp_ns: int, boxes: np.ndarray) -> None:
        self.ground_truth[stamp_ns] = boxes

    def add_condition(self, stamp_ns: int, condition: str) -> None:
        self.conditions[stamp_ns] = condition

    def ledger(self) -> EnergyLedger:
        ledger = EnergyLedger()
        for stamp in sorted(self.frames):
            ledger.add(self.frames[stamp].energy)
        return ledger

    def summary(self) -> dict:
        """Totals for the live progress line and ledger.json."""
        ledger = self.ledger()
        stamps = sorted(self.frames)
        duration_s = (stamps[-1] - stamps[0]) / _NS + 0.1 if len(stamps) > 1 else 0.1
        out = ledger.to_json() if ledger.n_frames else {"n_frames": 0}
        if ledger.n_frames:
            out["duration_s"] = duration_s
            out["mean_power_w"] = ledger.mean_power_w(duration_s)
            out["total_power_w"] = ledger.total_j() / duration_s
        return out

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ledger = self.ledger()
        if ledger.n_frames:
            ledger.write_csv(folder / "ledger.csv")
        atomic_write_text(folder / "ledger.json", json.dumps(self.summary(), indent=2) + "\n")
        with atomic_writer(folder / "frames.jsonl") as f:
            for stamp in sorted(self.frames):
                r = self.frames[stamp]
                boxes, published = self.detections.get(stamp), self.published.get(stamp)
                f.write(json.dumps({
                    "stamp_ns": stamp, "pivot": r.pivot, "gate_mode": r.gate_mode, "configuration": r.configuration,
                    "active_experts": r.active_experts, "exit_index": r.exit_index,
                    "condition_estimate": r.condition_estimate, "inference_ms": r.inference_ms,
                    "stamp_to_publish_ms": r.stamp_to_publish_ms, "receive_to_publish_ms": r.receive_to_publish_ms,
                    "health_level": r.health_level, "health_message": r.health_message, "absent": r.absent,
                    "compute_j": r.energy.compute_total_j, "compute_j_by_component": dict(r.energy.compute_j),
                    "sensor_j": r.energy.sensor_total_j, "sensors_on": sorted(r.energy.sensor_j),
                    "detections": None if boxes is None else boxes_to_records(boxes),
                    "published": None if published is None else boxes_to_records(published),
                }) + "\n")
        with atomic_writer(folder / "ground_truth.jsonl") as f:
            for stamp in sorted(self.ground_truth):
                f.write(json.dumps({"stamp_ns": stamp, "condition": self.conditions.get(stamp),
                                    "boxes": boxes_to_records(self.ground_truth[stamp])}) + "\n")
        atomic_write_text(folder / "drops.json", json.dumps({
            "fusion_node": self.drops, "fusion_node_received": self.received, "fusion_node_topics": self.role_topics,
            "source_node": self.source_node, "source_published": self.source_published,
            "source_error": self.source_error, "source_warnings": self.source_warnings,
            "lost_in_transport": self.transport_losses(),
            "undecodable_messages_seen_by_monitor": self.bad_messages}, indent=2) + "\n")
