"""Fault injection for recorded bags: damage one thing in a good bag, run it through `dyn-fusion
evaluate` and `dyn-fusion replay`, and judge how each ended.

A mutation takes the messages of a bag (topic, type, log time, deserialised message) and changes
them, or damages the written files (truncation, metadata). Every case must end with either rc 0
and what was left out counted, or rc != 0 and a one-line error; never a traceback, and replay
must always leave a report. Where both commands read the bag, they must agree on the frames
made, on the messages dropped for bad content (decode errors, non-finite points, stamps out
of order), on where reading stopped when the storage is damaged (both salvage what precedes
the damage and report the same ``source_error``) and on what the bag says wrongly of itself (a
metadata.yaml type its storage contradicts: both read the stored type and report the same
``source_warnings``). Used by tests/ros_nodes/test_fault_injection.py (a few seeded cases in CI) and
benchmarks/fault_injection.py (every mutation over several seeds; the count goes in the README).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.data import topics as T
from fusion_core.data.ros_types import shared_typestore
from tests.bag_copies import overwrite_db3_tail

REPO = Path(__file__).resolve().parents[1]
LIDAR, RADAR, RGB, DEPTH, IMU = T.LIDAR_TOPIC, T.RADAR_TOPIC, T.RGB_IMAGE_TOPIC, T.DEPTH_IMAGE_TOPIC, T.IMU_TOPIC

Message = tuple[str, str, int, object]  # topic, type, log time [ns], message


@dataclass
class Mutation:
    name: str
    apply: Callable[[list[Message], np.random.Generator], None] | None = None  # messages, in place
    damage_files: Callable[[Path, np.random.Generator], None] | None = None    # the written bag folder
    storage: StoragePlugin = StoragePlugin.MCAP  # the storage of the damaged bag (not MCAP: the bag is rewritten)


def _pick(messages: list[Message], topic: str, rng: np.random.Generator, share: float = 0.3) -> list[int]:
    idx = [i for i, m in enumerate(messages) if m[0] == topic]
    n = max(1, round(share * len(idx)))
    return sorted(rng.choice(idx, size=min(n, len(idx)), replace=False).tolist()) if idx else []


def _cloud_fields(msg) -> dict[str, int]:
    return {f.name: int(f.offset) for f in msg.fields}


def _set_cloud_value(field_name: str, value: float, topic: str = LIDAR):
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        for i in _pick(messages, topic, rng):
            msg = messages[i][3]
            offsets = _cloud_fields(msg)
            if field_name not in offsets or msg.width * msg.height == 0:
                continue
            data = np.array(msg.data, np.uint8)
            n = msg.width * msg.height
            for p in rng.choice(n, size=max(1, n // 100), replace=False):
                start = int(p) * msg.point_step + offsets[field_name]
                data[start:start + 4] = np.frombuffer(np.float32(value).tobytes(), np.uint8)
            msg.data = data
    return apply


def _empty_cloud(topic: str):
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        for i in _pick(messages, topic, rng):
            msg = messages[i][3]
            msg.width, msg.row_step, msg.data = 0, 0, np.zeros(0, np.uint8)
    return apply


def _point_step(delta: int):
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        for i in _pick(messages, LIDAR, rng):
            messages[i][3].point_step += delta
    return apply


def _oversized_cloud(n_points: int):
    """One LiDAR scan replaced by ``n_points`` copies of its points (2 M points: 32 MB, a
    misconfigured driver's accumulated sweep): more than the fusion node's ``max_cloud_points``."""
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        (i,) = _pick(messages, LIDAR, rng, share=0.0)
        msg = messages[i][3]
        points = np.array(msg.data, np.uint8).reshape(-1, msg.point_step)
        msg.data = np.resize(points, (n_points, msg.point_step)).reshape(-1)
        msg.height, msg.width, msg.row_step = 1, n_points, n_points * msg.point_step
    return apply


def _rename_field(messages: list[Message], rng: np.random.Generator) -> None:
    for i in _pick(messages, RADAR, rng):
        for f in messages[i][3].fields:
            if f.name == "rcs":
                f.name = "rcs_dbsm"


def _encoding(topic: str, wrong: str):
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        for i in _pick(messages, topic, rng):
            messages[i][3].encoding = wrong
    return apply


def _truncate_image(messages: list[Message], rng: np.random.Generator) -> None:
    for i in _pick(messages, RGB, rng):
        msg = messages[i][3]
        msg.data = np.array(msg.data, np.uint8)[: len(msg.data) // 2]


def _imu_nan(messages: list[Message], rng: np.random.Generator) -> None:
    for i in _pick(messages, IMU, rng):
        messages[i][3].linear_acceleration.x = float("nan")


def _stamps(kind: str, topic: str = LIDAR):
    def apply(messages: list[Message], rng: np.random.Generator) -> None:
        idx = [i for i, m in enumerate(messages) if m[0] == topic]
        stamps = [(messages[i][3].header.stamp.sec, messages[i][3].header.stamp.nanosec) for i in idx]
        if kind == "reversed":
            new = stamps[::-1]
        elif kind == "duplicated":
            new = [stamps[k - (k % 2)] for k in range(len(stamps))]  # every second scan repeats the one before
        else:  # jittered: +- 20 ms
            ns = [s * 1_000_000_000 + n + int(rng.integers(-20_000_000, 20_000_000)) for s, n in stamps]
            new = [divmod(v, 1_000_000_000) for v in ns]
        for i, (sec, nsec) in zip(idx, new):
            messages[i][3].header.stamp.sec, messages[i][3].header.stamp.nanosec = int(sec), int(nsec)
    return apply


def _truncate_file(fraction: float):
    def damage(bag: Path, rng: np.random.Generator) -> None:
        mcap = next(bag.glob("*.mcap"))
        size = mcap.stat().st_size
        with open(mcap, "r+b") as f:
            f.truncate(int(size * fraction))
    return damage


def _overwrite_db3_tail(bag: Path, rng: np.random.Generator) -> None:
    overwrite_db3_tail(bag)


def _metadata(kind: str):
    def damage(bag: Path, rng: np.random.Generator) -> None:
        meta = bag / "metadata.yaml"
        info = yaml.safe_load(meta.read_text())
        topics = info["rosbag2_bagfile_information"]["topics_with_message_count"]
        for t in topics:
            if t["topic_metadata"]["name"] == LIDAR:
                if kind == "omitted":
                    topics.remove(t)
                else:
                    t["topic_metadata"]["type"] = "sensor_msgs/msg/Image"
                break
        meta.write_text(yaml.safe_dump(info))
    return damage


MUTATIONS: dict[str, Mutation] = {m.name: m for m in [
    Mutation("lidar_intensity_inf", _set_cloud_value("intensity", float("inf"))),
    Mutation("lidar_x_nan", _set_cloud_value("x", float("nan"))),
    Mutation("lidar_x_huge", _set_cloud_value("x", 1e30)),
    Mutation("radar_doppler_inf", _set_cloud_value("doppler", float("-inf"), RADAR)),
    Mutation("radar_rcs_nan", _set_cloud_value("rcs", float("nan"), RADAR)),
    Mutation("lidar_empty", _empty_cloud(LIDAR)),
    Mutation("radar_empty", _empty_cloud(RADAR)),
    Mutation("lidar_point_step_mismatch", _point_step(4)),
    Mutation("lidar_oversized", _oversized_cloud(2_000_000)),
    Mutation("radar_field_renamed", _rename_field),
    Mutation("rgb_wrong_encoding", _encoding(RGB, "mono16")),
    Mutation("depth_labelled_16UC1", _encoding(DEPTH, "16UC1")),
    Mutation("rgb_truncated", _truncate_image),
    Mutation("imu_nan", _imu_nan),
    Mutation("lidar_stamps_reversed", _stamps("reversed")),
    Mutation("lidar_stamps_duplicated", _stamps("duplicated")),
    Mutation("lidar_stamps_jittered", _stamps("jittered")),
    Mutation("bag_cut_at_50_percent", damage_files=_truncate_file(0.5)),
    Mutation("bag_cut_at_90_percent", damage_files=_truncate_file(0.9)),
    Mutation("bag_storage_emptied", damage_files=_truncate_file(0.0)),
    Mutation("db3_tail_overwritten", damage_files=_overwrite_db3_tail, storage=StoragePlugin.SQLITE3),
    Mutation("metadata_omits_lidar", damage_files=_metadata("omitted")),
    Mutation("metadata_lies_about_lidar", damage_files=_metadata("lies")),
]}


def mutate(src: Path, dst: Path, name: str, seed: int) -> Path:
    """A copy of bag ``src`` at ``dst`` with mutation ``name`` applied (seeded)."""
    mutation = MUTATIONS[name]
    rng = np.random.default_rng(seed)
    if mutation.apply is None and mutation.storage == StoragePlugin.MCAP:
        shutil.copytree(src, dst)
    else:
        store = shared_typestore()
        with AnyReader([src]) as reader:
            messages = [(c.topic, c.msgtype, t, reader.deserialize(raw, c.msgtype))
                        for c, t, raw in reader.messages()]
        if mutation.apply is not None:
            mutation.apply(messages, rng)
        with Writer(dst, version=9, storage_plugin=mutation.storage) as writer:
            conns = {}
            for topic, msgtype, _, _ in messages:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            for topic, msgtype, log_ns, msg in messages:
                writer.write(conns[topic], log_ns, store.serialize_cdr(msg, msgtype))
        _copy_custom_data(src, dst)
    if mutation.damage_files is not None:
        mutation.damage_files(dst, rng)
    return dst


def _copy_custom_data(src: Path, dst: Path) -> None:
    """The simulator's custom_data (epoch, scenario) survives the rewrite."""
    try:
        info = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, KeyError, yaml.YAMLError):
        return
    custom = info.get("custom_data")
    if not custom:
        return
    meta = dst / "metadata.yaml"
    out = yaml.safe_load(meta.read_text())
    out["rosbag2_bagfile_information"]["custom_data"] = custom
    meta.write_text(yaml.safe_dump(out))


# ----------------------------------------------------------------------------- running and judging
@dataclass
class Outcome:
    command: str
    rc: int
    output: str
    frames: int | None = None                 # frames made (evaluate) or fused (replay)
    drops: dict[str, int] = field(default_factory=dict)  # "<sensor>:<cause>" -> count
    source_error: str | None = None           # where and why reading the bag stopped early
    warnings: list[str] = field(default_factory=list)    # what the bag says wrongly of itself
    presence: dict[str, float] | None = None  # replay: share of fused frames each sensor was present in
    lost_in_transport: int = 0                # replay: messages the source sent that fusion_node never got
    problems: list[str] = field(default_factory=list)    # what breaks the rules


def _env() -> dict[str, str]:
    from tests.ros_nodes.dds import fresh_domain_id
    return {**os.environ, "ROS_DOMAIN_ID": str(fresh_domain_id()), "OMP_NUM_THREADS": "1"}


def _judge_exit(o: Outcome) -> None:
    if "Traceback" in o.output:
        o.problems.append(f"{o.command}: traceback")
    if o.rc != 0:
        errors = [line for line in o.output.splitlines() if line.startswith("dyn-fusion")]
        if not errors:
            o.problems.append(f"{o.command}: rc {o.rc} without a one-line 'dyn-fusion ...' error")


def run_evaluate(bag: Path, out: Path, checkpoint: str = "models/default.pt") -> Outcome:
    cmd = [sys.executable, "-m", "dyn_fusion.cli", "evaluate", "--checkpoint", checkpoint, "--data", str(bag),
           "--json", str(out / "eval.json"), "--no-cost"]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    o = Outcome("evaluate", p.returncode, p.stdout + p.stderr)
    if p.returncode == 0:
        report = json.loads((out / "eval.json").read_text())
        o.frames = report["exits"][-1]["all"]["n_frames"]
        o.drops = report["source_drops"]
        o.source_error = report["source_error"]
        o.warnings = report.get("source_warnings", [])  # (absent from reports of older versions)
    _judge_exit(o)
    return o


def run_replay(bag: Path, out: Path) -> Outcome:
    cmd = [sys.executable, "-m", "dyn_fusion.cli", "replay", str(bag), "--out", str(out / "replay"), "--rate", "2"]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    o = Outcome("replay", p.returncode, p.stdout + p.stderr)
    report_path = out / "replay" / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        o.frames = report["frames_fused"]
        o.drops = {k.replace(":sync:", ":"): v for k, v in report["drops"].items()}
        o.source_error = report["source_error"]
        o.warnings = report.get("source_warnings", [])  # (absent from reports of older versions)
        o.presence = report["sensor_presence"]
        o.lost_in_transport = sum(report.get("lost_in_transport", {}).values())
    elif not re.search(r"^dyn-fusion replay: .*", o.output, re.M) or p.returncode == 0:
        o.problems.append("replay: no report")
    _judge_exit(o)
    return o


# Causes both readers count the same way (content and order of messages); transport and timing
# causes (unmatched 20 Hz radar scans, late, overload) belong to the live run only.
COMPARED = re.compile(r":(decode_error:.*|nan_points|duplicate_stamp|out_of_order)$")


def agreement(evaluate: Outcome, replay: Outcome) -> list[str]:
    """Where both read the bag: the same frames, the same content drops, the same note of
    where reading stopped early (a salvaged bag) and the same warnings (lying metadata). A
    replay whose transport lost messages (counted in its report: DDS under load can drop a
    32 MB best-effort sample) fused what arrived: its frames may then be fewer, by at most the
    messages lost, and the content drops of the lost messages are not its to count."""
    if evaluate.rc != 0 or replay.frames is None:
        return []
    problems = []
    if replay.lost_in_transport:
        if not 0 <= evaluate.frames - replay.frames <= replay.lost_in_transport:
            problems.append(f"frames: evaluate {evaluate.frames}, replay {replay.frames} "
                            f"({replay.lost_in_transport} messages lost in transport)")
        return problems
    if evaluate.frames != replay.frames:
        problems.append(f"frames: evaluate {evaluate.frames}, replay {replay.frames}")
    a = {k: v for k, v in evaluate.drops.items() if COMPARED.search(k)}
    b = {k: v for k, v in replay.drops.items() if COMPARED.search(k)}
    if a != b:
        problems.append(f"drops: evaluate {a}, replay {b}")
    if evaluate.source_error != replay.source_error:
        problems.append(f"source_error: evaluate {evaluate.source_error!r}, replay {replay.source_error!r}")
    if evaluate.warnings != replay.warnings:
        problems.append(f"source_warnings: evaluate {evaluate.warnings!r}, replay {replay.warnings!r}")
    return problems
