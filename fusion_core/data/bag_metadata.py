"""What a rosbag2 bag's ``metadata.yaml`` declares against what its storage records (pure: no rclpy).

A rosbag2 directory describes its topics twice: in ``metadata.yaml`` (written at the end of a
recording, and easy to edit or copy between bags by hand) and in the storage file itself (the
MCAP schema and channel records, the sqlite3 ``topics`` table), written beside the very bytes
of each message. When the two name different types for a topic, or metadata.yaml leaves out a
topic the storage records, the storage is right: it is what the bytes were serialised as.
rosbags, opened on the directory, trusts metadata.yaml and then either refuses the bag (a type
hash that does not match) or silently yields no message of that topic (it pairs the metadata's
connection with the storage's only when both types agree, and knows no topic the metadata omits).

Both readers of a bag (``evaluate``'s :class:`~fusion_core.data.rosbag_source.RosbagSource` and
``replay``'s player, ``ros_nodes.bag_messages``) therefore ask :func:`metadata_mismatches`
first and, when metadata.yaml disagrees, open the storage files themselves (:func:`reader_paths`):
every message is read with the type its storage records, and each disagreement is reported in
the same words (:func:`TypeMismatch.warning`) in evaluate's ``source_warnings`` and replay's
report, so the two make the same frames and say the same thing.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import read_yaml
from fusion_core.data.bag_salvage import SalvageStopped, salvage_mcap, storage_files


@dataclass(frozen=True)
class TypeMismatch:
    """metadata.yaml declares ``topic`` as ``declared`` (None: does not list it at all); the
    storage records it as ``stored``."""

    topic: str
    declared: str | None
    stored: str

    def warning(self, path: Path) -> str:
        """The one line both readers log and report (same words, so the reports compare equal)."""
        if self.declared is None:
            return (f"{path}: metadata.yaml does not list {self.topic}, but its storage records it as "
                    f"{self.stored}; read from the storage")
        return (f"{path}: metadata.yaml declares {self.topic} as {self.declared}, but its storage records "
                f"{self.stored}; read as {self.stored} (the type its bytes were written with)")


def bag_information(path: Path) -> dict | None:
    """The ``rosbag2_bagfile_information`` mapping of the bag directory ``path``'s metadata.yaml;
    None when there is no such file or mapping. The file is parsed with the project's guarded
    reader (``config_io.read_yaml``): metadata.yaml is input like any config, and an alias bomb,
    absurd nesting or non-UTF-8 text in it is a one-line ConfigError instead of gigabytes or a
    traceback."""
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return None
    info = read_yaml(meta)
    info = info.get("rosbag2_bagfile_information") if isinstance(info, dict) else None
    return info if isinstance(info, dict) else None


def declared_types(path: Path) -> dict[str, str]:
    """topic -> type declared in a rosbag2 ``metadata.yaml``; {} when there is none or it cannot
    be read (rosbags reports a damaged metadata file itself, and a storage file given alone has
    no metadata to disagree with)."""
    info = bag_information(path)
    if info is None:
        return {}
    try:
        return {str(e["topic_metadata"]["name"]): str(e["topic_metadata"]["type"])
                for e in info.get("topics_with_message_count") or ()}
    except (KeyError, TypeError, AttributeError):
        return {}


def _mcap_types(file: Path) -> dict[str, set[str]]:
    """topic -> schema names of its channels: from the summary at the end of the file, or, for a
    file without a readable summary (cut short), from the channels met reading it front to back
    up to the damage (a channel defined after it has no message to read anyway)."""
    from mcap.reader import make_reader

    out: dict[str, set[str]] = {}
    try:
        with open(file, "rb") as f:
            summary = make_reader(f).get_summary()
    except Exception:
        summary = None
    if summary is not None:
        for ch in summary.channels.values():
            schema = summary.schemas.get(ch.schema_id)
            out.setdefault(ch.topic, set()).add(schema.name if schema is not None else "")
        return out
    try:
        for m in salvage_mcap(file):
            out.setdefault(m.topic, set()).add(m.msgtype)
    except SalvageStopped:
        pass  # the readers report the damage themselves
    return out


def _sqlite_types(file: Path) -> dict[str, set[str]]:
    """topic -> type from the sqlite3 ``topics`` table ({} when sqlite cannot read it: the
    readers report that damage themselves)."""
    out: dict[str, set[str]] = {}
    try:
        con = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            for name, msgtype in con.execute("SELECT name, type FROM topics"):
                out.setdefault(str(name), set()).add(str(msgtype))
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return out


def stored_types(path: Path) -> dict[str, set[str]]:
    """topic -> every type the storage files of bag ``path`` record for it."""
    kind, files = storage_files(Path(path))
    read = _mcap_types if kind == "mcap" else _sqlite_types
    out: dict[str, set[str]] = {}
    for file in files if kind else ():
        for topic, types in read(file).items():
            out.setdefault(topic, set()).update(types)
    return out


def metadata_mismatches(path: Path) -> list[TypeMismatch]:
    """Topics whose metadata.yaml type is none of the types the storage records for them, in
    metadata order, then topics the storage records and metadata.yaml omits (rosbags, trusting
    the metadata, would silently yield none of their messages), in name order. [] for a bag
    without metadata.yaml, a ROS 1 bag, or one that agrees. A topic metadata.yaml lists but the
    storage lacks is not a mismatch: there is nothing to read."""
    declared = declared_types(path)
    if not declared:
        return []
    stored = stored_types(path)
    wrong = [TypeMismatch(topic, msgtype, sorted(stored[topic])[0]) for topic, msgtype in declared.items()
             if topic in stored and "" not in stored[topic] and msgtype not in stored[topic]]
    omitted = [TypeMismatch(topic, None, sorted(types)[0]) for topic, types in sorted(stored.items())
               if topic not in declared and "" not in types]
    return wrong + omitted


def reader_paths(path: Path, mismatches: list[TypeMismatch] | None = None) -> list[Path]:
    """What to open rosbags' AnyReader on: the bag itself, or, when its metadata.yaml disagrees
    with its storage (``mismatches``, computed when None), the storage files alone, whose own
    records then give every topic's type (rosbags reads a lone .mcap / .db3 that way)."""
    path = Path(path)
    if mismatches is None:
        mismatches = metadata_mismatches(path)
    return storage_files(path)[1] if mismatches else [path]
