"""Copies of a rosbag2 recording for tests: the same messages (raw CDR, same log times) in
another storage, and the damage a recorder killed mid-write leaves in a sqlite3 file. One
definition for the reader, player, dataset and fault-injection tests."""
from __future__ import annotations

from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.config_io import read_yaml
from fusion_core.data.ros_types import shared_typestore


def simulated_bag(folder: Path, frames: int) -> Path:
    """A good rosbag2 of ``frames`` frames of the default scenario at ``folder``/good."""
    from sim.config import load_scenario, resolve_scenario
    from sim.session import simulate_to_path

    path = Path(folder) / "good"
    simulate_to_path(load_scenario(resolve_scenario("default")), frames, path, "bag", progress=False)
    return path


def copy_bag(src: Path, dst: Path, storage: StoragePlugin = StoragePlugin.SQLITE3) -> Path:
    """Every message of ``src`` into a new rosbag2 at ``dst`` in ``storage``, with ``src``'s
    custom data (scenario name, time origin), so a reader makes the same frames of both."""
    with AnyReader([src]) as reader, Writer(dst, version=9, storage_plugin=storage) as writer:
        info = read_yaml(src / "metadata.yaml")["rosbag2_bagfile_information"]
        for key, value in (info.get("custom_data") or {}).items():
            writer.set_custom_data(key, value)
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=shared_typestore())
                 for c in reader.connections}
        for conn, log_ns, raw in reader.messages():
            writer.write(conns[conn.id], log_ns, raw)
    return dst


def overwrite_db3_tail(bag: Path) -> Path:
    """The last third of the bag's sqlite3 file overwritten (a recorder killed while sqlite
    rewrote pages): the rows before it stay readable."""
    db = next(bag.glob("*.db3"))
    data = db.read_bytes()
    keep = len(data) * 2 // 3
    db.write_bytes(data[:keep] + b"\xff" * (len(data) - keep))
    return bag
