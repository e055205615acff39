"""bag_player: a recording replayed as live topics, paced by its log times.

    python -m ros_nodes.bag_player --ros-args --params-file configs/vehicle.yaml -p player.bag:=PATH
    dyn-fusion-bag-player --ros-args -p player.bag:=PATH -p player.rate:=4.0

Plays a rosbag2 directory (MCAP or sqlite3) or a ROS 1 ``.bag``
(:class:`ros_nodes.bag_messages.BagMessages`): every message is published as raw CDR bytes on
its recorded topic, in log-time order, at ``first_wall + (log - first_log) / rate``. ROS 1
messages are converted to CDR first. With ``publish_clock`` a ``rosgraph_msgs/Clock`` carrying
the log time goes out on ``/clock`` before each message with a new log time (a ``/clock``
recorded in the bag is then left out, so there is one time source).

Start: publishers are created for every topic first; playback begins after
``wait_for_subscribers_s`` (up to that long until every publisher, or those of
``wait_for_topics``, has a subscriber, for runs whose consumers must not miss the first
messages) and then ``start_delay_s``.

QoS: ``Image``, ``PointCloud2``, ``Imu``, ``CameraInfo`` and ``LaserScan`` as a REP 2003 sensor
driver publishes them (reliable, keep last 5), a topic the recorder was offered transient_local
(``/tf_static``) latched, everything else (``/clock`` included) reliable; see :mod:`ros_nodes.ros_io`.

Topics whose type rclpy cannot carry here (``tf2_msgs``, ``vision_msgs``, custom types such as
``sick_scan/RadarScan``, ROS 1 types without a ROS 2 twin such as ``rosgraph_msgs/Log``) are not
published: each is logged once with the reason and its messages are counted as skipped, like a
message that fails to convert. The last log line is a one-line summary (published per topic,
skipped per topic and reason, bag and wall duration).

Exit codes: 0 played to the end (or stopped by SIGINT/SIGTERM), 1 reading stopped early at a
damaged part of the bag (every message before it was played; the error says where and why),
2 no such bag or bad parameters.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from fusion_core.config_io import ConfigError, param
from ros_nodes import ros_io
from ros_nodes.bag_messages import (
    SENSOR_TYPES,
    BagMessage,
    BagMessages,
    BagReadError,
    TopicInfo,
)
from ros_nodes.node_main import stop_on_signals
from ros_nodes.node_params import ParamSection, declare_sections, read_section
from ros_nodes.playback import EXIT_USAGE, PlaybackClock, PlaybackReport
from ros_nodes.source_counts import (
    SOURCE_COUNTS_TOPIC,
    SOURCE_COUNTS_TYPE,
    encode_source_counts,
)

CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
_POLL_S = 0.05  # longest sleep slice: how fast SIGINT is noticed while waiting
# Best-effort data has no acknowledgement to wait for; give the middleware's send thread this
# long to put the last samples on the wire before the participant is destroyed.
_BEST_EFFORT_LINGER_S = 0.2
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class PlayerConfig:
    """``player.*`` parameters (configs/vehicle.yaml)."""

    bag: str = param("", "rosbag2 directory (MCAP or sqlite3), .mcap/.db3 file or ROS 1 .bag file")
    rate: float = param(1.0, "playback speed against the wall clock (2.0: twice as fast)", lo=1e-3, hi=1e4)
    publish_clock: bool = param(True, "publish /clock from the bag's log times")
    wait_for_subscribers_s: float = param(0.0, "first wait up to this long until every publisher has a subscriber "
                                               "(0: do not wait)", lo=0.0, hi=600.0)
    wait_for_topics: tuple[str, ...] = param((), "the topics that wait is for, where the bag has them (empty: "
                                                 "every topic played, /clock included)")
    start_delay_s: float = param(1.0, "then wait this long so subscribers match (and see the publishers)", lo=0.0,
                                 hi=600.0)
    finish_timeout_s: float = param(2.0, "at the end, wait at most this long for reliable subscribers to "
                                         "acknowledge", lo=0.0, hi=600.0)


PARAMETER_SECTIONS = (ParamSection("player", PlayerConfig()),)


def qos_for(info: TopicInfo) -> QoSProfile:
    """Latched when the recorder was offered transient_local, a sensor driver's QoS (reliable, keep
    last 5) for sensor types, else reliable."""
    if info.latched:
        return ros_io.LATCHED_QOS
    if info.msgtype in SENSOR_TYPES:
        return ros_io.SENSOR_PUBLISHER_QOS
    return ros_io.RELIABLE_QOS


def unsupported_reason(msgtype: str) -> str | None:
    """Why rclpy cannot carry ``msgtype`` here (None when it can)."""
    try:
        ros_io.message_class(msgtype)
    except ros_io.UnsupportedType as exc:
        return str(exc)
    return None


def clock_cdr(log_ns: int) -> bytes:
    """CDR of a ``rosgraph_msgs/Clock`` at ``log_ns``."""
    types = ros_io.types()
    sec, nanosec = divmod(int(log_ns), _NS_PER_S)
    msg = types[CLOCK_TYPE](clock=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec))
    return ros_io.serialize(msg, CLOCK_TYPE)


def read_config(node: Node) -> PlayerConfig:
    """Declare and read ``player.*`` (ConfigError naming the parameter for a bad value)."""
    declare_sections(node, PARAMETER_SECTIONS)
    config = read_section(node, "player", PlayerConfig)
    if not config.bag:
        raise ConfigError("player.bag: no bag given (pass -p player.bag:=PATH)")
    return config


class BagPlayer:
    """Plays one bag on ``node``; :meth:`run` returns the report (see module doc)."""

    def __init__(self, node: Node, config: PlayerConfig, stop: threading.Event):
        self.node, self.config, self.stop = node, config, stop
        self.log = node.get_logger()
        self.report = PlaybackReport()
        self._publishers: dict[str, Publisher] = {}
        self._logged_skips: set[tuple[str, str]] = set()  # (topic, reason kind) already logged
        self._clock_pub = (node.create_publisher(ros_io.message_class(CLOCK_TYPE), CLOCK_TOPIC, ros_io.RELIABLE_QOS)
                           if config.publish_clock else None)
        self._counts_pub = node.create_publisher(ros_io.message_class(SOURCE_COUNTS_TYPE), SOURCE_COUNTS_TOPIC,
                                                 ros_io.LATCHED_QOS)

    def run(self) -> PlaybackReport:
        exclude = {CLOCK_TOPIC: "the player publishes /clock itself"} if self.config.publish_clock else {}
        with ExitStack() as stack:
            try:
                bag = stack.enter_context(BagMessages(self.config.bag, unsupported_reason, exclude))
            except BagReadError as exc:  # not readable at all (FileNotFoundError goes up: a usage error)
                self.report.read_error = str(exc)
                return self.report
            self.report.warnings = list(bag.warnings)
            for warning in bag.warnings:  # (played with the stored type; the report says so too)
                self.log.warning(warning)
            if bag.salvage_reason:
                self.log.warning(f"{self.config.bag}: rosbags cannot open it ({bag.salvage_reason}); reading the "
                                 f"storage front to back to play what is intact")
            for info in bag.topics.values():
                self._publisher(info)
            self._wait_for_subscribers(self.config.wait_for_subscribers_s)
            self._sleep(self.config.start_delay_s)
            self._play(bag)
        self._finish()
        return self.report

    def _play(self, bag: BagMessages) -> None:
        clock: PlaybackClock | None = None
        start_s = time.monotonic()
        last_clock_ns = None
        try:
            for msg in bag.messages():
                if self.stop.is_set():
                    break
                self.report.count(msg.log_ns)
                if msg.cdr is None:
                    self._skip(msg)
                    continue
                if clock is None:
                    clock = PlaybackClock(msg.log_ns, time.monotonic(), self.config.rate)
                if not self._sleep(clock.wait_s(msg.log_ns, time.monotonic())):
                    break
                pub = self._publishers.get(msg.topic) or self._publisher(bag.topics[msg.topic])
                if self._clock_pub is not None and msg.log_ns != last_clock_ns:
                    self._clock_pub.publish(clock_cdr(msg.log_ns))
                    self.report.clock_messages += 1
                    last_clock_ns = msg.log_ns
                pub.publish(msg.cdr)
                self.report.published[msg.topic] += 1
        except BagReadError as exc:
            self.report.read_error = str(exc)
        self.report.interrupted = self.stop.is_set()
        self.report.wall_duration_s = time.monotonic() - start_s

    def _publisher(self, info: TopicInfo) -> Publisher | None:
        """The topic's publisher, created on first use (None for a type rclpy cannot carry)."""
        if info.topic in self._publishers:
            return self._publishers[info.topic]
        if (info.topic == CLOCK_TOPIC and self._clock_pub is not None) or unsupported_reason(info.msgtype):
            return None
        pub = self.node.create_publisher(ros_io.message_class(info.msgtype), info.topic, qos_for(info))
        self._publishers[info.topic] = pub
        return pub

    def _skip(self, msg: BagMessage) -> None:
        self.report.skipped[(msg.topic, msg.skip_reason)] += 1
        kind = msg.skip_reason.split(":", 1)[0]
        if (msg.topic, kind) not in self._logged_skips:  # once per topic and kind, counts in the summary
            self._logged_skips.add((msg.topic, kind))
            self.log.warning(f"not publishing {msg.topic} ({msg.msgtype}): {msg.skip_reason}")

    def _wait_for_subscribers(self, timeout_s: float) -> None:
        """Until every awaited publisher has matched a subscriber, at most ``timeout_s``."""
        awaited = set(self.config.wait_for_topics)
        pubs = ([p for topic, p in self._publishers.items() if topic in awaited] if awaited
                else [p for p in (*self._publishers.values(), self._clock_pub) if p is not None])
        waiting = ros_io.wait_for_subscribers(pubs, timeout_s, self.stop, _POLL_S)
        if waiting and timeout_s > 0.0 and not self.stop.is_set():
            self.log.warning(f"starting after {timeout_s:g} s without subscribers on {', '.join(waiting)}")

    def _sleep(self, seconds: float) -> bool:
        """Sleep in short slices; False when stopped meanwhile."""
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0.0:
                return True
            time.sleep(min(left, _POLL_S))
        return False

    def _finish(self) -> None:
        """Let the last messages reach their subscribers before the process ends. (Fast DDS
        readers acknowledge on the writer's periodic heartbeat, every few seconds, so the wait
        often runs to ``finish_timeout_s`` although the data arrived long before.)"""
        text = encode_source_counts(self.node.get_name(), self.report.published, self.report.read_error,
                                    self.report.warnings)
        self._counts_pub.publish(ros_io.serialize(ros_io.types()[SOURCE_COUNTS_TYPE](data=text), SOURCE_COUNTS_TYPE))
        deadline = time.monotonic() + self.config.finish_timeout_s
        for pub in [*self._publishers.values(), self._clock_pub, self._counts_pub]:
            # only reliable readers acknowledge; waiting on a best-effort publisher just times out
            if pub is None or self.stop.is_set() or pub.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
                continue
            left = max(0.0, deadline - time.monotonic())
            pub.wait_for_all_acked(Duration(nanoseconds=round(left * _NS_PER_S)))
        if not self.stop.is_set():
            time.sleep(min(_BEST_EFFORT_LINGER_S, self.config.finish_timeout_s))


def main(args: list[str] | None = None) -> int:
    stop = stop_on_signals()  # finish the current message, print the summary, exit 0
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("bag_player")
    log = node.get_logger()
    try:
        try:
            config = read_config(node)
        except ConfigError as exc:
            log.error(f"bad parameter: {exc}")
            return EXIT_USAGE
        try:
            report = BagPlayer(node, config, stop).run()
        except FileNotFoundError as exc:
            log.error(str(exc))
            return EXIT_USAGE
        if report.read_error:
            log.error(f"reading the bag stopped early: {report.read_error}")
            log.error(report.summary())
        else:
            log.info(report.summary())
        return report.exit_code
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
