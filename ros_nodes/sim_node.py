"""sim_node: the simulator as the vehicle's five sensors, published live over DDS.

Run::

    python -m ros_nodes.sim_node --ros-args --params-file configs/vehicle.yaml -p sim.duration_s:=5.0

Parameters: the ``sim.*`` block of ``configs/vehicle.yaml`` (:class:`SimNodeConfig`), read once at
start-up. Topics (names and types: :mod:`fusion_core.data.topics`):

* the five sensors and camera info (``ros_io.SENSOR_PUBLISHER_QOS``: reliable, REP 2003); ground-truth markers and
  detections, ``/sim/labels``, ``/odom``, ``/tf`` (``ros_io.RELIABLE_QOS``); ``/tf_static`` once
  (``ros_io.LATCHED_QOS``). A type rclpy cannot carry here (``tf2_msgs`` and ``vision_msgs``
  are not in the pip wheels) is skipped, with one warning at start;
* ``/clock`` (``rosgraph_msgs/msg/Clock``) with ``sim.publish_clock``: the scenario time of the
  message being delivered, in the stamps' time base, before each message that advances it;
* power gating (``docs/sensor_power_gating.md``): requests on ``/sensors/<sensor>/power/request``,
  states on ``/sensors/<sensor>/power/state`` (both latched ``std_msgs/msg/String``).

Pacing. Scenario time 0 is ``sim.start_delay_s`` after start-up (so subscribers are matched and
the first frames are simulated); ``epoch`` is the wall-clock time (ns) of that instant, and a
header stamp is ``epoch + scenario time``, comparable with the receivers' clocks. A message is
published when the wall clock reaches ``epoch + delivery time / rate_factor``: a reading with a
latency fault goes out at its later delivery time, as it would live. When the simulation falls
behind, messages go out as soon as they can (never dropped) and the lag is counted and logged.

After ``sim.duration_s`` scenario seconds the node logs a one-line summary and exits 0; SIGINT or
SIGTERM end it the same way. A bad parameter logs one error line and exits 2.
"""
from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions

from fusion_core.config_io import ConfigError, param
from fusion_core.data import topics as T
from fusion_core.data.topics import (
    POWER_MESSAGE_TYPE,
    power_request_topic,
    power_state_topic,
)
from fusion_core.vocabulary import POWER_REQUESTS, SENSORS
from ros_nodes import ros_io
from ros_nodes.node_main import stop_on_signals
from ros_nodes.node_params import ParamSection, declare_sections, read_section
from ros_nodes.source_counts import (
    SOURCE_COUNTS_TOPIC,
    SOURCE_COUNTS_TYPE,
    encode_source_counts,
)
from sim.live_frames import (
    FrameBatch,
    FrameProducer,
    OutgoingMessage,
    SwitchableSimulator,
    frames_for_duration,
)
from sim.sensor_power import PowerStateChange, SensorPowerSwitch
from sim.session import load_with_seed
from sim.writers.frame_messages import NS_PER_S, FrameMessageBuilder

NODE_NAME = "sim_node"
PARAM_PREFIX = "sim"
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
EXIT_OK = 0
EXIT_BAD_PARAMETER = 2
# A message published this much after its due time counts as late: below it is scheduling jitter
# (thread switches, DDS), not the simulation falling behind.
LATE_AFTER_S = 0.02
# At the end of a run, how long reliable subscribers get to acknowledge the last messages.
FINISH_TIMEOUT_S = 2.0
# Longest the pacing loop goes without serving the request subscriptions.
_SPIN_SLICE_S = 0.02
# What one executor spin costs beyond its timeout (measured ~0.4 ms); the last stretch before a
# due time is slept instead.
_SPIN_OVERHEAD_S = 0.001
_SENSOR_DATA_TOPICS = frozenset(T.SENSOR_TOPICS.values()) | frozenset(T.CAMERA_INFO_TOPICS.values())
# what a run's consumers must not miss from the first frame: the sensors and the ground truth
_AWAITED_TOPICS = _SENSOR_DATA_TOPICS | {T.GT_MARKERS_TOPIC, T.LABELS_TOPIC}


@dataclass(frozen=True)
class SimNodeConfig:
    """The ``sim.*`` parameters (``configs/vehicle.yaml``)."""

    scenario: str = param("default", "scenario name (configs/scenarios/<name>.yaml) or a YAML path")
    seed: int = param(-1, "-1: the scenario's own seed", lo=-1, hi=2**31 - 1)
    duration_s: float = param(0.0, "scenario seconds to run, then stop (0: until the road ends)", lo=0.0, hi=1e7)
    rate_factor: float = param(1.0, "playback speed against the wall clock (1.0: real time)", lo=0.0, hi=1000.0)
    publish_clock: bool = param(False, "publish /clock (scenario time) for nodes with use_sim_time")
    wait_for_subscribers_s: float = param(0.0, "first wait up to this long until every sensor and ground-truth "
                                               "topic has a subscriber (0: do not wait)", lo=0.0, hi=600.0)
    start_delay_s: float = param(1.0, "wall time from start-up to scenario time 0 (subscribers match meanwhile)",
                                 lo=0.0, hi=600.0)
    power_warmup_s: float = param(0.2, "scenario time a woken sensor withholds data before it is on", lo=0.0, hi=60.0)

    def __post_init__(self):
        if not self.rate_factor > 0:
            raise ConfigError(f"rate_factor: must be > 0, got {self.rate_factor!r}")


PARAMETER_SECTIONS = (ParamSection(PARAM_PREFIX, SimNodeConfig()),)


def topic_qos(topic: str) -> QoSProfile:
    """QoS of a published data topic: sensor data as a REP 2003 driver publishes it (reliable,
    keep last 5), /tf_static latched, the rest reliable."""
    if topic == T.TF_STATIC_TOPIC:
        return ros_io.LATCHED_QOS
    return ros_io.SENSOR_PUBLISHER_QOS if topic in _SENSOR_DATA_TOPICS else ros_io.RELIABLE_QOS


@dataclass
class RunStats:
    """What a run published, for the summary line."""

    frames: int = 0
    messages: Counter[str] = field(default_factory=Counter)   # topic -> published
    withheld: Counter[str] = field(default_factory=Counter)   # sensor -> messages not sent (standby, warming)
    late_frames: int = 0        # frames that began more than LATE_AFTER_S after their due time
    late_messages: int = 0
    max_lag_s: float = 0.0
    undelivered_at_end: int = 0  # late deliveries due after the end of the run
    bad_requests: int = 0       # request messages that could not be decoded
    interrupted: bool = False
    wall_s: float = 0.0

    def record_lag(self, lag_s: float) -> bool:
        """Count one publication ``lag_s`` after its due time; True when it is late."""
        self.max_lag_s = max(self.max_lag_s, lag_s)
        return lag_s > LATE_AFTER_S


class SimNode(Node):
    """Reads and checks the parameters and builds the scenario (ConfigError on a bad value);
    :meth:`run` then publishes it until the duration ends or ``stop`` is set."""

    def __init__(self, stop: threading.Event):
        super().__init__(NODE_NAME)
        self._stop = stop
        self._types = ros_io.types()
        self.config = self._read_parameters()
        cfg = self.config
        try:
            scenario = load_with_seed(cfg.scenario, None if cfg.seed < 0 else cfg.seed)
        except ConfigError as exc:
            raise ConfigError(f"{PARAM_PREFIX}.scenario: {exc}") from None
        self.power = SensorPowerSwitch(SENSORS, cfg.power_warmup_s)
        self._wanted_sensors = self.power.capture_sensors()  # replaced whole, read by the simulating thread
        self.simulator = SwitchableSimulator(scenario, lambda: self._wanted_sensors)
        try:
            self.n_frames = frames_for_duration(self.simulator, cfg.duration_s)
        except ConfigError as exc:
            raise ConfigError(f"{PARAM_PREFIX}.duration_s: {cfg.duration_s} s does not fit scenario "
                              f"{scenario.name!r}: {exc}") from None
        self.run_s = cfg.duration_s or self.n_frames * self.simulator.frame_period_s
        self.stats = RunStats()
        self._data_pubs = self._create_data_publishers()
        self._clock_pub = (self.create_publisher(ros_io.message_class(CLOCK_TYPE), CLOCK_TOPIC, ros_io.RELIABLE_QOS)
                           if cfg.publish_clock else None)
        string_cls = ros_io.message_class(POWER_MESSAGE_TYPE)
        self._counts_pub = self.create_publisher(ros_io.message_class(SOURCE_COUNTS_TYPE), SOURCE_COUNTS_TOPIC,
                                                 ros_io.LATCHED_QOS)
        self._state_pubs = {s: self.create_publisher(string_cls, power_state_topic(s), ros_io.LATCHED_QOS)
                            for s in SENSORS}
        for sensor in SENSORS:
            self.create_subscription(string_cls, power_request_topic(sensor), self._request_callback(sensor),
                                     ros_io.LATCHED_QOS, raw=True)
        self.add_on_set_parameters_callback(self._refuse_parameter_change)
        self._last_clock_ns = -1
        self._last_spin_ns = 0
        self.epoch_ns = 0
        self._report(self.power.initial_states(), log=False)
        self.get_logger().info(
            f"scenario {scenario.name!r} (seed {scenario.seed}, {scenario.weather.condition}): {self.n_frames} frames "
            f"= {self.run_s:g} s at rate {cfg.rate_factor:g}, starting in {cfg.start_delay_s:g} s; every sensor on, "
            f"power requests on {power_request_topic('<sensor>')}")

    # ------------------------------------------------------------------ set-up
    def _read_parameters(self) -> SimNodeConfig:
        declare_sections(self, PARAMETER_SECTIONS)
        try:
            return read_section(self, PARAM_PREFIX, SimNodeConfig)
        except ConfigError as exc:  # checks in __post_init__ name the field without its prefix
            message = str(exc)
            raise ConfigError(message if message.startswith(f"{PARAM_PREFIX}.") else f"{PARAM_PREFIX}.{message}") from None

    def _refuse_parameter_change(self, params) -> SetParametersResult:
        return SetParametersResult(successful=False, reason=f"{NODE_NAME} reads its parameters at start-up only")

    def _create_data_publishers(self) -> dict:
        pubs, unsupported = {}, []
        for topic, msgtype in T.TOPIC_TYPES.items():
            try:
                pubs[topic] = self.create_publisher(ros_io.message_class(msgtype), topic, topic_qos(topic))
            except ros_io.UnsupportedType as exc:
                unsupported.append(f"{topic} ({exc})")
        if unsupported:
            self.get_logger().warning(f"not published, rclpy cannot carry their types here: {'; '.join(unsupported)}")
        return pubs

    # ------------------------------------------------------------------ power gating
    def _request_callback(self, sensor: str):
        def on_request(raw: bytes) -> None:
            try:
                text = ros_io.deserialize(raw, POWER_MESSAGE_TYPE).data
            except Exception as exc:  # any decoding failure of outside bytes
                self.stats.bad_requests += 1
                self.get_logger().error(f"{power_request_topic(sensor)}: undecodable message ignored ({exc})",
                                        once=True)
                return
            changes = self.power.request(sensor, text)
            if text not in POWER_REQUESTS:
                if self.power.unknown_requests[text] == 1:
                    self.get_logger().warning(f"{power_request_topic(sensor)}: unknown request {text!r} ignored "
                                              f"(expected one of {', '.join(POWER_REQUESTS)}); further ones are "
                                              f"only counted")
                return
            self.get_logger().info(f"power request {sensor}: {text}")
            self._report(changes)
        return on_request

    def _report(self, changes: list[PowerStateChange], log: bool = True) -> None:
        """Publish power state changes (latched) and refresh the sensors to simulate."""
        string = self._types[POWER_MESSAGE_TYPE]
        for change in changes:
            self._state_pubs[change.sensor].publish(ros_io.serialize(string(data=change.state), POWER_MESSAGE_TYPE))
            if log:
                self.get_logger().info(f"power state {change.sensor}: {change.state}")
        self._wanted_sensors = self.power.capture_sensors()

    # ------------------------------------------------------------------ the run
    def run(self, executor: SingleThreadedExecutor) -> RunStats:
        """Publish the scenario in (scaled) real time; returns the statistics."""
        cfg = self.config
        self._wait_for_subscribers(cfg.wait_for_subscribers_s)
        delay_ns = round(cfg.start_delay_s * NS_PER_S)
        self.epoch_ns = time.time_ns() + delay_ns
        self._mono_epoch_ns = time.monotonic_ns() + delay_ns
        builder = FrameMessageBuilder(self.simulator, self.epoch_ns)
        # Stamps are epoch + scenario time: a receiver needs the epoch to recover scenario time.
        self.get_logger().info(f"scenario time 0 at epoch {self.epoch_ns} ns (Unix); header stamps are epoch + "
                               f"scenario time")
        for m in builder.static_messages():  # latched: published at once, late joiners still get it
            if m.topic in self._data_pubs:
                self._data_pubs[m.topic].publish(ros_io.serialize(m.msg, m.msgtype))
                self.stats.messages[m.topic] += 1
        producer = FrameProducer(self.simulator, builder, self.n_frames, set(self._data_pubs), ros_io.serialize,
                                 lambda: self._wanted_sensors)
        started = time.monotonic()
        producer.start()
        try:
            self._publish_frames(producer, builder, executor)
        finally:
            producer.stop()
            self.stats.interrupted = self._stop.is_set()
        self._publish_source_counts()
        if not self.stats.interrupted:
            self._wait_for_acknowledgements(FINISH_TIMEOUT_S)
        self.stats.wall_s = time.monotonic() - started
        return self.stats

    def _publish_source_counts(self) -> None:
        """What this run published, per topic (latched; see ros_nodes.source_counts)."""
        text = encode_source_counts(NODE_NAME, self.stats.messages)
        self._counts_pub.publish(ros_io.serialize(self._types[SOURCE_COUNTS_TYPE](data=text), SOURCE_COUNTS_TYPE))

    def _wait_for_subscribers(self, timeout_s: float) -> None:
        """Until every awaited topic has matched a subscriber, at most ``timeout_s`` (discovery on
        a busy machine can take longer than ``start_delay_s``; messages before it are lost)."""
        pubs = [pub for topic, pub in self._data_pubs.items() if topic in _AWAITED_TOPICS]
        waiting = ros_io.wait_for_subscribers(pubs, timeout_s, self._stop)
        if waiting and timeout_s > 0.0 and not self._stop.is_set():
            self.get_logger().warning(f"starting after {timeout_s:g} s without subscribers on {', '.join(waiting)}")

    def _wait_for_acknowledgements(self, timeout_s: float) -> None:
        """Give reliable subscribers up to ``timeout_s`` to acknowledge the last messages (the
        process is about to exit and take unsent samples with it); best effort ones need none."""
        deadline = time.monotonic() + timeout_s
        publishers = [*self._data_pubs.values(), *self._state_pubs.values(), self._counts_pub]
        publishers += [self._clock_pub] if self._clock_pub is not None else []
        for pub in publishers:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or not pub.wait_for_all_acked(Duration(nanoseconds=round(remaining_s * NS_PER_S))):
                self.get_logger().warning(f"not every subscriber acknowledged the last messages within "
                                          f"{timeout_s:g} s (first: {pub.topic_name})")
                return

    def _publish_frames(self, producer: FrameProducer, builder: FrameMessageBuilder,
                        executor: SingleThreadedExecutor) -> None:
        end_ns = builder.ns(self.run_s)
        pending: list[tuple[int, int, FrameBatch | OutgoingMessage]] = []  # heap by (due_ns, arrival)
        order = itertools.count()
        next_frame = 0
        while True:
            # Frame k's messages are all due at or after its start, so frame k is fetched only
            # once nothing due earlier is left; a late delivery of frame k-1 still goes first.
            while next_frame < self.n_frames and (
                    not pending or pending[0][0] >= builder.ns(next_frame * self.simulator.frame_period_s)):
                batch = self._next_batch(producer, executor)
                if batch is None:
                    return
                heapq.heappush(pending, (batch.frame_ns, next(order), batch))  # the frame boundary
                for m in batch.messages:
                    heapq.heappush(pending, (m.due_ns, next(order), m))
                next_frame += 1
            if not pending or pending[0][0] >= end_ns:
                break
            if not self._sleep_until(pending[0][0], executor):
                return
            due_ns, _, item = heapq.heappop(pending)
            self._deliver(item, due_ns)
        self.stats.undelivered_at_end = sum(isinstance(item, OutgoingMessage) for _, _, item in pending)
        self._sleep_until(end_ns, executor)

    def _next_batch(self, producer: FrameProducer, executor: SingleThreadedExecutor) -> FrameBatch | None:
        while not self._stop.is_set():
            batch = producer.next_batch(timeout_s=_SPIN_SLICE_S)
            if batch is not None:
                return batch
            self._spin(executor, 0.0)
        return None

    def _sleep_until(self, due_ns: int, executor: SingleThreadedExecutor) -> bool:
        """Serve the subscriptions until the wall-clock time of ``due_ns``; False when stopped."""
        target_ns = self._wall_target_ns(due_ns)
        while not self._stop.is_set():
            now_ns = time.monotonic_ns()
            remaining_s = (target_ns - now_ns) / NS_PER_S
            if remaining_s <= 0:
                # Behind or just on time: serve the subscriptions now and then, not before every
                # message (one spin costs ~0.4 ms, more than a burst of publishes).
                if now_ns - self._last_spin_ns > _SPIN_SLICE_S * NS_PER_S:
                    self._spin(executor, 0.0)
                return True
            if remaining_s > _SPIN_OVERHEAD_S:
                self._spin(executor, min(remaining_s - _SPIN_OVERHEAD_S, _SPIN_SLICE_S))
            else:
                time.sleep(remaining_s)  # the last stretch: a spin could overshoot it
        return False

    def _spin(self, executor: SingleThreadedExecutor, timeout_s: float) -> None:
        executor.spin_once(timeout_sec=timeout_s)
        self._last_spin_ns = time.monotonic_ns()

    def _wall_target_ns(self, due_ns: int) -> int:
        """Monotonic-clock time at which a message due at ``due_ns`` (stamp time base) goes out."""
        return self._mono_epoch_ns + round((due_ns - self.epoch_ns) / self.config.rate_factor)

    def _deliver(self, item: FrameBatch | OutgoingMessage, due_ns: int) -> None:
        lag_s = (time.monotonic_ns() - self._wall_target_ns(due_ns)) / NS_PER_S
        if self._clock_pub is not None and due_ns > self._last_clock_ns:
            self._publish_clock(due_ns)
        if isinstance(item, FrameBatch):
            self.stats.frames += 1
            if self.stats.record_lag(lag_s):
                self.stats.late_frames += 1
                self.get_logger().warning(f"behind real time: frame {item.index} began {lag_s * 1e3:.0f} ms late "
                                          f"({self.stats.late_frames} late frames so far)", throttle_duration_sec=5.0)
            self._report(self.power.begin_frame((item.frame_ns - self.epoch_ns) / NS_PER_S))
            return
        if item.sensor is not None:
            admitted, changes = self.power.admit(item.sensor, (item.stamp_ns - self.epoch_ns) / NS_PER_S)
            self._report(changes)
            if not admitted:
                self.stats.withheld[item.sensor] += 1
                return
        self._data_pubs[item.topic].publish(item.cdr)
        self.stats.messages[item.topic] += 1
        if self.stats.record_lag(lag_s):
            self.stats.late_messages += 1

    def _publish_clock(self, stamp_ns: int) -> None:
        t = self._types
        sec, nanosec = divmod(stamp_ns, NS_PER_S)
        clock = t[CLOCK_TYPE](clock=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec))
        self._clock_pub.publish(ros_io.serialize(clock, CLOCK_TYPE))
        self._last_clock_ns = stamp_ns
        self.stats.messages[CLOCK_TOPIC] += 1

    def summary(self) -> str:
        """One line: frames, messages per topic, lag, power gating."""
        s = self.stats
        topics = ", ".join(f"{topic} {n}" for topic, n in sorted(s.messages.items()))
        withheld = ", ".join(f"{sensor} {n}" for sensor, n in sorted(s.withheld.items())) or "none"
        unknown = sum(self.power.unknown_requests.values())
        return (f"{'interrupted' if s.interrupted else 'done'}: {s.frames}/{self.n_frames} frames in {s.wall_s:.2f} s "
                f"wall (rate {self.config.rate_factor:g}); messages: {topics}; lag: {s.late_frames} late frames, "
                f"{s.late_messages} late messages (> {LATE_AFTER_S * 1e3:.0f} ms), max {s.max_lag_s * 1e3:.1f} ms; "
                f"withheld by power state: {withheld}; unknown power requests: {unknown}, undecodable: "
                f"{s.bad_requests}; undelivered at end: {s.undelivered_at_end}")


def main(args: list[str] | None = None) -> int:
    """Console entry point (``dyn-fusion-sim-node``); returns the exit status."""
    logger = rclpy.logging.get_logger(NODE_NAME)
    # rclpy's own SIGINT handler would shut the context down under the running loop (and the
    # summary could no longer reach /rosout); a flag lets the loop finish cleanly instead.
    stop = stop_on_signals()
    # The simulating thread holds the GIL for long numpy stretches; a 1 ms switch interval (5 ms by
    # default) keeps the pacing loop's wake-ups on time.
    sys.setswitchinterval(0.001)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rcl reports bad --ros-args this way; no traceback for a typo
        logger.error(f"cannot start: {exc}")
        return EXIT_BAD_PARAMETER
    node = None
    try:
        try:
            node = SimNode(stop)
        except ConfigError as exc:
            logger.error(f"invalid parameter: {exc}")
            return EXIT_BAD_PARAMETER
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            node.run(executor)
        finally:
            node.get_logger().info(node.summary())
            executor.shutdown()
        return EXIT_OK
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
