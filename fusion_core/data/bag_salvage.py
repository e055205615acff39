"""Reading what is left of a damaged rosbag2 storage file (pure: no rclpy).

rosbags opens an MCAP file through its summary section at the end and a sqlite3 file through
its schema, so a recording whose tail is missing or overwritten (a recorder killed mid-write, a
copy cut short) is refused as a whole although most of it is intact. These readers walk the
file from the start instead and yield every message that is complete, then raise
:class:`SalvageStopped` saying where reading stopped and why. They never return normally for a
file that rosbags refused, unless the walk reached the file's regular end.

* MCAP: records are read one by one from the magic on; a chunk is decompressed (none or zstd)
  and its records parsed; a chunk CRC that does not match stops the walk. A chunk cut short
  still gives the complete records it holds (uncompressed, or the zstd frame decoded as far as
  it goes); the record that was cut is lost. Messages of one chunk come out sorted by log time,
  chunks in file order (recorders write chunks in time order).
* sqlite3: rows of ``messages`` in insertion order (``ORDER BY id``, which reads the table's
  own B-tree and not the timestamp index that may lie in the damaged part), until sqlite
  reports the damage.

Each message is a :class:`SalvagedMessage` with its raw CDR bytes as stored. :func:`salvage`
reads every storage file of a bag in turn and ends with :class:`BagReadError`, whose text is the
one note both readers of a refused bag give (``dyn-fusion replay``'s player and ``evaluate``'s
``RosbagSource``): why rosbags refused it, how many messages were read and where reading
stopped, so the two report the same salvage in the same words.
"""
from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import yaml
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Schema

MCAP_MAGIC = b"\x89MCAP0\r\n"
_RECORD_HEAD = struct.Struct("<BQ")  # opcode, body length [bytes]
# Chunk body up to its records: start, end, uncompressed size, crc, then the compression string
_CHUNK_HEAD = struct.Struct("<QQQII")


class BagReadError(RuntimeError):
    """A bag that cannot be read, or reading that stopped early; the message says where and why."""


class SalvageStopped(Exception):
    """Reading ended at damage: ``where`` in the file (a byte offset or a row) and ``why``."""

    def __init__(self, path: Path, where: str, why: str):
        super().__init__(f"{path}: reading stopped {where}: {why}")
        self.path, self.where, self.why = path, where, why


class SalvagedMessage(NamedTuple):
    log_ns: int
    topic: str
    msgtype: str   # ROS 2 type name as stored ("sensor_msgs/msg/Imu")
    latched: bool  # the recorder was offered transient_local QoS on this topic
    data: bytes    # CDR as stored


def latched_from_qos_yaml(text: str | None) -> bool:
    """Whether a rosbag2 ``offered_qos_profiles`` YAML string offers transient_local durability
    (written as a name by recent rosbag2, as the enum value 1 by older ones)."""
    try:
        profiles = yaml.safe_load(text or "[]") or []
        return any(isinstance(p, dict) and p.get("durability") in ("transient_local", 1) for p in profiles)
    except yaml.YAMLError:
        return False


# ------------------------------------------------------------------------------------- MCAP
class _McapState:
    """Schemas and channels met so far (MCAP defines them before their first message)."""

    def __init__(self) -> None:
        self.schema_names: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str, bool]] = {}  # id -> (topic, msgtype, latched)

    def record(self, opcode: int, body: bytes) -> SalvagedMessage | None:
        """Take one record; a message comes back, definitions are remembered."""
        stream = ReadDataStream(BytesIO(body))
        if opcode == Opcode.SCHEMA:
            schema = Schema.read(stream)
            self.schema_names[schema.id] = schema.name
        elif opcode == Opcode.CHANNEL:
            ch = Channel.read(stream)
            self.channels[ch.id] = (ch.topic, self.schema_names.get(ch.schema_id, ""),
                                    latched_from_qos_yaml(ch.metadata.get("offered_qos_profiles")))
        elif opcode == Opcode.MESSAGE:
            msg = Message.read(stream, len(body))
            if msg.channel_id not in self.channels:
                raise ValueError(f"message on channel {msg.channel_id}, which was never defined")
            topic, msgtype, latched = self.channels[msg.channel_id]
            return SalvagedMessage(msg.log_time, topic, msgtype, latched, bytes(msg.data))
        return None

    def chunk_records(self, records: bytes, *, complete: bool) -> list[SalvagedMessage]:
        """Messages of a chunk's record area, sorted by log time; a partial area (``complete``
        False) ends at its last whole record, a complete one must parse to the end."""
        out, pos = [], 0
        while pos < len(records):
            if pos + _RECORD_HEAD.size > len(records):
                break
            opcode, length = _RECORD_HEAD.unpack_from(records, pos)
            end = pos + _RECORD_HEAD.size + length
            if end > len(records):
                break
            msg = self.record(opcode, records[pos + _RECORD_HEAD.size:end])
            if msg is not None:
                out.append(msg)
            pos = end
        if complete and pos != len(records):
            raise ValueError(f"chunk records end {len(records) - pos} bytes into a cut record")
        out.sort(key=lambda m: m.log_ns)
        return out


def _decompress(compression: str, data: bytes, size: int | None) -> bytes:
    """Chunk records from stored bytes; ``size`` None = partial data: decode as far as it goes."""
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        if size is None:
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    if compression == "lz4" and size is not None:
        import lz4.frame

        return lz4.frame.decompress(data)
    raise ValueError(f"cannot decode {'a partial ' if size is None else ''}{compression!r} chunk")


def _whole_chunk(state: _McapState, body: bytes) -> list[SalvagedMessage]:
    chunk = Chunk.read(ReadDataStream(BytesIO(body)))
    records = _decompress(chunk.compression, chunk.data, chunk.uncompressed_size)
    if chunk.uncompressed_crc and zlib.crc32(records) != chunk.uncompressed_crc:
        raise ValueError("chunk CRC does not match its content")
    return state.chunk_records(records, complete=True)


def _partial_chunk(state: _McapState, body: bytes) -> list[SalvagedMessage]:
    """The whole records at the start of a chunk that was cut (best effort: [] when even the
    chunk's own header is cut or its compression cannot be decoded in part)."""
    try:
        *_, n_compression = _CHUNK_HEAD.unpack_from(body, 0)
        pos = _CHUNK_HEAD.size
        compression = body[pos:pos + n_compression].decode()
        pos += n_compression + 8  # skip the records length: it is the length the file no longer has
        if pos > len(body):
            return []
        return state.chunk_records(_decompress(compression, body[pos:], None), complete=False)
    except Exception:  # cut data a parser or decoder chokes on: nothing more to save
        return []


def salvage_mcap(path: Path) -> Iterator[SalvagedMessage]:
    """Messages of an MCAP file read front to back (see module doc); raises SalvageStopped at
    damage, returns at the footer."""
    path = Path(path)
    size = path.stat().st_size
    state = _McapState()
    with open(path, "rb") as f:
        if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise SalvageStopped(path, "at byte 0", "no MCAP magic: not an MCAP file")
        while True:
            offset = f.tell()
            head = f.read(_RECORD_HEAD.size)
            if len(head) < _RECORD_HEAD.size:
                raise SalvageStopped(path, f"at byte {offset} of {size}",
                                     "the file ends without a footer (cut short)")
            opcode, length = _RECORD_HEAD.unpack(head)
            body = f.read(min(length, size - f.tell()))  # a damaged length must not allocate gigabytes
            if len(body) < length:
                if opcode == Opcode.CHUNK:
                    yield from _partial_chunk(state, body)
                raise SalvageStopped(path, f"at byte {offset} of {size}",
                                     f"record (opcode 0x{opcode:02x}) of {length} bytes is cut short after "
                                     f"{len(body)} (the file ends there)")
            if opcode == Opcode.FOOTER:
                return
            try:
                messages = _whole_chunk(state, body) if opcode == Opcode.CHUNK else [state.record(opcode, body)]
            except Exception as exc:  # whatever the parser says, the record is damaged
                raise SalvageStopped(path, f"at byte {offset} of {size}",
                                     f"damaged record (opcode 0x{opcode:02x}): {exc}") from None
            yield from (m for m in messages if m is not None)


# ------------------------------------------------------------------------------------ sqlite3
def salvage_sqlite(path: Path) -> Iterator[SalvagedMessage]:
    """Messages of a rosbag2 sqlite3 file in insertion order (see module doc); raises
    SalvageStopped at damage, returns when the table reads to its end."""
    path = Path(path)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise SalvageStopped(path, "at open", str(exc)) from None
    try:
        try:
            columns = {row[1] for row in con.execute("PRAGMA table_info(topics)")}
            qos = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
            topics = {tid: (name, msgtype, latched_from_qos_yaml(q))
                      for tid, name, msgtype, q in con.execute(f"SELECT id, name, type, {qos} FROM topics")}
        except sqlite3.Error as exc:
            raise SalvageStopped(path, "in the topics table", str(exc)) from None
        last_row = None
        try:
            for row_id, topic_id, log_ns, data in con.execute(
                    "SELECT id, topic_id, timestamp, data FROM messages ORDER BY id"):
                if topic_id not in topics:
                    raise SalvageStopped(path, f"at message row {row_id}", f"unknown topic id {topic_id}")
                topic, msgtype, latched = topics[topic_id]
                last_row = row_id
                yield SalvagedMessage(int(log_ns), topic, msgtype, latched, bytes(data))
        except sqlite3.Error as exc:
            where = "before the first message row" if last_row is None else f"after message row {last_row}"
            raise SalvageStopped(path, where, f"sqlite: {exc}") from None
    finally:
        con.close()


# ---------------------------------------------------------------------------- a whole bag
def storage_files(path: Path) -> tuple[str, list[Path]]:
    """('mcap' | 'sqlite3' | '', files) of a rosbag2 directory or a single storage file."""
    path = Path(path)
    if path.is_dir():
        for kind, pattern in (("mcap", "*.mcap"), ("sqlite3", "*.db3")):
            files = sorted(path.glob(pattern))
            if files:
                return kind, files
        return "", []
    return {".mcap": ("mcap", [path]), ".db3": ("sqlite3", [path])}.get(path.suffix, ("", []))


def salvage(path: Path, refusal: str) -> Iterator[SalvagedMessage]:
    """Every complete message of the storage files of bag ``path``, which rosbags refused
    (``refusal``: why), file by file front to back. Always ends with :class:`BagReadError`
    saying how many messages were read and where reading stopped, or that it reached the regular
    end: the bag was refused, so a reader must say it was salvaged either way."""
    path = Path(path)
    kind, files = storage_files(path)
    if not files:
        raise BagReadError(f"{path}: cannot be read ({refusal}) and has no .mcap or .db3 file to salvage")
    read = salvage_mcap if kind == "mcap" else salvage_sqlite
    count = 0
    try:
        for file in files:
            for m in read(file):
                count += 1
                yield m
    except SalvageStopped as exc:
        raise BagReadError(f"{path}: the bag is damaged ({refusal}); read {count} messages front to back, "
                           f"then {exc}") from None
    raise BagReadError(f"{path}: the bag is damaged ({refusal}); read all {count} messages front to back to "
                       f"the regular end of its storage")


def stopped_reading(path: Path, count: int, last_ns: int | None, exc: Exception) -> BagReadError:
    """The error for a bag rosbags opened but could not read to its end (``count`` messages
    read, the last at ``last_ns``; ``exc`` what the reader raised)."""
    where = "before the first message" if last_ns is None else f"after {count} messages (last log time {last_ns} ns)"
    return BagReadError(f"{path}: reading stopped {where}: {type(exc).__name__}: {exc}")
