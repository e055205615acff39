"""Raw CDR over rclpy: how every dyn_fusion node publishes and subscribes.

The nodes never build rclpy message objects for sensor data. Messages are built and read with
the same rosbags type store the bag writer and the bag reader use
(:func:`fusion_core.data.ros_types.shared_typestore`), serialised to CDR bytes, and published with
``Publisher.publish(bytes)``; subscriptions are created with ``raw=True`` and hand the callback
the CDR bytes. So one conversion path serves the simulator's bags, live topics and bag replay,
and a malformed message is a ``DecodeError`` in our code, not a crash inside rclpy.

rclpy still needs the message *class* of a topic for its type support (the DDS type name and
hash): :func:`message_class` imports it from the installed interface package. With the pip
wheels of this machine, ``tf2_msgs`` and ``vision_msgs`` are not installed, so ``/tf_static``
and ``/ground_truth/detections`` cannot be published here (:class:`UnsupportedType`); the nodes
fall back as their docs say (calibration from a file, ground truth from the marker topic).

QoS, as REP 2003 asks of sensor drivers and consumers: sensor data is *published* reliable
(``SENSOR_PUBLISHER_QOS``, keep last 5: a reliable subscriber such as ``ros2 bag record`` or a
user's node gets it live) and *subscribed* best effort (``SENSOR_SUBSCRIPTION_QOS``; a
best-effort reader matches reliable and best-effort drivers alike, and never makes a driver wait);
state and configuration topics (``/tf_static``, power requests and states) are reliable,
transient local, keep last 1, so a late joiner gets the last value; everything else is reliable,
keep last 10.
"""
from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from fusion_core.data.ros_types import shared_typestore
from ros_nodes.node_plan import dds_environment

SENSOR_QOS: QoSProfile = qos_profile_sensor_data  # best effort, keep last 5: a consumer's (and a best-effort driver's)
SENSOR_PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.VOLATILE)
# Subscribers keep more: a reader history of 5 overflows (silently, in DDS) whenever the node's
# executor is held up, which two busy cores do; 200 holds a second of 200 Hz IMU data (depth 30
# lost 19 of 1640 IMU messages in a 9 s run). Best effort either way, so any sensor driver's
# publisher still matches.
SENSOR_SUBSCRIPTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200,
                                     reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Per-frame records the energy monitor must not miss (detections, /diagnostics): a reliable
# writer with a bounded history overwrites samples a busy reader has not acknowledged yet (a
# replay at 600 frames/s lost 9 % with depth 10, 1 % with depth 1000); keep-all makes the writer
# wait for the reader instead.
RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


class UnsupportedType(RuntimeError):
    """The interface package of a message type is not installed, so rclpy cannot carry it."""


@cache
def message_class(msgtype: str) -> type:
    """The rclpy message class of ``msgtype`` (``"sensor_msgs/msg/Image"``); UnsupportedType
    (naming the package) when its interface package is not importable."""
    try:
        package, kind, name = msgtype.split("/")
    except ValueError:
        raise UnsupportedType(f"{msgtype!r}: expected a type name like 'sensor_msgs/msg/Image'") from None
    try:
        module = importlib.import_module(f"{package}.{kind}")
    except ImportError:
        raise UnsupportedType(f"{msgtype}: the interface package {package!r} is not installed, so rclpy "
                              f"cannot publish or subscribe to it here") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise UnsupportedType(f"{msgtype}: {package}.{kind} has no type {name!r}")
    return cls


def is_supported(msgtype: str) -> bool:
    """Whether rclpy can carry ``msgtype`` on this machine."""
    try:
        message_class(msgtype)
    except UnsupportedType:
        return False
    return True


def serialize(msg: Any, msgtype: str) -> bytes:
    """A rosbags message object -> CDR bytes (little endian, with the encapsulation header)."""
    return bytes(shared_typestore().serialize_cdr(msg, msgtype))


def prepare_codecs(msgtypes: Iterable[str]) -> None:
    """Generate the CDR codecs of ``msgtypes`` and of every type nested in them now. rosbags
    builds them on a type's first use, and in fusion_node that first use fell on the first live
    frame: 266 ms for sensor_msgs/Image, 40 ms each for PointCloud2 and Imu."""
    store = shared_typestore()
    pending, seen = list(msgtypes), set()
    while pending:
        msgtype = pending.pop()
        if msgtype in seen:
            continue
        seen.add(msgtype)
        store.get_msgdef(msgtype)
        for _name, (_kind, detail) in store.fielddefs[msgtype][1]:
            # a message field: 'pkg/msg/T'; a sequence or array: ((kind, 'pkg/msg/T' or a base type), n)
            nested = detail if isinstance(detail, str) else detail[0][1] if isinstance(detail[0], tuple) else None
            if isinstance(nested, str) and nested in store.fielddefs:
                pending.append(nested)


def deserialize(raw: bytes, msgtype: str) -> Any:
    """CDR bytes -> a rosbags message object. Raises whatever rosbags raises on damaged bytes;
    callers turn that into a counted ``deserialize`` drop."""
    return shared_typestore().deserialize_cdr(raw, msgtype)


def types() -> Any:
    """The message classes of the shared rosbags type store (``types()["std_msgs/msg/String"]``)."""
    return shared_typestore().types


def header(stamp_ns: int, frame_id: str):
    """A rosbags ``std_msgs/Header`` for a stamp in integer nanoseconds."""
    t = types()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                    frame_id=frame_id)


def wait_for_subscribers(publishers: Iterable, timeout_s: float, stop: threading.Event,
                         poll_s: float = 0.05) -> list[str]:
    """Wait until every publisher has matched a subscriber, at most ``timeout_s`` and only while
    ``stop`` is clear; the topics still without one (empty when all matched)."""
    publishers = list(publishers)
    end = time.monotonic() + timeout_s
    while (waiting := [p.topic_name for p in publishers if p.get_subscription_count() == 0]):
        if time.monotonic() >= end or stop.wait(min(poll_s, timeout_s)):
            return waiting
    return []


def isolated_domain_env(domain_id: int) -> dict[str, str]:
    """os.environ for a child process on its own DDS domain, discovery limited to this host
    (tests and `dyn-fusion up` runs must not hear each other or the network), with the shipped
    Fast DDS transport profile (``node_plan.dds_environment``)."""
    env = dds_environment(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env
