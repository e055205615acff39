"""A recording as one stream of ROS 2 CDR messages in log-time order (pure: no rclpy).

:class:`BagMessages` opens a rosbag2 directory (MCAP or sqlite3) or a ROS 1 ``.bag`` with
``rosbags.highlevel.AnyReader`` and yields every message as a :class:`BagMessage`: log time,
topic, ROS 2 type name and CDR bytes ready for ``Publisher.publish(bytes)``, or, instead of the
bytes, the reason it cannot be played. The bag player publishes the first kind and counts the
second; tests read the same stream without any ROS installation.

ROS 1 bags: rosbags already names ROS 1 types the ROS 2 way (:func:`ros2_type_name`:
``sensor_msgs/PointCloud2`` -> ``sensor_msgs/msg/PointCloud2``). The bytes are converted with
``Typestore.ros1_to_cdr`` against the bag's own definitions with the ROS 2 ``std_msgs/Header``
swapped in, which drops the ROS 1 ``seq`` field. That is only right when the ROS 1 definition has
the wire layout of the ROS 2 one, so every type is compared with the ROS 2 (Kilted) definition
first (:func:`same_wire_layout`); a type whose layout differs is skipped with that reason
instead of being published as bytes a ROS 2 subscriber would misread. The same check guards ROS 2
bags recorded with definitions other than the ones installed here. A type the reference store
does not know (a custom package) cannot be checked and is passed through.

Skip reasons, decided once per topic (``skip_reasons``) unless noted:

    excluded      the caller excluded the topic (the player replaces a recorded /clock)
    unsupported   the caller's ``unsupported_reason(msgtype)`` (rclpy cannot carry it here)
    definition    the recorded definition's wire layout differs from the ROS 2 one
    second_type   the topic already carries another type (DDS allows one type per topic)
    conversion    per message: ros1_to_cdr failed on its bytes

Damage: when AnyReader refuses a rosbag2 bag (a cut MCAP file, a db3 with a damaged tail) the
storage files are read front to back by :mod:`fusion_core.data.bag_salvage` (``salvage_reason`` says
why); the recorded definitions are not checked on that path, and order is by chunk (MCAP) or by
insertion (sqlite3), which recorders keep in time order. Whatever stops reading early (damage
found while salvaging, or an error in the middle of a bag AnyReader opened) ends the stream with
:class:`BagReadError` after every message before it was yielded. A bag that cannot be read at
all raises BagReadError when entered.

Metadata that lies: a ``metadata.yaml`` declaring a topic with another type than the storage
records (:mod:`fusion_core.data.bag_metadata`) is overruled by the storage, which is what the
bytes are: the storage files are opened alone, each topic is played (and its publisher created)
with its stored type, and ``warnings`` holds one line per such topic, the words ``evaluate``
reports too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import ConnectionExtRosbag1, QosDurability
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from fusion_core.data.bag_metadata import bag_information, metadata_mismatches, reader_paths
from fusion_core.data.bag_salvage import (
    BagReadError,
    SalvagedMessage,
    latched_from_qos_yaml,
    salvage,
    stopped_reading,
    storage_files,
)
from fusion_core.data.rosbag_source import complete_typestore, fallback_typestore

# Types published with sensor-data QoS (best effort); everything else is reliable.
SENSOR_TYPES = frozenset({
    "sensor_msgs/msg/Image", "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/Imu",
    "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/LaserScan",
})
_HEADER = "std_msgs/msg/Header"
# One-byte integers share a wire layout whatever their name: ROS 1 ``byte`` is int8, ROS 2 octet.
_ONE_BYTE = frozenset({"byte", "char", "int8", "uint8", "octet"})


def ros2_type_name(name: str) -> str:
    """ROS 2 spelling of a message type: ``sensor_msgs/PointCloud2`` -> ``sensor_msgs/msg/PointCloud2``
    (names that already have the middle part are returned unchanged)."""
    parts = name.strip("/").split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else "/".join(parts)


@dataclass(frozen=True)
class TopicInfo:
    """One recorded topic: ROS 2 type name and whether it was offered transient_local (latched)."""

    topic: str
    msgtype: str
    latched: bool


@dataclass(frozen=True)
class BagMessage:
    """One recorded message: ``cdr`` (CDR with encapsulation header) to publish, or None with
    ``skip_reason`` saying why it cannot be played (see module doc)."""

    log_ns: int            # recorder's receive time [ns since the Unix epoch]
    topic: str
    msgtype: str           # ROS 2 type name
    cdr: bytes | None
    skip_reason: str = ""


# ----------------------------------------------------------------------------- wire layout
def _field_layout(store: Typestore, desc: tuple, seen: tuple[str, ...]) -> Any:
    kind, detail = desc
    kind = getattr(kind, "name", kind)
    if kind == "BASE":
        name, bound = detail
        return ("int8" if name in _ONE_BYTE else name, bound)
    if kind == "NAME":
        return _type_layout(store, detail, seen)
    sub, count = detail  # ARRAY (fixed count) or SEQUENCE (bound)
    return (kind, count, _field_layout(store, sub, seen))


def _type_layout(store: Typestore, msgtype: str, seen: tuple[str, ...] = ()) -> tuple:
    """Nested tuple of a type's field types (names left out: only the bytes matter)."""
    if msgtype in seen:
        raise ValueError(f"recursive type {msgtype}")
    _, fields = store.fielddefs[msgtype]
    return tuple(_field_layout(store, desc, (*seen, msgtype)) for _, desc in fields)


def same_wire_layout(recorded: Typestore, reference: Typestore, msgtype: str) -> bool | None:
    """Whether ``msgtype`` serialises to the same bytes under both stores' definitions (field
    names may differ: ROS 1 ``K`` is ROS 2 ``k``); None when either store lacks a definition."""
    try:
        return _type_layout(recorded, msgtype) == _type_layout(reference, msgtype)
    except (KeyError, ValueError):
        return None


def _ros1_conversion_store(reader: AnyReader) -> Typestore:
    """The bag's ROS 1 definitions with the ROS 2 Header: ``ros1_to_cdr`` with it skips ``seq``."""
    store = get_typestore(Stores.EMPTY)
    store.register({**reader.typestore.fielddefs, _HEADER: fallback_typestore().fielddefs[_HEADER]})
    return store


def _latched(ext: Any) -> bool:
    if isinstance(ext, ConnectionExtRosbag1):
        return bool(ext.latching)
    return any(q.durability == QosDurability.TRANSIENT_LOCAL for q in getattr(ext, "offered_qos_profiles", ()))


def _metadata_topics(path: Path) -> dict[str, TopicInfo]:
    """Topics listed in a rosbag2 ``metadata.yaml`` ({} when it is missing or lists none; a file
    that is not safe YAML is a one-line ConfigError, as in ``evaluate``)."""
    info = bag_information(path) if path.is_dir() else None
    if info is None:
        return {}
    try:
        out = {}
        for entry in info.get("topics_with_message_count") or ():
            t = entry["topic_metadata"]
            qos = t.get("offered_qos_profiles")
            latched = latched_from_qos_yaml(qos if isinstance(qos, str) else yaml.safe_dump(qos or []))
            out[t["name"]] = TopicInfo(t["name"], ros2_type_name(t["type"]), latched)
        return out
    except (KeyError, TypeError, AttributeError):
        return {}


# ----------------------------------------------------------------------------- the stream
class BagMessages:
    """Context manager over one recording; iterate :meth:`messages` once.

    ``unsupported_reason(msgtype)`` says why a type cannot be played here (None = it can);
    ``exclude`` maps topics to leave out to the reason. After entering: ``topics`` (topic ->
    :class:`TopicInfo`, known up front; grows while salvaging finds more), ``skip_reasons``
    (topic -> reason, filled as topics are met), ``salvage_reason`` (why AnyReader refused the
    bag, None when it did not), ``is_ros1`` and ``warnings`` (what metadata.yaml says wrongly of
    the bag; the storage was followed). Raises FileNotFoundError for a missing path and
    :class:`BagReadError` for a bag that cannot be read at all.
    """

    def __init__(self, path: str | Path, unsupported_reason: Callable[[str], str | None] = lambda _: None,
                 exclude: Mapping[str, str] | None = None):
        self.path = Path(path)
        self._unsupported_reason = unsupported_reason
        self._exclude = dict(exclude or {})
        self.topics: dict[str, TopicInfo] = {}
        self.skip_reasons: dict[str, str] = {}
        self.salvage_reason: str | None = None
        self.warnings: list[str] = []
        self.is_ros1 = False
        self._reader: AnyReader | None = None
        self._recorded: Typestore | None = None   # definitions the bytes follow (None: unchecked)
        self._types: dict[str, str] = {}          # topic -> type it is played with

    def __enter__(self) -> Self:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such bag (a rosbag2 directory, an .mcap/.db3 file "
                                    f"or a ROS 1 .bag file)")
        mismatches = metadata_mismatches(self.path)
        self.warnings = [m.warning(self.path) for m in mismatches]
        declared = _metadata_topics(self.path)
        # Publishers are created from ``topics`` before playback, so a type metadata.yaml gets
        # wrong must be corrected here, or the stored bytes go out under the declared type and
        # no subscriber of the real type ever sees them.
        for m in mismatches:
            latched = m.topic in declared and declared[m.topic].latched
            declared[m.topic] = TopicInfo(m.topic, ros2_type_name(m.stored), latched)
        reader = AnyReader(reader_paths(self.path, mismatches), default_typestore=fallback_typestore())
        try:
            reader.open()
        except Exception as exc:  # AnyReader wraps storage errors in several types
            if not storage_files(self.path)[1]:
                raise BagReadError(f"{self.path}: cannot be read: {exc}") from None
            self.salvage_reason = f"{type(exc).__name__}: {exc}"
            self.topics = declared
            return self
        self._reader = reader
        complete_typestore(reader)
        self.is_ros1 = not reader.is2
        self._recorded = _ros1_conversion_store(reader) if self.is_ros1 else reader.typestore
        for conn in reader.connections:
            # A storage file opened alone may not carry the offered QoS (rosbags reads none from
            # a lone .db3): metadata.yaml's latching still holds, only its type was wrong.
            latched = _latched(conn.ext) or (conn.topic in declared and declared[conn.topic].latched)
            self.topics.setdefault(conn.topic, TopicInfo(conn.topic, ros2_type_name(conn.msgtype), latched))
        return self

    def __exit__(self, *exc_info) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------ reading
    def messages(self) -> Iterator[BagMessage]:
        """Every message in log-time order (see module doc for salvaged bags); raises
        BagReadError after the last readable one when reading stops early."""
        if self._reader is None:
            yield from self._salvaged()
            return
        count, last_ns = 0, None
        try:
            for conn, log_ns, raw in self._reader.messages():
                count, last_ns = count + 1, log_ns
                yield self._message(log_ns, conn.topic, ros2_type_name(conn.msgtype), raw)
        except Exception as exc:  # any storage or decompression error ends the bag here
            raise stopped_reading(self.path, count, last_ns, exc) from None

    def _salvaged(self) -> Iterator[BagMessage]:
        for m in salvage(self.path, self.salvage_reason):  # ends with BagReadError: where and why
            self._note_topic(m)
            yield self._message(m.log_ns, m.topic, ros2_type_name(m.msgtype), m.data)

    def _note_topic(self, m: SalvagedMessage) -> None:
        if m.topic not in self.topics:
            self.topics[m.topic] = TopicInfo(m.topic, ros2_type_name(m.msgtype), m.latched)

    def _message(self, log_ns: int, topic: str, msgtype: str, raw) -> BagMessage:
        reason = self._topic_reason(topic, msgtype)
        if reason:
            return BagMessage(log_ns, topic, msgtype, None, reason)
        if not self.is_ros1:
            return BagMessage(log_ns, topic, msgtype, bytes(raw))
        try:
            return BagMessage(log_ns, topic, msgtype, bytes(self._recorded.ros1_to_cdr(raw, msgtype)))
        except Exception as exc:  # rosbags raises several types for damaged bytes
            return BagMessage(log_ns, topic, msgtype, None, f"conversion: ROS 1 to CDR failed: {exc}")

    def _topic_reason(self, topic: str, msgtype: str) -> str:
        """Why ``topic`` (with ``msgtype``) is not played; '' when it is. Decided at first sight."""
        played = self._types.setdefault(topic, msgtype)
        if played != msgtype:
            return f"second_type: {topic} is already played as {played}, this connection is {msgtype}"
        if topic in self.skip_reasons:
            return self.skip_reasons[topic]
        reason = ""
        if topic in self._exclude:
            reason = f"excluded: {self._exclude[topic]}"
        elif (why := self._unsupported_reason(msgtype)) is not None:
            reason = f"unsupported: {why}"
        elif self._recorded is not None and same_wire_layout(self._recorded, fallback_typestore(), msgtype) is False:
            origin = "ROS 1" if self.is_ros1 else "recorded"
            reason = f"definition: the {origin} definition of {msgtype} has another wire layout than the ROS 2 one"
        if reason:
            self.skip_reasons[topic] = reason
        return reason


def cdr_messages(path: str | Path, unsupported_reason: Callable[[str], str | None] = lambda _: None
                 ) -> Iterator[tuple[int, str, str, bytes]]:
    """(log_ns, topic, ROS 2 type, CDR bytes) of every playable message of a bag, in log-time
    order: what the bag player publishes (BagReadError at the end when reading stops early)."""
    with BagMessages(path, unsupported_reason) as bag:
        for m in bag.messages():
            if m.cdr is not None:
                yield m.log_ns, m.topic, m.msgtype, m.cdr
