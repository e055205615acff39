"""``fusion_node``: sensor topics in, detections, gate/exit/energy diagnostics and sensor power
requests out.

    python -m ros_nodes.fusion_node --ros-args --params-file configs/vehicle.yaml

Threads. Subscription callbacks only append the raw CDR bytes to an inbox (cheap, so the DDS
reader never waits on inference). One worker thread owns the :class:`FusionPipeline`: it drains
the inbox (decode + synchronise), runs fusion on the newest ready frame and publishes. Frames
that became ready while the previous one was running are dropped and counted as ``overload``
unless ``fusion.process_every_frame`` (replays that must evaluate every frame) is set. So the
pipeline is single-threaded and needs no locks; only the inbox is shared.

Time: latencies are measured on the node's ROS clock (the system clock live; with
``use_sim_time``, as ``dyn-fusion replay`` sets it, the player's ``/clock``: the bag's time, which
the header stamps are in), so a replay reports sensor stamp -> publish on the bag's clock.

Published (per frame):

- ``/fusion/detections`` ``visualization_msgs/MarkerArray`` (``ros_nodes.detection_markers``):
  the boxes the stack stands behind, ``publish.min_score`` and cross-class bird's-eye NMS
  (``publish.nms_iou``) applied (``fusion_core.detection_filter``);
- ``/fusion/detections/all``: every box the model reported (>= its 0.05 score threshold), what
  average precision is computed on (the energy monitor's report, like ``evaluate``);
- ``/fusion/frames`` ``diagnostic_msgs/DiagnosticArray``, the frame's record, with two statuses:
  ``dyn_fusion: frame`` (gate mode, configuration, experts, exit, condition estimate, latencies,
  joules by component as ``energy_j:<component>`` and ``sensor_energy_j:<sensor>``) and
  ``dyn_fusion: health`` (WARN when a detection sensor is lost or a frame is slow, ERROR after
  ``fusion.slow_frames_for_error`` slow frames in a row; message counts by drop cause);
- ``/sensors/<sensor>/power/request`` ``std_msgs/String`` when power gating decides
  (``docs/sensor_power_gating.md``).

Published every ``diagnostics.period_s`` (1 s) on ``/diagnostics``, as ROS tools expect it
(rqt_robot_monitor, diagnostic_aggregator): ``fusion_node: health`` (the worst frame health of
the period, frames fused, drop totals) and one ``fusion_node: input <sensor>`` per input with
its rate and stamp ages, WARN when it went silent, slowed down or its stamps are stale
(``ros_nodes.input_rates``).

Gate mode, k, γ, λ, the exit policy and its settings, and the ``publish.*`` filter change at
run time through parameter updates (``ros2 param set /fusion_node fusion.gate_mode loss``); a
bad value is refused with the reason and the old settings stay. Those parameters are generated from ``GateSettings`` and
``ExitSettings`` (their docs, ranges and choices; ``fusion.gate_mode``, ``fusion.exit_*``); the
runner comes from ``fusion_core.runtime.builder`` like the CLI's.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node

from fusion_core.config_io import ConfigError, param, parameter_names
from fusion_core.data import topics as T
from fusion_core.data.ros_decode import MAX_CLOUD_POINTS
from fusion_core.data.shard_source import ShardSource
from fusion_core.data.static_tf import StaticTfTree, load_static_tf
from fusion_core.data.topic_mapping import TopicMapping, resolve_topic_mapping
from fusion_core.data.topics import ALL_DETECTIONS_TOPIC, DETECTIONS_TOPIC, power_request_topic
from fusion_core.detection_filter import DetectionFilterSettings, filter_detections
from fusion_core.energy.profile import load_device_profile
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.modes import GATES
from fusion_core.gates.settings import GateSettings
from fusion_core.model.inputs import collate
from fusion_core.runtime.builder import build_dynamic_fusion, build_exit_policy
from fusion_core.runtime.power_gating import PowerGatingConfig, SensorPowerManager
from fusion_core.shipped import resolve_input
from fusion_core.training.checkpoint import load_detector
from fusion_core.vocabulary import DETECTION_SENSORS, NOT_SUBSCRIBED, SENSORS, STANDBY, WARMING
from ros_nodes import ros_io
from ros_nodes.detection_markers import boxes_to_markers_cdr
from ros_nodes.fusion_pipeline import (
    FrameOutcome,
    FusionPipeline,
    ReadyFrame,
    subscribed_topics,
)
from ros_nodes.input_rates import InputCheckConfig, InputRates
from ros_nodes.node_main import run_node
from ros_nodes.node_params import ParamSection, declare_sections, read_section, update_section
from ros_nodes.run_record import FRAME_STATUS, HEALTH_STATUS
from ros_nodes.stamp_sync import StampSyncConfig, StampSynchroniser

DIAGNOSTICS_TOPIC = T.DIAGNOSTICS_TOPIC
INBOX_LIMIT = 20_000  # raw messages waiting for the worker; beyond that the oldest are dropped (counted)
# The node's defaults where they differ from the settings classes' (configs/vehicle.yaml gives them
# too): the loss gate at λ = 5 (README: 35 % of static's compute energy within 0.02 mAP), and a
# deadline ready for when the deadline policy is switched on at run time.
NODE_GATE_SETTINGS = GateSettings(mode="loss", lam_per_j=5.0)
NODE_EXIT_SETTINGS = ExitSettings(deadline_ms=100.0)


@dataclass(frozen=True)
class FusionNodeConfig:
    """The ``fusion.*`` parameters besides the gate's and the exit policy's (``GateSettings`` and
    ``ExitSettings`` declare those); configs/vehicle.yaml has the shipped values."""

    checkpoint: str = param("models/default.pt", "trained detector (.pt)")
    gates: str = param("models/default_gates.pt", "trained gates (.pt); '' = only the static and late modes")
    reference_frame: str = param("models/default_reference", "stored frame with every sensor (shard dataset, "
                                 "scripts/write_reference_frame.py): start-up warm-up, cost table, stage times")
    topic_mapping: str = param("sim_bag", "which topics feed which sensor: a name in configs/data/ or a YAML path")
    calibration_file: str = param("", "sensor mounts as a YAML file (fusion_core.data.static_tf); '' = /tf_static")
    energy_profile: str = param("jetson_orin", "device energy profile: configs/energy/<name>.yaml or a path")
    frame_period_s: float = param(0.1, "sensor frame period: a sensor's energy per frame is its power x this",
                                  lo=1e-3, hi=10.0)
    max_cloud_points: int = param(MAX_CLOUD_POINTS, "larger point clouds are dropped (counted), not processed "
                                  "(evaluate reads bags with the default)", lo=1)
    process_every_frame: bool = param(False, "never skip a frame, even when behind (replays that evaluate)")
    slow_frame_ms: float = param(150.0, "sensor stamp -> publish above this is a slow frame (health WARN)", lo=0.0)
    slow_frames_for_error: int = param(10, "this many slow frames in a row: health ERROR", lo=1)


def online_gate(settings: GateSettings) -> GateSettings:
    """``settings`` if its gate can run on a robot; ConfigError for an offline-only one (the oracle)."""
    if GATES[settings.mode].offline_only:
        raise ConfigError(f"fusion.gate_mode: {settings.mode} is offline only (it reads ground truth)")
    return settings


# ``fusion.*``: the node's own config, the gate settings and the exit settings; ``sync.*`` (roles,
# pivot and IMU role follow the topic mapping: sync_config_for); ``power.*``.
FUSION_SECTIONS = tuple(ParamSection("fusion", d) for d in (FusionNodeConfig(), NODE_GATE_SETTINGS, NODE_EXIT_SETTINGS))
PARAMETER_SECTIONS = (*FUSION_SECTIONS,
                      ParamSection("publish", DetectionFilterSettings()),
                      ParamSection("diagnostics", InputCheckConfig()),
                      ParamSection("sync", StampSyncConfig(fallback_pivots=("depth", "rgb", "radar")),
                                   skip=("roles", "pivot", "imu_role")),
                      ParamSection("power", PowerGatingConfig()))


def declare_fusion_parameters(node: Node) -> None:
    declare_sections(node, FUSION_SECTIONS)


def read_fusion_parameters(node: Node) -> tuple[FusionNodeConfig, GateSettings, ExitSettings]:
    """The ``fusion.*`` parameters as the three config classes; ConfigError naming the parameter."""
    return (read_section(node, "fusion", FusionNodeConfig),
            online_gate(read_section(node, "fusion", GateSettings, NODE_GATE_SETTINGS)),
            read_section(node, "fusion", ExitSettings, NODE_EXIT_SETTINGS))


def reference_frame(path: str, detector_config):
    """The stored frame with every sensor at ``path`` (ModelInputs, batch 1): the first such frame
    of that shard dataset (``scripts/write_reference_frame.py`` writes the shipped one). The node
    warms up on it, and the cost table's FLOPs and the deadline policy's stage times are measured
    on it at start-up. A missing or damaged dataset, or one without such a frame, is a one-line
    ConfigError naming ``path``. A relative path missing from the working directory is looked up
    among the shipped files (fusion_core.shipped.resolve_input)."""
    try:
        full = next((s for s in ShardSource(resolve_input(path)) if all(s.present(x) for x in DETECTION_SENSORS)), None)
    except (OSError, ValueError, KeyError) as err:  # the reader's ShardFormatError is a ValueError
        reason = " ".join(str(err).split())  # one line, whatever the reader's message holds
        raise ConfigError(f"fusion.reference_frame: {path}: not a readable reference frame ({reason})") from None
    if full is None:
        raise ConfigError(f"fusion.reference_frame: {path}: no frame with every sensor ({', '.join(DETECTION_SENSORS)})")
    return collate([full], detector_config.grid)


def sync_config_for(mapping: TopicMapping, configured: StampSyncConfig, log=None) -> StampSyncConfig:
    """The synchroniser for what ``mapping`` subscribes: roles are the mapped sensors, the pivot
    is the mapping's reference sensor (one frame per message of it, as offline), fallback pivots
    that are not mapped are left out (logged). ``configured`` gives the timing settings."""
    roles = tuple(s for s in ("lidar", "radar", "rgb", "depth", "imu") if mapping.sensor_topic(s))
    pivot = mapping.reference_sensor
    imu_role = "imu" if "imu" in roles and pivot != "imu" else ""
    fallbacks = tuple(r for r in configured.fallback_pivots if r in roles and r not in (pivot, imu_role))
    left_out = [r for r in configured.fallback_pivots if r not in fallbacks and r != pivot]
    if left_out and log is not None:
        log(f"sync: fallback pivots {', '.join(left_out)} are not in this topic mapping; left out")
    return dataclasses.replace(configured, roles=roles, pivot=pivot, imu_role=imu_role, fallback_pivots=fallbacks)


class FusionNode(Node):
    def __init__(self):
        super().__init__("fusion_node")
        declare_sections(self, PARAMETER_SECTIONS)
        self.config, self.gate_settings, self.exit_settings = read_fusion_parameters(self)
        self.publish_settings = read_section(self, "publish", DetectionFilterSettings)
        self.input_checks = read_section(self, "diagnostics", InputCheckConfig)
        sync_config = read_section(self, "sync", StampSyncConfig)
        power_config = read_section(self, "power", PowerGatingConfig)
        cfg = self.config

        self.mapping = TopicMapping.load(resolve_topic_mapping(cfg.topic_mapping))
        sync_config = sync_config_for(self.mapping, sync_config, self.get_logger().info)
        detector = load_detector(cfg.checkpoint)
        frame = reference_frame(cfg.reference_frame, detector.config)
        self.profile = load_device_profile(cfg.energy_profile)
        # warmed up before "ready": the first live frames must not pay for kernel set-up
        self.fusion = build_dynamic_fusion(detector, cfg.gates or None, self.gate_settings, self.exit_settings,
                                           self.profile, frame, frame_period_s=cfg.frame_period_s, warm_up=True)
        if self.gate_settings.price_sensors and not power_config.enabled:
            self.get_logger().warning("fusion.price_sensors without power.enabled: the gate avoids sensors that "
                                      "stay on anyway, which costs mAP and saves nothing")
        self._reference_frame = frame
        ros_io.prepare_codecs({msgtype for _topic, msgtype in subscribed_topics(self.mapping).values()}
                              | {"diagnostic_msgs/msg/DiagnosticArray", "std_msgs/msg/String"})
        calibration = self._calibration(cfg)
        power = SensorPowerManager(power_config) if power_config.enabled else None
        self.rates = InputRates(tuple(sync_config.roles), self.input_checks)
        self.pipeline = FusionPipeline(self.fusion, self.mapping, StampSynchroniser(sync_config), calibration,
                                       self.profile, cfg.frame_period_s, cfg.max_cloud_points, power, self.rates)

        self._inbox: deque[tuple[str, bytes, int]] = deque()  # (role, CDR, received [ns])
        self._inbox_lock = threading.Condition()
        self._inbox_overflow: Counter[str] = Counter()  # role -> messages evicted from a full inbox
        for role, (topic, msgtype) in self.pipeline.roles.items():
            self.create_subscription(ros_io.message_class(msgtype), topic, self._inbox_callback(role),
                                     ros_io.SENSOR_SUBSCRIPTION_QOS, raw=True)
        markers = ros_io.message_class("visualization_msgs/msg/MarkerArray")
        self.detections_pub = self.create_publisher(markers, DETECTIONS_TOPIC, ros_io.RECORD_QOS)
        self.all_detections_pub = self.create_publisher(markers, ALL_DETECTIONS_TOPIC, ros_io.RECORD_QOS)
        diagnostic_array = ros_io.message_class("diagnostic_msgs/msg/DiagnosticArray")
        self.records_pub = self.create_publisher(diagnostic_array, T.FRAME_RECORDS_TOPIC, ros_io.RECORD_QOS)
        self.diagnostics_pub = self.create_publisher(diagnostic_array, DIAGNOSTICS_TOPIC, ros_io.RELIABLE_QOS)
        self._period_lock = threading.Lock()
        self._period = _PeriodHealth()
        self._period_start_ns = self._now_ns()
        self.create_timer(self.input_checks.period_s, self._publish_diagnostics)
        string = ros_io.message_class("std_msgs/msg/String")
        self.power_pubs = {s: self.create_publisher(string, power_request_topic(s), ros_io.LATCHED_QOS)
                           for s in SENSORS} if power is not None else {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._slow_run = 0
        self._ready: list[ReadyFrame] = []  # synchronised frames waiting for the worker (its own list)
        self.frames_published = 0
        self._running = True
        self._worker = threading.Thread(target=self._work, name="fusion_worker", daemon=True)
        self._worker.start()
        roles = ", ".join(f"{r}={t}" for r, (t, _) in self.pipeline.roles.items())
        self.get_logger().info(f"fusion_node ready: gate {self.gate_settings.mode}, exit {self.exit_settings.policy}, "
                               f"profile {self.profile.name}, power gating {'on' if power else 'off'}; {roles}")

    # ------------------------------------------------------------------ set-up helpers
    def _calibration(self, cfg: FusionNodeConfig) -> StaticTfTree:
        if cfg.calibration_file:
            return load_static_tf(cfg.calibration_file)
        if not ros_io.is_supported("tf2_msgs/msg/TFMessage"):
            raise ConfigError("fusion.calibration_file: required here, because tf2_msgs is not installed and "
                              "/tf_static cannot be received (dyn-fusion up and replay write one)")
        return self._receive_tf_static()

    def _receive_tf_static(self, timeout_s: float = 5.0) -> StaticTfTree:
        """Wait for the latched /tf_static (a ROS install with tf2_msgs)."""
        tree, got = StaticTfTree(), threading.Event()

        def on_tf(raw: bytes) -> None:
            tree.add_message(ros_io.deserialize(raw, "tf2_msgs/msg/TFMessage"))
            got.set()

        sub = self.create_subscription(ros_io.message_class("tf2_msgs/msg/TFMessage"), self.mapping.tf_static_topic,
                                       on_tf, ros_io.LATCHED_QOS, raw=True)
        end = time.monotonic() + timeout_s
        while not got.is_set() and time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.1)
        self.destroy_subscription(sub)
        if not got.is_set():
            raise ConfigError(f"no {self.mapping.tf_static_topic} within {timeout_s} s; set fusion.calibration_file")
        return tree

    # ------------------------------------------------------------------ run-time settings
    def _on_set_parameters(self, params) -> SetParametersResult:
        updates = {p.name.removeprefix("fusion."): p.value for p in params if p.name.startswith("fusion.")}
        publish = {p.name.removeprefix("publish."): p.value for p in params if p.name.startswith("publish.")}
        live = {*parameter_names(GateSettings).values(), *parameter_names(ExitSettings).values()}
        fixed = sorted(set(updates) - live)
        if fixed:
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)}: only read at start-up")
        if any(not p.name.startswith(("fusion.", "publish.")) for p in params):
            return SetParametersResult(successful=False,
                                       reason="sync.*, power.* and diagnostics.* are only read at start-up")
        try:
            # the same range and choice checks as at start-up
            gate_settings = online_gate(update_section(self.gate_settings, "fusion", updates))
            exit_settings = update_section(self.exit_settings, "fusion", updates)
            publish_settings = update_section(self.publish_settings, "publish", publish)
            policy = build_exit_policy(exit_settings, self.fusion.detector, self.fusion.gates, self._reference_frame)
            self.fusion.set_settings(gate_settings)
        except (ConfigError, ValueError, TypeError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.fusion.exit_policy = policy
        self.gate_settings, self.exit_settings, self.publish_settings = gate_settings, exit_settings, publish_settings
        changed = [f"{k}={v}" for k, v in updates.items()] + [f"publish.{k}={v}" for k, v in publish.items()]
        self.get_logger().info("settings changed: " + ", ".join(changed))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ messages in
    def _inbox_callback(self, role: str):
        def enqueue(raw: bytes) -> None:
            with self._inbox_lock:
                if len(self._inbox) >= INBOX_LIMIT:
                    old_role, _, _ = self._inbox.popleft()
                    self._inbox_overflow[old_role] += 1  # the pipeline belongs to the worker thread
                self._inbox.append((role, raw, self._now_ns()))
                self._inbox_lock.notify()
        return enqueue

    def _work(self) -> None:
        while self._running:
            with self._inbox_lock:
                if not self._inbox:
                    self._inbox_lock.wait(timeout=0.05)
                batch = list(self._inbox)
                self._inbox.clear()
            for role, raw, received_ns in batch:
                self._ready += self.pipeline.accept(role, raw, received_ns)
            if not self._ready:
                continue
            if not self.config.process_every_frame and len(self._ready) > 1:
                self.pipeline.drop_frames(self._ready[:-1], "overload")
                self._ready = self._ready[-1:]
            self._run_one(self._ready.pop(0))

    def _run_one(self, frame: ReadyFrame) -> None:
        """Fuse and publish one frame; an exception costs that frame (counted), not the node."""
        try:
            outcome = self.pipeline.run(frame)
        except Exception as exc:  # a bad frame must not take the node down
            self.pipeline.drop_frames([frame], "fusion_error")
            self.get_logger().error(f"frame {frame.synced.stamp_ns}: fusion failed: {exc!r}")
            return
        self._ready += outcome.released_frames
        try:
            self._publish(outcome)
        except Exception as exc:  # keep fusing; the error is logged per frame
            self.get_logger().error(f"frame {outcome.stamp_ns}: publishing failed: {exc!r}")

    def finish(self) -> None:
        """Stop the worker after its current frame, fuse every frame still pending (the end of a
        bag or a run: nothing is left unaccounted), log a summary."""
        self._running = False
        self._worker.join()
        for role, raw, received_ns in self._drain():
            self._ready += self.pipeline.accept(role, raw, received_ns)
        self._ready += self.pipeline.flush()
        while self._ready:
            self._run_one(self._ready.pop(0))
        for pub in (self.all_detections_pub, self.detections_pub):  # the last frames reach the monitor
            pub.wait_for_all_acked(Duration(seconds=2))
        self._publish_final_counters()
        drops = ", ".join(f"{s}/{c} {n}" for (s, c), n in sorted(self._drops().items())) or "none"
        self.get_logger().info(f"fusion_node: {self.frames_published} frames published; drops: {drops}")

    def _now_ns(self) -> int:
        """The node's ROS clock [ns]: the system clock, or ``/clock`` with ``use_sim_time`` (a
        replay: the bag's time, which its header stamps are in), so latencies from a header stamp
        are measured on the clock the stamp was taken on."""
        return self.get_clock().now().nanoseconds

    def _drops(self) -> Counter[tuple[str, str]]:
        """The pipeline's drops plus the messages the inbox evicted."""
        with self._inbox_lock:
            evicted = Counter({(role, "inbox_overflow"): n for role, n in self._inbox_overflow.items()})
        return self.pipeline.drops + evicted

    def _drain(self) -> list[tuple[str, bytes, int]]:
        with self._inbox_lock:
            batch = list(self._inbox)
            self._inbox.clear()
        return batch

    # ------------------------------------------------------------------ messages out
    def _publish(self, outcome: FrameOutcome) -> None:
        published, _ = filter_detections(outcome.result.boxes, self.publish_settings)
        self.all_detections_pub.publish(boxes_to_markers_cdr(outcome.result.boxes, outcome.stamp_ns,
                                                             self.mapping.base_frame_id))
        self.detections_pub.publish(boxes_to_markers_cdr(published, outcome.stamp_ns, self.mapping.base_frame_id))
        now_ns = self._now_ns()
        stamp_ms = (now_ns - outcome.stamp_ns) / 1e6  # one clock: the system's live, the bag's in a replay
        received_ms = (now_ns - outcome.last_received_ns) / 1e6
        for command in outcome.power_commands:
            msg = ros_io.types()["std_msgs/msg/String"](data=command.state)
            self.power_pubs[command.sensor].publish(ros_io.serialize(msg, "std_msgs/msg/String"))
            self.get_logger().info(f"power: {command.sensor} -> {command.state} ({command.reason})")
        self.records_pub.publish(ros_io.serialize(self._frame_record(outcome, len(published), stamp_ms, received_ms),
                                                  "diagnostic_msgs/msg/DiagnosticArray"))
        self.frames_published += 1

    def _frame_record(self, o: FrameOutcome, n_published: int, e2e_ms: float, received_ms: float):
        """The frame's record for /fusion/frames: its frame status and its health status."""
        t = ros_io.types()
        r, s = o.result, self.fusion.settings
        frame_values = [
            ("stamp_ns", str(o.stamp_ns)), ("pivot", o.pivot), ("gate_mode", s.mode), ("k", str(s.k)),
            ("lam_per_j", repr(s.lam_per_j)), ("price_sensors", str(s.price_sensors).lower()), ("configuration", r.configuration or ""),
            ("active_experts", ",".join(r.active_experts)), ("exit_index", str(r.exit_index)),
            ("exit_confidence", f"{r.exit_confidence:.4f}"), ("missed_deadline", str(r.missed_deadline).lower()),
            ("condition_estimate", r.condition_estimate or ""), ("degraded_sensors", ",".join(r.degraded_sensors)),
            ("detections", str(len(r.boxes))), ("published", str(n_published)),
            ("inference_ms", f"{r.latency_ms:.3f}"),
            ("stamp_to_publish_ms", f"{e2e_ms:.3f}"), ("receive_to_publish_ms", f"{received_ms:.3f}"),
            *((f"energy_j:{c}", repr(j)) for c, j in sorted(o.energy.compute_j.items())),
            *((f"sensor_energy_j:{c}", repr(j)) for c, j in sorted(o.energy.sensor_j.items())),
        ]
        lost = {sensor: reason for sensor, reason in o.sample.absence.items()
                if sensor in DETECTION_SENSORS and reason not in (STANDBY, WARMING, NOT_SUBSCRIBED)}
        slow = e2e_ms > self.config.slow_frame_ms
        self._slow_run = self._slow_run + 1 if slow else 0
        level, problems = 0, []
        if lost:
            level = 1
            problems.append("lost " + ", ".join(f"{k} ({v})" for k, v in sorted(lost.items())))
        if slow:
            level = max(level, 1)
            problems.append(f"slow frame {e2e_ms:.0f} ms")
        if self._slow_run >= self.config.slow_frames_for_error:
            level = 2
            problems.append(f"{self._slow_run} slow frames in a row")
        drops = self._counter_values()
        with self._period_lock:
            self._period.add(level, "; ".join(problems))
        header = ros_io.header(o.stamp_ns, "")
        summary = f"{s.mode}: {','.join(r.active_experts) or 'none'}; exit {r.exit_index}; " \
                  f"{o.energy.compute_total_j * 1e3:.1f} mJ compute"
        absent = [(f"absent:{k}", v) for k, v in sorted(o.sample.absence.items())]
        return t["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=[
            _status(0, FRAME_STATUS, summary, frame_values),
            _status(level, HEALTH_STATUS, "; ".join(problems) or "ok", [("pivot", o.pivot), *drops, *absent]),
        ])


    def _counter_values(self) -> list[tuple[str, str]]:
        """The running counters of the health status: drops by sensor and cause, messages
        received per role and each role's topic."""
        values = [(f"drops:{sensor}:{cause}", str(n)) for (sensor, cause), n in sorted(self._drops().items())]
        values += [(f"received:{role}", str(n)) for role, n in sorted(self.pipeline.received.items())]
        return values + [(f"topic:{role}", topic) for role, (topic, _type) in sorted(self.pipeline.roles.items())]

    def _publish_final_counters(self) -> None:
        """One last health status after the last frame: messages that arrived after it (the IMU
        readings past the last scan) are counted too, so received matches what was sent."""
        final = _status(0, HEALTH_STATUS, f"stopped after {self.frames_published} frames", self._counter_values())
        array = ros_io.types()["diagnostic_msgs/msg/DiagnosticArray"](header=ros_io.header(time.time_ns(), ""), status=[final])
        self.records_pub.publish(ros_io.serialize(array, "diagnostic_msgs/msg/DiagnosticArray"))
        self.records_pub.wait_for_all_acked(Duration(seconds=2))

    def _publish_diagnostics(self) -> None:
        """``/diagnostics`` for the period that just ended (see the module doc)."""
        now_ns = self._now_ns()
        elapsed_s = max((now_ns - self._period_start_ns) / 1e9, 1e-9)
        self._period_start_ns = now_ns
        with self._period_lock:
            period, self._period = self._period, _PeriodHealth()
        inputs = self.rates.period(elapsed_s)
        drops = self._drops()
        health = _status(period.level, "fusion_node: health", period.message or "ok", [
            ("frames", str(period.frames)), ("frame_rate_hz", f"{period.frames / elapsed_s:.2f}"),
            ("warn_frames", str(period.warn_frames)), ("drops_total", str(sum(drops.values())))])
        statuses = [health] + [_status(p.level, f"fusion_node: input {p.role}", "; ".join(p.problems) or "ok", [
            ("topic", self.pipeline.roles[p.role][0] if p.role in self.pipeline.roles else ""),
            ("messages", str(p.messages)), ("rate_hz", f"{p.rate_hz:.2f}"),
            ("usual_rate_hz", "" if p.usual_rate_hz is None else f"{p.usual_rate_hz:.2f}"),
            ("stamp_age_ms_max", "" if p.stamp_age_ms_max is None else f"{p.stamp_age_ms_max:.1f}"),
            ("stamp_age_ms_min", "" if p.stamp_age_ms_min is None else f"{p.stamp_age_ms_min:.1f}")]) for p in inputs]
        array = ros_io.types()["diagnostic_msgs/msg/DiagnosticArray"](header=ros_io.header(now_ns, ""), status=statuses)
        self.diagnostics_pub.publish(ros_io.serialize(array, "diagnostic_msgs/msg/DiagnosticArray"))


@dataclass
class _PeriodHealth:
    """The frames' health over one diagnostics period."""

    level: int = 0
    message: str = ""
    frames: int = 0
    warn_frames: int = 0

    def add(self, level: int, problems: str) -> None:
        self.frames += 1
        self.warn_frames += level > 0
        if level >= self.level and problems:
            self.level, self.message = level, problems


def _status(level: int, name: str, message: str, values: list[tuple[str, str]]):
    """A rosbags DiagnosticStatus of fusion_node with ``values`` as key-value pairs."""
    t = ros_io.types()
    kv = t["diagnostic_msgs/msg/KeyValue"]
    return t["diagnostic_msgs/msg/DiagnosticStatus"](level=level, name=name, message=message, hardware_id="fusion_node",
                                                     values=[kv(key=k, value=v) for k, v in values])


def main(args=None) -> int:
    return run_node(FusionNode, "fusion_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
