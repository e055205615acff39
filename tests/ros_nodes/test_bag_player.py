"""bag_player: recordings replayed over real DDS, and the pure reading/pacing parts beneath it.

No mocks: a small simulator bag is written with the real writer, the player runs as its own
process on an isolated domain, and a listener in this process records what arrives. Expected
bytes come from rosbags' reader (or the mcap library) directly, not from the player's code.
The real sample recordings (../shared/data/real) are used where present.

DDS pads every serialised payload to a multiple of 4 bytes, so a message arrives as the recorded
CDR plus up to 3 zero bytes (:func:`padded`).
"""
from __future__ import annotations

import re
import shutil
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Writer1
from rosbags.typesys import Stores, get_typestore

from fusion_core.data import ros_decode as rd
from ros_nodes import ros_io
from ros_nodes.bag_messages import (
    SENSOR_TYPES,
    BagMessages,
    BagReadError,
    TopicInfo,
    cdr_messages,
    ros2_type_name,
    same_wire_layout,
)
from ros_nodes.bag_player import qos_for
from ros_nodes.playback import PlaybackClock, PlaybackReport
from sim.config import LidarConfig, SensorSuiteConfig
from sim.simulator import Simulator
from sim.writers.rosbag import write_bag
from tests.bag_copies import copy_bag, overwrite_db3_tail
from tests.conftest import straight_scenario
from tests.ros_nodes.dds import REPO, Listener, fresh_domain_id, node_process

REAL = REPO.parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent: the shared sample recordings "
                                                           f"are not part of a checkout")
N_FRAMES = 8          # 0.8 s of simulated time, two MCAP chunks
CLOCK = "rosgraph_msgs/msg/Clock"
NS = 1_000_000_000
# Deep histories: a test must see every message, not the last few.
BEST_EFFORT_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5000, reliability=ReliabilityPolicy.BEST_EFFORT)
RELIABLE_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5000, reliability=ReliabilityPolicy.RELIABLE)


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory) -> Path:
    """8 frames of a straight-road scenario with a small LiDAR (8 beams) so the bag stays ~1 MB."""
    path = tmp_path_factory.mktemp("bag_player") / "sim_bag"
    config = straight_scenario(name="bag_player_test",
                               sensors=SensorSuiteConfig(lidar=LidarConfig(beams=8, azimuth_steps=256)))
    write_bag(path, Simulator(config), N_FRAMES)
    return path


def recorded(path: Path) -> list[tuple[int, str, str, bytes]]:
    """(log_ns, topic, type, raw bytes) of every message, in log-time order, read by rosbags."""
    with AnyReader([path]) as reader:
        return [(t, c.topic, c.msgtype, bytes(raw)) for c, t, raw in reader.messages()]


def padded(cdr: bytes) -> bytes:
    return cdr + b"\0" * (-len(cdr) % 4)


def player_args(bag: Path, rate: float, *extra: str) -> tuple[str, ...]:
    """Parameters for a test run: start as soon as the listener is matched, then play at ``rate``."""
    return ("--params-file", str(REPO / "configs" / "vehicle.yaml"), "-p", f"player.bag:={bag}",
            "-p", f"player.rate:={rate}", "-p", "player.wait_for_subscribers_s:=30.0",
            "-p", "player.start_delay_s:=0.3", "-p", "player.finish_timeout_s:=0.5", *extra)


def play(bag: Path, topics: dict[str, str], rate: float, log_path: Path) -> tuple[int, Listener, str]:
    """Run the player on ``bag`` with a listener on ``topics`` (+ /clock); (exit code, listener
    (closed), log text)."""
    domain = fresh_domain_id()
    topics = {**topics, "/clock": CLOCK}
    listener = Listener(domain, topics, qos_by_topic={t: BEST_EFFORT_DEEP if ty in SENSOR_TYPES else RELIABLE_DEEP
                                                      for t, ty in topics.items()})
    try:
        with node_process("ros_nodes.bag_player", domain, log_path, ros_args=player_args(bag, rate)) as proc:
            rc = proc.wait(timeout=90)
        time.sleep(0.3)  # the listener's executor hands over what already arrived
    finally:
        listener.close()
    return rc, listener, log_path.read_text()


def summary_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "bag_player: " in ln and "published" in ln]
    assert lines, f"no summary line in the player's log:\n{log}"
    return lines[-1]


# ------------------------------------------------------------------------ names, pacing, QoS
def test_ros1_type_names_map_to_ros2():
    assert ros2_type_name("sensor_msgs/PointCloud2") == "sensor_msgs/msg/PointCloud2"
    assert ros2_type_name("/sick_scan/RadarScan") == "sick_scan/msg/RadarScan"
    assert ros2_type_name("sensor_msgs/msg/Imu") == "sensor_msgs/msg/Imu"


def test_playback_clock_maps_log_time_to_wall_time_over_rate():
    clock = PlaybackClock(first_log_ns=5 * NS, start_wall_s=100.0, rate=4.0)
    assert clock.due_wall_s(5 * NS) == 100.0
    assert clock.due_wall_s(7 * NS) == pytest.approx(100.5)       # 2 s of bag at 4x
    assert clock.wait_s(7 * NS, now_wall_s=100.2) == pytest.approx(0.3)
    assert clock.wait_s(7 * NS, now_wall_s=101.0) == 0.0           # late: publish at once
    assert clock.due_wall_s(4 * NS) == 100.0                       # earlier than the first: due now
    with pytest.raises(ValueError, match="rate"):
        PlaybackClock(0, 0.0, rate=0.0)


def test_report_summary_counts_and_exit_code():
    report = PlaybackReport()
    for t in (3 * NS, 5 * NS):
        report.count(t)
    report.published.update({"/a": 2})
    report.skipped[("/tf", "unsupported: no tf2_msgs")] += 4
    assert report.exit_code == 0 and report.bag_duration_s == 2.0
    line = report.summary()
    assert "\n" not in line and "published 2 messages [/a 2]" in line and "/tf 4 (unsupported: no tf2_msgs)" in line
    report.read_error = "stopped at byte 9"
    assert report.exit_code == 1 and "error: stopped at byte 9" in report.summary()


def test_qos_latched_for_transient_local_sensor_data_for_sensors_else_reliable():
    assert qos_for(TopicInfo("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)) == ros_io.LATCHED_QOS
    assert qos_for(TopicInfo("/points", "sensor_msgs/msg/PointCloud2", latched=False)) == ros_io.SENSOR_PUBLISHER_QOS
    assert qos_for(TopicInfo("/scan", "sensor_msgs/msg/LaserScan", latched=False)) == ros_io.SENSOR_PUBLISHER_QOS
    assert qos_for(TopicInfo("/odom", "nav_msgs/msg/Odometry", latched=False)) == ros_io.RELIABLE_QOS


# ------------------------------------------------------------------------ pure: the stream
def test_stream_is_every_recorded_message_byte_exact_in_log_time_order(sim_bag):
    expected = recorded(sim_bag)
    with BagMessages(sim_bag) as bag:
        got = [(m.log_ns, m.topic, m.msgtype, m.cdr) for m in bag.messages()]
        assert bag.topics["/tf_static"].latched and not bag.topics["/tf"].latched  # offered transient_local
    assert got == expected
    assert [t for t, *_ in got] == sorted(t for t, *_ in got)


def test_unsupported_types_are_skipped_with_the_reason(sim_bag):
    def no_tf(msgtype):
        return "no tf2_msgs here" if msgtype.startswith("tf2_msgs/") else None

    with BagMessages(sim_bag, no_tf, exclude={"/odom": "not wanted"}) as bag:
        skipped = Counter((m.topic, m.skip_reason) for m in bag.messages() if m.cdr is None)
    assert skipped == {("/tf_static", "unsupported: no tf2_msgs here"): 1,
                       ("/tf", "unsupported: no tf2_msgs here"): N_FRAMES, ("/odom", "excluded: not wanted"): N_FRAMES}


def test_ros1_bag_converts_to_cdr_and_a_different_layout_is_skipped(tmp_path):
    """A ROS 1 bag written with Noetic types: PointCloud2 converts (the Header's seq dropped) and
    decodes with the ROS 2 types; visualization_msgs/Marker, whose ROS 2 definition has more
    fields, is skipped rather than published as bytes ROS 2 would misread."""
    noetic = get_typestore(Stores.ROS1_NOETIC)
    t = noetic.types
    header = t["std_msgs/msg/Header"](seq=7, stamp=t["builtin_interfaces/msg/Time"](sec=12, nanosec=5),
                                      frame_id="lidar")
    points = np.array([[1.0, 2.0, 3.0, 9.0], [4.0, 5.0, 6.0, 8.0]], np.float32)
    fields = [t["sensor_msgs/msg/PointField"](name=n, offset=4 * k, datatype=7, count=1)
              for k, n in enumerate(("x", "y", "z", "intensity"))]
    cloud = t["sensor_msgs/msg/PointCloud2"](header=header, height=1, width=2, fields=fields, is_bigendian=False,
                                             point_step=16, row_step=32, data=points.view(np.uint8).reshape(-1),
                                             is_dense=True)
    path = tmp_path / "noetic.bag"
    with Writer1(path) as writer:
        conn = writer.add_connection("/points", "sensor_msgs/msg/PointCloud2", typestore=noetic)
        marker_conn = writer.add_connection("/marker", "visualization_msgs/msg/Marker", typestore=noetic)
        writer.write(conn, 12 * NS, noetic.serialize_ros1(cloud, "sensor_msgs/msg/PointCloud2"))
        writer.write(marker_conn, 13 * NS, noetic.serialize_ros1(ros1_marker(noetic, header),
                                                                 "visualization_msgs/msg/Marker"))
    with BagMessages(path) as bag:
        assert bag.is_ros1
        out = list(bag.messages())
    assert [m.topic for m in out] == ["/points", "/marker"]
    assert out[1].cdr is None and out[1].skip_reason.startswith("definition: the ROS 1 definition of "
                                                                "visualization_msgs/msg/Marker")
    msg = ros_io.deserialize(out[0].cdr, "sensor_msgs/msg/PointCloud2")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 5, "lidar")
    np.testing.assert_array_equal(rd.decode_cloud(msg, ("x", "y", "z", "intensity"))[0], points)
    kilted = get_typestore(Stores.ROS2_KILTED)
    assert same_wire_layout(noetic, kilted, "sensor_msgs/msg/PointCloud2") is False  # the ROS 1 Header has seq
    assert same_wire_layout(kilted, kilted, "sick_scan/msg/RadarScan") is None       # unknown: cannot tell


def ros1_marker(store, header):
    """A ROS 1 visualization_msgs/Marker (ROS 2 added texture and mesh_file fields after it)."""
    t = store.types
    vec, quat = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"]
    return t["visualization_msgs/msg/Marker"](header=header, ns="n", id=1, type=1, action=0,
                      pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](0.0, 0.0, 0.0),
                                                       orientation=quat(0.0, 0.0, 0.0, 1.0)),
                      scale=vec(1.0, 1.0, 1.0), color=t["std_msgs/msg/ColorRGBA"](1.0, 0.0, 0.0, 1.0),
                      lifetime=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0), frame_locked=False,
                      points=[], colors=[], text="", mesh_resource="", mesh_use_embedded_materials=False)


def cut_in_second_chunk(src: Path, dst: Path) -> int:
    """Copy of a rosbag2 MCAP bag whose file ends in the middle of its second chunk; returns the
    log time [ns] up to which every message lies in a chunk that is still whole."""
    shutil.copytree(src, dst)
    mcap = next(dst.glob("*.mcap"))
    with open(mcap, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) >= 2, "the test bag needs two chunks"
    cut = chunks[1].chunk_start_offset + chunks[1].chunk_length // 2
    mcap.write_bytes(mcap.read_bytes()[:cut])
    return chunks[0].message_end_time


def test_truncated_mcap_yields_the_intact_messages_then_says_where_it_stopped(sim_bag, tmp_path):
    whole_until_ns = cut_in_second_chunk(sim_bag, tmp_path / "cut")
    full = recorded(sim_bag)
    with BagMessages(tmp_path / "cut") as bag:
        assert "File end magic" in bag.salvage_reason
        got = []
        with pytest.raises(BagReadError, match=r"reading stopped at byte \d+ of \d+: .*cut short"):
            for m in bag.messages():
                got.append((m.log_ns, m.topic, m.msgtype, m.cdr))
    assert all(m in full for m in got)
    assert {m for m in full if m[0] <= whole_until_ns} <= set(got)   # the whole first chunk
    assert len(full) > len(got) > sum(m[0] <= whole_until_ns for m in full)  # and part of the cut one


def test_db3_with_a_damaged_tail_yields_the_rows_before_the_damage(sim_bag, tmp_path):
    db_bag = tmp_path / "sqlite_bag"
    overwrite_db3_tail(copy_bag(sim_bag, db_bag))
    full = recorded(sim_bag)
    got = []
    with pytest.raises(BagReadError, match=r"reading stopped after message row \d+: sqlite: .*malformed"):
        got.extend(cdr_messages(db_bag))  # extend keeps what the generator gave before it raised
    assert 0 < len(got) < len(full)
    assert got == full[:len(got)]  # insertion order is the recorder's log-time order


# ------------------------------------------------------------------------ over DDS
def test_player_publishes_every_supported_message_byte_exact_with_clock(sim_bag, tmp_path):
    full = recorded(sim_bag)
    supported = {topic: ty for _, topic, ty, _ in full if ros_io.is_supported(ty)}
    unsupported = Counter(topic for _, topic, ty, _ in full if topic not in supported)
    assert set(unsupported) == {"/tf_static", "/tf", "/ground_truth/detections"}  # tf2_msgs, vision_msgs
    rate = 2.0
    rc, listener, log = play(sim_bag, supported, rate, tmp_path / "player.log")
    assert rc == 0, log
    for topic in supported:
        got = [raw for _, raw in listener.messages[topic]]
        assert got == [padded(raw) for _, t, _, raw in full if t == topic], f"{topic}\n{log}"
    # /clock: the log time of each published message, once per distinct value, in order
    log_times = [t for t, topic, _, _ in full if topic in supported]
    expected_clock = [t for k, t in enumerate(log_times) if k == 0 or t != log_times[k - 1]]
    clock_msgs = [(rx, ros_io.deserialize(raw, CLOCK).clock) for rx, raw in listener.messages["/clock"]]
    assert [c.sec * NS + c.nanosec for _, c in clock_msgs] == expected_clock
    # paced: the clock messages cannot arrive faster than the bag's span over the rate
    rx_span_s = clock_msgs[-1][0] - clock_msgs[0][0]
    assert rx_span_s >= 0.8 * (expected_clock[-1] - expected_clock[0]) / NS / rate
    line = summary_line(log)
    assert f"played to the end: published {sum(1 for _, t, _, _ in full if t in supported)} messages" in line
    for topic, n in unsupported.items():
        assert re.search(rf"{re.escape(topic)} {n} \(unsupported: (tf2_msgs|vision_msgs)/msg/\w+: the interface "
                         rf"package", line), line
    assert log.count("not publishing /tf (") == 1  # logged once per topic, counted in the summary


@needs_real
def test_ros1_real_bag_clouds_arrive_decodable(tmp_path):
    ros1 = REAL / "sick_radar_lidar_ros1.bag"
    # the MCAP beside it is an independent ROS 1 -> ROS 2 conversion of the same recording
    converted = defaultdict(list)
    for _, topic, _, raw in recorded(REAL / "sick_radar_lidar_mcap"):
        converted[topic].append(raw)
    topics = {"/cloud": "sensor_msgs/msg/PointCloud2", "/cloud_radar_rawtarget": "sensor_msgs/msg/PointCloud2",
              "/cloud_radar_track": "sensor_msgs/msg/PointCloud2", "/sick_lms_1xx/scan": "sensor_msgs/msg/LaserScan",
              "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}
    rc, listener, log = play(ros1, topics, 8.0, tmp_path / "player.log")
    assert rc == 0, log
    counts = {t: listener.count(t) for t in topics}
    assert counts == {"/cloud": 89, "/cloud_radar_rawtarget": 139, "/cloud_radar_track": 108,
                      "/sick_lms_1xx/scan": 89, "/diagnostics": 3}, log  # /diagnostics: two connections
    for topic in ("/cloud", "/cloud_radar_rawtarget", "/cloud_radar_track", "/sick_lms_1xx/scan"):
        assert [raw for _, raw in listener.messages[topic]] == [padded(r) for r in converted[topic]], topic
    radar = [ros_io.deserialize(raw, "sensor_msgs/msg/PointCloud2") for _, raw in listener.messages["/cloud_radar_rawtarget"]]
    points = np.concatenate([rd.decode_cloud(m, ("x", "y", "z", "vrad", "amplitude"))[0] for m in radar])
    assert radar[0].header.frame_id == "radar" and points.shape[1] == 5
    assert np.all(points[:, 1:3] == 0.0) and points[:, 0].max() > 9.0  # range-Doppler radar: targets on the x axis
    lidar = ros_io.deserialize(listener.messages["/cloud"][0][1], "sensor_msgs/msg/PointCloud2")
    assert rd.decode_cloud(lidar, ("x", "y", "z", "intensity"))[0].shape == (541, 4)
    line = summary_line(log)
    assert "/radar 34 (unsupported: sick_scan/msg/RadarScan" in line and "/tf 17 (unsupported" in line
    assert "/rosout 35 (unsupported: rosgraph_msgs/msg/Log" in line  # a ROS 1 type with no ROS 2 twin


def test_truncated_bag_plays_what_is_intact_and_exits_non_zero(sim_bag, tmp_path):
    whole_until_ns = cut_in_second_chunk(sim_bag, tmp_path / "cut")
    full = recorded(sim_bag)
    supported = {topic: ty for _, topic, ty, _ in full if ros_io.is_supported(ty)}
    rc, listener, log = play(tmp_path / "cut", supported, 4.0, tmp_path / "player.log")
    assert rc == 1, log
    assert re.search(r"reading the bag stopped early: .*the bag is damaged .*reading stopped at byte \d+ of \d+", log)
    n_published = 0
    for topic in supported:
        got = [raw for _, raw in listener.messages[topic]]
        expected = [padded(raw) for t, tp, _, raw in full if tp == topic]
        assert got == expected[:len(got)], topic   # a prefix of the topic, byte for byte
        assert len(got) >= sum(1 for t, tp, _, _ in full if tp == topic and t <= whole_until_ns), topic
        n_published += len(got)
    assert f"reading stopped early: published {n_published} messages" in summary_line(log)


def test_missing_bag_is_a_clear_error_with_exit_code_2(tmp_path):
    log_path = tmp_path / "player.log"
    with node_process("ros_nodes.bag_player", fresh_domain_id(), log_path,
                      ros_args=("-p", f"player.bag:={tmp_path / 'nothing_here'}")) as proc:
        rc = proc.wait(timeout=60)
    assert rc == 2
    assert f"{tmp_path / 'nothing_here'}: no such bag" in log_path.read_text()


def test_sigint_stops_playback_cleanly_with_a_summary(sim_bag, tmp_path):
    log_path = tmp_path / "player.log"
    with node_process("ros_nodes.bag_player", fresh_domain_id(), log_path,
                      ros_args=("-p", f"player.bag:={sim_bag}", "-p", "player.rate:=0.01",
                                "-p", "player.start_delay_s:=0.0")) as proc:
        end = time.monotonic() + 30
        while "not publishing /tf_static" not in log_path.read_text() and time.monotonic() < end:
            time.sleep(0.05)  # the first message (/tf_static) has been read: playback is under way
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
    log = log_path.read_text()
    assert rc == 0, log
    assert "bag_player: interrupted: published" in log
