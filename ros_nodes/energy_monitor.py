"""``energy_monitor``: running energy totals and the run's record.

    python -m ros_nodes.energy_monitor --ros-args --params-file configs/vehicle.yaml -p energy.run_dir:=runs/x

Subscribes to ``/fusion/frames`` (the fusion node's per-frame ledger entries and health),
``/fusion/detections`` (published) and ``/fusion/detections/all`` (every box: the report's mAP),
and, when a simulator or a bag provides them, ``/ground_truth/markers`` and ``/sim/labels``.
Every ``energy.report_period_s`` it logs one progress line (frames, detections, active experts,
exit, average watts by compute and sensors); on shutdown it writes the run folder
(``ros_nodes.run_record``: ledger CSV/JSON, frames, ground truth, drops). With ``energy.record``
it also writes what it receives into the run's MCAP (``ros_nodes.run_bag``), ``/diagnostics``
too, the published detections also as ``vision_msgs/Detection3DArray``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.node import Node

from fusion_core.config_io import ConfigError, param
from fusion_core.data import ros_decode as rd
from fusion_core.data import topics as T
from fusion_core.data.detection3d import detection3d_array_cdr
from ros_nodes import ros_io
from ros_nodes.detection_markers import MarkerDecodeError, markers_to_boxes
from ros_nodes.node_main import run_node
from ros_nodes.node_params import ParamSection, declare_sections, read_section
from ros_nodes.run_bag import RECORD_FOLDER, RunBag
from ros_nodes.run_record import (
    FRAME_STATUS,
    HEALTH_STATUS,
    RunRecorder,
    frame_record,
    ground_truth_from_markers,
)
from ros_nodes.source_counts import (
    SOURCE_COUNTS_TOPIC,
    SOURCE_COUNTS_TYPE,
    decode_source_counts,
)


@dataclass(frozen=True)
class EnergyMonitorConfig:
    run_dir: str = param("runs/latest", "folder the ledger and the run record are written to on shutdown")
    report_period_s: float = param(2.0, "seconds between progress lines (0: none)", lo=0.0)
    status_file: str = param("", "rewrite this JSON file with the running totals at every progress line ('' = no)")
    record: bool = param(False, "also write the run as a rosbag2 MCAP (<run_dir>/record/): detections (and as "
                                "vision_msgs/Detection3DArray), diagnostics, ground truth")
    record_topics: tuple[str, ...] = param((), "more topics to record, each 'topic=package/msg/Type' (the "
                                               "sensors: dyn-fusion up/replay --record-sensors)")


PARAMETER_SECTIONS = (ParamSection("energy", EnergyMonitorConfig()),)


class EnergyMonitor(Node):
    def __init__(self):
        super().__init__("energy_monitor")
        declare_sections(self, PARAMETER_SECTIONS)
        self.config = read_section(self, "energy", EnergyMonitorConfig)
        self.recorder = RunRecorder()
        self._since_report = 0
        self._t0 = time.monotonic()
        cls = ros_io.message_class
        self.create_subscription(cls("diagnostic_msgs/msg/DiagnosticArray"), T.FRAME_RECORDS_TOPIC,
                                 self._on_frame_records, ros_io.RECORD_QOS, raw=True)
        # every box for the report's mAP (what evaluate scores), the published ones for the record
        self.create_subscription(cls("visualization_msgs/msg/MarkerArray"), T.ALL_DETECTIONS_TOPIC,
                                 self._on_detections(T.ALL_DETECTIONS_TOPIC, self.recorder.add_detections),
                                 ros_io.RECORD_QOS, raw=True)
        self.create_subscription(cls("visualization_msgs/msg/MarkerArray"), T.DETECTIONS_TOPIC,
                                 self._on_detections(T.DETECTIONS_TOPIC, self.recorder.add_published),
                                 ros_io.RECORD_QOS, raw=True)
        self.create_subscription(cls("visualization_msgs/msg/MarkerArray"), T.GT_MARKERS_TOPIC, self._on_ground_truth,
                                 ros_io.RELIABLE_QOS, raw=True)
        self.create_subscription(cls("diagnostic_msgs/msg/DiagnosticArray"), T.LABELS_TOPIC, self._on_labels,
                                 ros_io.RELIABLE_QOS, raw=True)
        self.create_subscription(cls(SOURCE_COUNTS_TYPE), SOURCE_COUNTS_TOPIC, self._on_source_counts,
                                 ros_io.LATCHED_QOS, raw=True)
        if self.config.report_period_s > 0:
            self.create_timer(self.config.report_period_s, self._report)
        self.bag = self._open_record() if self.config.record else None

    # ------------------------------------------------------------------ the recording
    def _open_record(self) -> RunBag:
        """The run's MCAP; subscriptions for the extra ``record_topics`` (the others are
        recorded from the callbacks above, which see them anyway)."""
        bag = RunBag(Path(self.config.run_dir) / RECORD_FOLDER)
        self.create_subscription(ros_io.message_class("diagnostic_msgs/msg/DiagnosticArray"), T.DIAGNOSTICS_TOPIC,
                                 self._recorder_of(T.DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray"),
                                 ros_io.RELIABLE_QOS, raw=True)
        for entry in self.config.record_topics:
            topic, sep, msgtype = entry.partition("=")
            if not sep or not topic or not msgtype:
                raise ConfigError(f"energy.record_topics: {entry!r}: expected 'topic=package/msg/Type'")
            self.create_subscription(ros_io.message_class(msgtype), topic, self._recorder_of(topic, msgtype),
                                     ros_io.SENSOR_SUBSCRIPTION_QOS, raw=True)
        return bag

    def _recorder_of(self, topic: str, msgtype: str):
        def record(raw: bytes) -> None:
            self._record(topic, msgtype, raw)
        return record

    def _record(self, topic: str, msgtype: str, raw: bytes) -> None:
        if self.bag is not None:
            self.bag.write(topic, msgtype, self.get_clock().now().nanoseconds, raw)

    # ------------------------------------------------------------------ callbacks
    def _decode(self, raw: bytes, msgtype: str):
        try:
            return ros_io.deserialize(raw, msgtype)
        except Exception:  # damaged bytes: counted, the monitor keeps running
            self.recorder.bad_messages += 1
            return None

    def _on_frame_records(self, raw: bytes) -> None:
        self._record(T.FRAME_RECORDS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", raw)
        msg = self._decode(raw, "diagnostic_msgs/msg/DiagnosticArray")
        record = None  # the frame status comes first in the fusion node's array, then its health
        for status in [] if msg is None else msg.status:
            if status.name == FRAME_STATUS:
                try:
                    record = frame_record(status)
                except ValueError as exc:
                    self.recorder.bad_messages += 1
                    self.get_logger().error(f"/diagnostics: frame status not recorded ({exc}); further ones are "
                                            f"only counted", once=True)
                    continue
                self.recorder.add_frame(record)
                self._since_report += 1
            elif status.name == HEALTH_STATUS:
                self.recorder.add_health(status, record)

    def _on_detections(self, topic: str, record):
        def on_markers(raw: bytes) -> None:
            self._record(topic, "visualization_msgs/msg/MarkerArray", raw)
            msg = self._decode(raw, "visualization_msgs/msg/MarkerArray")
            if msg is None:
                return
            try:
                stamp, boxes = markers_to_boxes(msg)
            except MarkerDecodeError:
                self.recorder.bad_messages += 1
                return
            record(stamp, boxes)
            if topic == T.DETECTIONS_TOPIC and self.bag is not None:  # the standard message, beside RViz's
                frame_id = next((m.header.frame_id for m in msg.markers), "base_link")
                self._record(T.DETECTIONS_3D_TOPIC, T.DETECTION3D_ARRAY_TYPE,
                             detection3d_array_cdr(boxes, stamp, frame_id))
        return on_markers

    def _on_ground_truth(self, raw: bytes) -> None:
        self._record(T.GT_MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray", raw)
        msg = self._decode(raw, "visualization_msgs/msg/MarkerArray")
        if msg is not None:
            self.recorder.add_ground_truth(*ground_truth_from_markers(msg))

    def _on_labels(self, raw: bytes) -> None:
        msg = self._decode(raw, "diagnostic_msgs/msg/DiagnosticArray")
        if msg is None:
            return
        try:
            labels = rd.decode_labels(msg)
        except rd.DecodeError:
            self.recorder.bad_messages += 1
            return
        if labels.condition:
            self.recorder.add_condition(rd.stamp_ns(msg.header), labels.condition)

    def _on_source_counts(self, raw: bytes) -> None:
        msg = self._decode(raw, SOURCE_COUNTS_TYPE)
        if msg is None:
            return
        try:
            self.recorder.add_source_counts(decode_source_counts(msg.data))
        except ValueError as exc:
            self.recorder.bad_messages += 1
            self.get_logger().error(f"{SOURCE_COUNTS_TOPIC}: {exc}")

    # ------------------------------------------------------------------ progress and shutdown
    def _report(self) -> None:
        summary = self.recorder.summary()
        n = summary["n_frames"]
        if not n:
            self.get_logger().info("waiting for frames ...")
            return
        power = summary["mean_power_w"]
        compute_w = sum(w for c, w in power.items() if not c.startswith("sensor:"))
        sensor_w = sum(w for c, w in power.items() if c.startswith("sensor:"))
        latest = self.recorder.frames[max(self.recorder.frames)]
        n_det = len(self.recorder.published.get(latest.stamp_ns, ()))
        self.get_logger().info(
            f"frames {n} (+{self._since_report}) | detections {n_det} published | experts {','.join(latest.active_experts)}"
            f" | exit {latest.exit_index} | {compute_w:.2f} W compute + {sensor_w:.1f} W sensors"
            f" | latency p95 {summary['latency_ms'].get('p95', float('nan')):.0f} ms")
        self._since_report = 0
        if self.config.status_file:
            Path(self.config.status_file).write_text(json.dumps(summary) + "\n")

    def _drain(self, quiet_s: float = 0.5, limit_s: float = 20.0) -> None:
        """Take what DDS still holds for us (a replay's backlog) until ``quiet_s`` passes without a
        new frame, at most ``limit_s``: the record must not lose the last frames to the stop."""
        end = time.monotonic() + limit_s
        last_count, quiet_since = -1, time.monotonic()
        while time.monotonic() < end and time.monotonic() - quiet_since < quiet_s:
            rclpy.spin_once(self, timeout_sec=0.05)
            count = len(self.recorder.frames) + len(self.recorder.detections)
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()

    def finish(self) -> None:
        self._drain()
        folder = Path(self.config.run_dir)
        self.recorder.write(folder)
        self.get_logger().info(f"energy_monitor: {len(self.recorder.frames)} frames; ledger and record in {folder}")
        if self.bag is not None:
            self.bag.close()
            counts = ", ".join(f"{t} {n}" for t, n in sorted(self.bag.counts.items()))
            self.get_logger().info(f"energy_monitor: recorded {self.bag.folder} ({counts})")


def main(args=None) -> int:
    return run_node(EnergyMonitor, "energy_monitor", args)


if __name__ == "__main__":
    raise SystemExit(main())
