"""sim_node over real DDS: a node process on its own domain, a listener in the test process.

A tiny scenario (small images, an 8-beam LiDAR) keeps the simulation well ahead of real time
on two CPU cores, so pacing, stamps and power gating are checked against the wall clock."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from fusion_core.data import topics as T
from fusion_core.data.topics import (
    POWER_MESSAGE_TYPE,
    power_request_topic,
    power_state_topic,
)
from fusion_core.vocabulary import SENSORS
from ros_nodes import ros_io
from ros_nodes.sim_node import CLOCK_TOPIC, CLOCK_TYPE, SimNodeConfig
from tests.ros_nodes.dds import REPO, Listener, fresh_domain_id, node_process

MODULE = "ros_nodes.sim_node"
PARAMS_FILE = str(REPO / "configs" / "vehicle.yaml")
FRAME_PERIOD_S = 0.1
DURATION_S = 2.5
RADAR_LATE_FROM_S, RADAR_LATE_TO_S, RADAR_LATENCY_S = 1.0, 2.0, 0.3
DISCOVERY_TIMEOUT_S = 20.0
# Wall time the clean run gives DDS discovery before scenario time 0. On a loaded machine matching
# can still take longer, so the checks below allow the first frames to be missed.
CLEAN_RUN_START_DELAY_S = 2.5
MAY_MISS_FIRST_FRAMES = 5
WARMUP_S = 0.5  # the power test's sensor warm-up: long enough to tell from "no warm-up"
N_FRAMES = round(DURATION_S / FRAME_PERIOD_S)
PERIOD_NS = round(FRAME_PERIOD_S * 1e9)
RELIABLE_TOPICS = (T.ODOM_TOPIC, T.GT_MARKERS_TOPIC, T.LABELS_TOPIC, CLOCK_TOPIC)
RELIABLE_SENSOR_TOPICS = (T.LIDAR_TOPIC, T.IMU_TOPIC)
# The listener's reliable subscriptions keep a long history, so a busy test process loses nothing.
RELIABLE_DEEP_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)
TINY_SCENARIO = {
    "name": "tiny", "seed": 3, "frame_rate_hz": 1 / FRAME_PERIOD_S,
    "road": {"segments": [{"length_m": 1500.0}]},
    "traffic": {"cars_per_100m": 2.0, "parked_cars_per_100m": 1.0, "pedestrians_per_100m": 2.0,
                "cyclists_per_100m": 1.0, "buildings_per_100m": 1.0, "poles_per_100m": 1.0},
    "sensors": {"rgb": {"width_px": 64, "height_px": 40}, "depth": {"width_px": 48, "height_px": 32},
                "lidar": {"beams": 8, "azimuth_steps": 256}, "radar": {"probe_rays": [2, 60]},
                "imu": {"rate_hz": 100.0}},
    "faults": [{"sensor": "radar", "kind": "latency", "start_s": RADAR_LATE_FROM_S, "end_s": RADAR_LATE_TO_S,
                "latency_ms": RADAR_LATENCY_S * 1e3, "jitter_ms": 0.0}],
}
SUPPORTED = {topic: msgtype for topic, msgtype in T.TOPIC_TYPES.items() if ros_io.is_supported(msgtype)}


def stamp_ns(header) -> int:
    """Stamp of a header (or time of a Clock message) in integer ns."""
    time_msg = getattr(header, "stamp", None) or header.clock
    return time_msg.sec * 1_000_000_000 + time_msg.nanosec


def stamp_s(header) -> float:
    """Stamp as Unix seconds (float: ~0.2 us resolution, enough against the wall clock)."""
    return stamp_ns(header) * 1e-9


def ros_args(scenario: Path | str, **params) -> tuple[str, ...]:
    """--ros-args of a run: the vehicle parameters file, then ``sim.<name>:=value`` overrides."""
    args = ["--params-file", PARAMS_FILE, "-p", f"sim.scenario:={scenario}"]
    for name, value in params.items():
        args += ["-p", f"sim.{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return tuple(args)


def logged_epoch_ns(log: str) -> int:
    """The node's epoch (Unix ns of scenario time 0), from its start-up log line."""
    (epoch,) = re.findall(r"epoch (\d+) ns", log)
    return int(epoch)


def wall_offset_s() -> float:
    """time.time() - time.monotonic(): turns the listener's receive times into wall-clock times."""
    return time.time() - time.monotonic()


def decoded(listener: Listener, topic: str, msgtype: str) -> list[tuple[float, object]]:
    """(receive wall time, message) of every message received on ``topic``."""
    offset = wall_offset_s()
    with listener._lock:
        raw = list(listener.messages[topic])
    return [(t + offset, ros_io.deserialize(data, msgtype)) for t, data in raw]


def states(listener: Listener, sensor: str) -> list[str]:
    return [m.data for _, m in decoded(listener, power_state_topic(sensor), POWER_MESSAGE_TYPE)]


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SCENARIO))
    return path


def listen(domain_id: int) -> Listener:
    topics = dict(SUPPORTED)
    topics[CLOCK_TOPIC] = CLOCK_TYPE
    topics.update({power_state_topic(s): POWER_MESSAGE_TYPE for s in SENSORS})
    qos = {topic: RELIABLE_DEEP_QOS for topic in RELIABLE_TOPICS}
    qos.update({power_state_topic(s): ros_io.LATCHED_QOS for s in SENSORS})
    qos[T.TF_STATIC_TOPIC] = ros_io.LATCHED_QOS  # sent once at start-up, maybe before discovery ends
    # reliable consumers of sensor data (ros2 bag record, a user's node): REP 2003 drivers publish
    # reliable, so they match (a best-effort publisher would give them nothing)
    qos.update({topic: RELIABLE_DEEP_QOS for topic in RELIABLE_SENSOR_TOPICS})
    return Listener(domain_id, topics, qos_by_topic=qos)


@pytest.fixture(scope="module")
def clean_run(tiny_scenario, tmp_path_factory):
    """A whole 2.5 s run with /clock; returns (exit status, log text, listener)."""
    domain = fresh_domain_id()
    log_path = tmp_path_factory.mktemp("logs") / "sim_node.log"
    listener = listen(domain)
    try:
        args = ros_args(tiny_scenario, duration_s=DURATION_S, publish_clock=True,
                        start_delay_s=CLEAN_RUN_START_DELAY_S)
        with node_process(MODULE, domain, log_path, args) as proc:
            returncode = proc.wait(timeout=60)
        yield returncode, log_path.read_text(), listener
    finally:
        listener.close()


# ---------------------------------------------------------------------------------- a clean run
def test_run_ends_after_the_duration_with_a_summary(clean_run):
    returncode, log, _ = clean_run
    assert returncode == 0, log
    assert "Traceback" not in log
    (summary,) = [line for line in log.splitlines() if "done:" in line]
    assert f"done: {N_FRAMES}/{N_FRAMES} frames" in summary
    assert f"{T.LIDAR_TOPIC} {N_FRAMES}" in summary and f"{T.ODOM_TOPIC} {N_FRAMES}" in summary
    assert "lag:" in summary and "withheld by power state: none" in summary


def test_every_supported_topic_arrives_and_the_others_are_named_once(clean_run):
    _, log, listener = clean_run
    for topic, msgtype in SUPPORTED.items():
        got = decoded(listener, topic, msgtype)
        assert got, f"nothing received on {topic}"
    unsupported = set(T.TOPIC_TYPES) - set(SUPPORTED)
    warnings = [line for line in log.splitlines() if "not published" in line]
    if unsupported:
        assert len(warnings) == 1 and all(topic in warnings[0] for topic in unsupported)
    # Reliable: once matched, every frame up to the last one.
    epoch_ns = logged_epoch_ns(log)
    frame_stamps = [epoch_ns + round(k * FRAME_PERIOD_S * 1e9) for k in range(N_FRAMES)]
    for topic, msgtype in ((T.ODOM_TOPIC, T.ODOMETRY_TYPE), (T.LABELS_TOPIC, T.DIAGNOSTIC_ARRAY_TYPE)):
        stamps = [stamp_ns(m.header) for _, m in decoded(listener, topic, msgtype)]
        assert stamps == frame_stamps[-len(stamps):] and len(stamps) >= N_FRAMES - MAY_MISS_FIRST_FRAMES, topic
    # the reliable sensor subscriptions got every LiDAR scan after the first frames
    assert len(decoded(listener, T.LIDAR_TOPIC, SUPPORTED[T.LIDAR_TOPIC])) >= N_FRAMES - MAY_MISS_FIRST_FRAMES
    markers = decoded(listener, T.GT_MARKERS_TOPIC, T.MARKER_ARRAY_TYPE)
    assert [stamp_ns(m.markers[0].header) for _, m in markers] == frame_stamps[-len(markers):]


def test_sensor_messages_decode_with_the_scenarios_layout(clean_run):
    _, _, listener = clean_run
    sensors = TINY_SCENARIO["sensors"]
    for image_topic, info_topic, sensor, encoding, bytes_per_px in (
            (T.RGB_IMAGE_TOPIC, T.RGB_INFO_TOPIC, "rgb", "rgb8", 3),
            (T.DEPTH_IMAGE_TOPIC, T.DEPTH_INFO_TOPIC, "depth", "32FC1", 4)):
        size = (sensors[sensor]["width_px"], sensors[sensor]["height_px"])
        for _, img in decoded(listener, image_topic, T.IMAGE_TYPE):
            assert (img.width, img.height, img.encoding) == (*size, encoding)
            assert len(img.data) == img.step * img.height == size[0] * size[1] * bytes_per_px
        for _, info in decoded(listener, info_topic, T.CAMERA_INFO_TYPE):
            assert (info.width, info.height, info.distortion_model) == (*size, "plumb_bob")
    for _, cloud in decoded(listener, T.LIDAR_TOPIC, T.POINT_CLOUD2_TYPE):
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == list(T.LIDAR_POINT_FIELDS)
        points = np.frombuffer(cloud.data.tobytes(), T.LIDAR_POINT_DTYPE)
        assert len(points) == cloud.width > 100 and set(np.unique(points["ring"])) <= set(range(8))
    for _, cloud in decoded(listener, T.RADAR_TOPIC, T.POINT_CLOUD2_TYPE):
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == list(T.RADAR_POINT_FIELDS)
        assert cloud.point_step == 20 and len(cloud.data) == 20 * cloud.width
    for _, imu in decoded(listener, T.IMU_TOPIC, T.IMU_TYPE):
        assert imu.orientation_covariance[0] == -1.0 and 5.0 < imu.linear_acceleration.z < 15.0


def test_stamps_step_by_the_frame_period_and_match_the_wall_clock(clean_run):
    _, log, listener = clean_run
    epoch_ns = logged_epoch_ns(log)
    odom = decoded(listener, T.ODOM_TOPIC, T.ODOMETRY_TYPE)
    stamps = np.array([stamp_ns(m.header) for _, m in odom])
    assert (np.abs(np.diff(stamps) - PERIOD_NS) <= 1).all()  # ns rounding of k * period
    assert stamps[-1] == epoch_ns + round((N_FRAMES - 1) * FRAME_PERIOD_S * 1e9)
    lidar = np.array([stamp_ns(m.header) for _, m in decoded(listener, T.LIDAR_TOPIC, T.POINT_CLOUD2_TYPE)])
    steps = np.diff(lidar) / PERIOD_NS
    assert (np.abs(steps - np.round(steps)) < 1e-6).all() and (steps >= 1).all()  # best effort: one may be lost
    assert len(lidar) >= 0.8 * len(stamps) and set(lidar) <= set(stamps)  # scans start with the frames
    # Published when the wall clock reaches the stamp: received a little after it, never before.
    for topic, msgtype in ((T.ODOM_TOPIC, T.ODOMETRY_TYPE), (T.LIDAR_TOPIC, T.POINT_CLOUD2_TYPE),
                           (T.IMU_TOPIC, T.IMU_TYPE)):
        delays = np.array([t - stamp_s(m.header) for t, m in decoded(listener, topic, msgtype)])
        assert delays.min() > -0.005, topic
        assert np.median(delays) < 0.05 and delays.max() < 0.5, (topic, np.median(delays), delays.max())


def test_a_latency_fault_delivers_late(clean_run):
    _, log, listener = clean_run
    epoch = logged_epoch_ns(log) * 1e-9
    late, on_time = [], []
    for received, cloud in decoded(listener, T.RADAR_TOPIC, T.POINT_CLOUD2_TYPE):
        t = stamp_s(cloud.header) - epoch
        (late if RADAR_LATE_FROM_S <= t < RADAR_LATE_TO_S else on_time).append(received - stamp_s(cloud.header))
    assert len(late) >= 10 and len(on_time) >= 10
    assert min(late) > RADAR_LATENCY_S - 0.01 and np.median(late) < RADAR_LATENCY_S + 0.05
    assert np.median(on_time) < 0.05


def test_clock_follows_the_delivered_scenario_time(clean_run):
    _, log, listener = clean_run
    epoch_ns = logged_epoch_ns(log)
    clock = [stamp_ns(m) for _, m in decoded(listener, CLOCK_TOPIC, CLOCK_TYPE)]
    assert clock == sorted(clock) and len(set(clock)) == len(clock)
    assert epoch_ns <= clock[0] and clock[-1] < epoch_ns + DURATION_S * 1e9
    odom_stamps = {stamp_ns(m.header) for _, m in decoded(listener, T.ODOM_TOPIC, T.ODOMETRY_TYPE)}
    assert {s for s in odom_stamps if s >= clock[0]} <= set(clock)  # every frame start is a clock tick
    imu_stamps = {stamp_ns(m.header) for _, m in decoded(listener, T.IMU_TOPIC, T.IMU_TYPE)}
    assert len(imu_stamps & set(clock)) >= 0.8 * len(clock)  # and so is (nearly) every IMU sample


def test_every_sensor_reports_on_at_start(clean_run):
    _, _, listener = clean_run
    for sensor in SENSORS:
        assert states(listener, sensor) == ["on"]


# ---------------------------------------------------------------------------------- power gating
def test_standby_stops_a_sensor_and_on_warms_it_up_again(tiny_scenario, tmp_path):
    domain = fresh_domain_id()
    log_path = tmp_path / "sim_node.log"
    listener = listen(domain)
    string = ros_io.types()[POWER_MESSAGE_TYPE]
    requests = listener.node.create_publisher(ros_io.message_class(POWER_MESSAGE_TYPE), power_request_topic("lidar"),
                                              ros_io.LATCHED_QOS)

    def ask(text: str) -> float:
        requests.publish(ros_io.serialize(string(data=text), POWER_MESSAGE_TYPE))
        return time.time()

    def lidar_stamps() -> list[float]:
        return [stamp_s(m.header) for _, m in decoded(listener, T.LIDAR_TOPIC, T.POINT_CLOUD2_TYPE)]

    try:
        # duration 0: until the road ends (minutes); SIGINT ends it below
        args = ros_args(tiny_scenario, duration_s=0.0, power_warmup_s=WARMUP_S)
        with node_process(MODULE, domain, log_path, args) as proc:
            assert listener.wait_for(lambda: listener.count(T.LIDAR_TOPIC) >= 3, DISCOVERY_TIMEOUT_S), \
                log_path.read_text()
            ask("off")  # not a request: logged, counted, ignored
            assert listener.wait_for(lambda: "unknown request 'off'" in log_path.read_text(), 10.0)

            ask("standby")
            assert listener.wait_for(lambda: states(listener, "lidar")[-1:] == ["standby"], 5.0)
            standby_seen = time.monotonic()
            n_lidar, n_radar = listener.count(T.LIDAR_TOPIC), listener.count(T.RADAR_TOPIC)
            # A window without LiDAR data while the radar goes on (10 LiDAR frames).
            assert listener.wait_for(lambda: listener.count(T.RADAR_TOPIC) >= n_radar + 20, 5.0)
            with listener._lock:
                after = [t for t, _ in listener.messages[T.LIDAR_TOPIC] if t > standby_seen + 0.05]
            assert after == [] and listener.count(T.LIDAR_TOPIC) <= n_lidar + 1
            last_before = lidar_stamps()[-1]

            asked_on = ask("on")
            assert listener.wait_for(lambda: states(listener, "lidar")[-1:] == ["on"], 5.0)
            assert states(listener, "lidar") == ["on", "standby", "warming", "on"]
            assert listener.wait_for(lambda: listener.count(T.LIDAR_TOPIC) > n_lidar + 2, 5.0)
            resumed = [s for s in lidar_stamps() if s > last_before]
            # Withheld for the warm-up, counted from the next frame start (without it, data would
            # be back within a frame); a frame of slack for a node running a little late.
            assert resumed[0] >= asked_on + WARMUP_S - FRAME_PERIOD_S
            assert resumed[0] - last_before >= 1.0
            assert all(states(listener, s) == ["on"] for s in SENSORS if s != "lidar")
            assert proc.poll() is None
            proc.send_signal(subprocess.signal.SIGINT)
            returncode = proc.wait(timeout=15)
    finally:
        listener.close()
    log = log_path.read_text()
    assert returncode == 0, log
    assert "Traceback" not in log
    assert log.count("unknown request") == 1
    (summary,) = [line for line in log.splitlines() if "interrupted:" in line]
    assert "withheld by power state: lidar" in summary and "unknown power requests: 1" in summary


# ---------------------------------------------------------------------------------- parameters
def test_vehicle_yaml_sim_block_is_the_node_config():
    block = yaml.safe_load(Path(PARAMS_FILE).read_text())["/**"]["ros__parameters"]["sim"]
    assert block == {name: getattr(SimNodeConfig(), name) for name in SimNodeConfig.__dataclass_fields__}


@pytest.mark.parametrize("scenario, params, message", [
    ("no_such_scenario", {}, "invalid parameter: sim.scenario: no_such_scenario: no such scenario file"),
    (None, {"duration_s": -1.0}, "invalid parameter: sim.duration_s: -1.0 is below the minimum 0.0"),
    (None, {"rate_factor": 0.0}, "invalid parameter: sim.rate_factor: must be > 0"),
    (None, {"duration_s": 1e6}, "invalid parameter: sim.duration_s: 1000000.0 s does not fit scenario 'tiny'"),
])
def test_invalid_parameter_exits_non_zero_with_one_readable_line(scenario, params, message, tiny_scenario, tmp_path):
    log_path = tmp_path / "sim_node.log"
    args = ros_args(scenario or tiny_scenario, **params)
    with node_process(MODULE, fresh_domain_id(), log_path, args) as proc:
        returncode = proc.wait(timeout=60)
    log = log_path.read_text()
    assert returncode == 2, log
    assert message in log and "Traceback" not in log
    assert len([line for line in log.splitlines() if "[ERROR]" in line]) == 1
