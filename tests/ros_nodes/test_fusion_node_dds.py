"""fusion_node over real DDS: one node process for the whole module (it loads the model first),
the test process publishing hand-built raw CDR on its sensor topics and recording what it
publishes (``/fusion/detections``, ``/diagnostics``).

The sensor messages are the simulator's own (default scenario, FrameMessageBuilder), published in
log-time order at the simulator's pace. Every stream continues one stamp timeline (10 Hz frames:
LiDAR, cameras and radar share the frame stamp, radar has a second scan half-way, IMU at 200 Hz),
so the synchroniser's decisions follow from the stamps alone and every drop can be predicted:

- a frame whose LiDAR scan (the pivot) is broken is missing; its camera images are then
  ``sync:unmatched`` and so are the 20 IMU samples of its window (the next frame's window starts
  at its stamp);
- every radar scan that is not at a frame's stamp is ``sync:unmatched`` (20 Hz against 10 Hz);
- the IMU samples after the last frame are ``sync:unmatched`` at shutdown (flushed).

``fusion.process_every_frame`` is on (as in ``dyn-fusion replay``), so no frame is skipped as
``overload`` on this 2-core machine: every valid frame must come out.

Also here: a truncated bag replayed through the whole stack (``dyn-fusion replay``).
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from fusion_core.boxes import SCORE
from fusion_core.data import topics as T
from fusion_core.data.static_tf import save_static_tf
from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
from fusion_core.vocabulary import NO_RETURNS
from ros_nodes import ros_io
from ros_nodes.detection_markers import markers_to_boxes
from ros_nodes.fusion_node import DETECTIONS_TOPIC, DIAGNOSTICS_TOPIC
from ros_nodes.fusion_pipeline import subscribed_topics
from ros_nodes.run_record import FRAME_STATUS, HEALTH_STATUS
from sim.calibration import rig_calibration, rig_static_tf
from sim.config import load_scenario, resolve_scenario
from sim.simulator import Simulator
from sim.writers.frame_messages import FrameMessageBuilder
from sim.writers.rosbag import write_bag
from tests.ros_nodes.dds import REPO, Listener, fresh_domain_id, node_process

N_FRAMES = 20            # one malformed stream: 2 s of sensor data
N_SETTINGS_FRAMES = 8    # the stream after the run-time parameter change
READY_TIMEOUT_S = 180.0  # model load and cost table on a busy 2-core machine
OUTPUT_TIMEOUT_S = 120.0
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
ROLES = subscribed_topics(TopicMapping.load(data_config_dir() / "sim_bag.yaml"))  # role -> (topic, type)
ROLE_OF_TOPIC = {topic: role for role, (topic, _) in ROLES.items()}
# The node publishes both topics reliable, keep-all: a deep reliable reader loses nothing.
RECORD_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5000, reliability=ReliabilityPolicy.RELIABLE)
IMU_PER_FRAME = 20       # 200 Hz IMU, 10 Hz frames
# > fusion.max_cloud_points (500 000): 36 MB, a misconfigured driver's accumulated sweep. Over DDS it
# travels as ~550 fragments; the shipped Fast DDS profile (configs/dds/fastdds.xml) gives the
# shared-memory port room for them, so it reaches the node and is counted, and takes no other
# message with it (with Fast DDS's default port of 512 it vanished with ~30 messages of other topics).
BIG_CLOUD_POINTS = 2_000_000
N_NAN_POINTS = 1000


# ------------------------------------------------------------------------------------ helpers
def corrupt(msg, **changes) -> bytes:
    """CDR of a copy of the rosbags message ``msg`` with ``changes``."""
    return ros_io.serialize(dataclasses.replace(msg, **changes), msg.__class__.__msgtype__)


def serialize(msg) -> bytes:
    return ros_io.serialize(msg, msg.__class__.__msgtype__)


def stamp_of(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Feeder:
    """Publishes simulated sensor streams on fusion_node's topics from the test process, on one
    continuous stamp timeline, and keeps the books: messages published per role, the pivot
    stamps that must become frames and the pivots that were broken on purpose."""

    def __init__(self, listener: Listener, sim: Simulator, frames, epoch_ns: int):
        self.listener, self.sim, self.frames = listener, sim, frames
        self.next_epoch_ns = epoch_ns
        self.period_ns = round(1e9 / sim.config.frame_rate_hz)
        self.pubs = {role: listener.node.create_publisher(ros_io.message_class(msgtype), topic, ros_io.SENSOR_QOS)
                     for role, (topic, msgtype) in ROLES.items()}
        self.sent: Counter[str] = Counter()
        self.expected_frames: list[int] = []   # pivot stamps that must be fused, in order

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pubs.values())

    def stream(self, n_frames: int, edit=None) -> list[int]:
        """Publish every sensor message of the first ``n_frames`` frames in log-time order at the
        simulator's pace. ``edit(role, k, msg)`` may replace the k-th message of a role (0-based in this
        stream) by a list of CDR payloads (none, a broken copy, extras). Returns the stamps of the LiDAR scans, by index."""
        builder = FrameMessageBuilder(self.sim, self.next_epoch_ns)
        self.next_epoch_ns += n_frames * self.period_ns
        messages = sorted((m for f in self.frames[:n_frames] for r in f.readings for m in builder.reading_messages(r)),
                          key=lambda m: m.log_ns)  # stable: same-time messages keep the capture order
        index: Counter[str] = Counter()
        lidar_stamps = []
        start_s, first_ns = time.monotonic(), messages[0].log_ns
        for m in messages:
            role = ROLE_OF_TOPIC[m.topic]
            k = index[role]
            index[role] += 1
            if role == "lidar":
                lidar_stamps.append(m.stamp_ns)
                self.expected_frames.append(m.stamp_ns)
            payloads = edit(role, k, m.msg) if edit is not None else None
            delay = start_s + (m.log_ns - first_ns) / 1e9 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for raw in payloads if payloads is not None else [serialize(m.msg)]:
                self.pubs[role].publish(raw)
                self.sent[role] += 1
        return lidar_stamps


class Outputs:
    """What fusion_node published, decoded: per frame stamp its MarkerArray and its two statuses.
    :meth:`update` decodes only what arrived since the last call."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.detections: list[int] = []                   # frame stamps of the MarkerArrays, in arrival order
        self.published: dict[int, np.ndarray] = {}         # stamp -> the boxes published on /fusion/detections
        self.frame: dict[int, dict[str, str]] = {}         # stamp -> frame status values
        self.health: dict[int, dict[str, str]] = {}        # stamp -> health status values (+ "message")
        self.frame_order: list[int] = []
        self.final_health: list[tuple[str, dict[str, str]]] = []  # (message, values) of statuses without a frame
        self._seen = {DETECTIONS_TOPIC: 0, T.FRAME_RECORDS_TOPIC: 0, DIAGNOSTICS_TOPIC: 0}
        self.diagnostics: list[dict[str, object]] = []     # /diagnostics (about 1 Hz): status name -> status

    def _new(self, topic: str) -> list[bytes]:
        with self.listener._lock:
            raws = [raw for _, raw in self.listener.messages[topic][self._seen[topic]:]]
        self._seen[topic] += len(raws)
        return raws

    def update(self) -> Outputs:
        for raw in self._new(DETECTIONS_TOPIC):
            msg = ros_io.deserialize(raw, MARKER_ARRAY)
            self.detections.append(stamp_of(msg.markers[0].header))  # DELETEALL first, stamped like the frame
            self.published[self.detections[-1]] = markers_to_boxes(msg)[1]
        for raw in self._new(DIAGNOSTICS_TOPIC):
            self.diagnostics.append({s.name: s for s in ros_io.deserialize(raw, DIAGNOSTIC_ARRAY).status})
        for raw in self._new(T.FRAME_RECORDS_TOPIC):
            statuses = {s.name: s for s in ros_io.deserialize(raw, DIAGNOSTIC_ARRAY).status}
            health = {kv.key: kv.value for kv in statuses[HEALTH_STATUS].values}
            if FRAME_STATUS not in statuses:  # the final counters, published at shutdown
                self.final_health.append((statuses[HEALTH_STATUS].message, health))
                continue
            frame = {kv.key: kv.value for kv in statuses[FRAME_STATUS].values}
            stamp = int(frame["stamp_ns"])
            self.frame_order.append(stamp)
            self.frame[stamp] = frame
            self.health[stamp] = health | {"message": statuses[HEALTH_STATUS].message}
        return self

    def last_health(self) -> dict[str, str]:
        return self.health[self.frame_order[-1]]


def counters(health: dict[str, str], prefix: str) -> dict[str, int]:
    """``drops:`` / ``received:`` values of a health status, prefix removed."""
    return {k.removeprefix(prefix): int(v) for k, v in health.items() if k.startswith(prefix)}


class FusionNodeUnderTest:
    def __init__(self, proc: subprocess.Popen, log_path: Path, listener: Listener, feeder: Feeder):
        self.proc, self.log_path, self.listener, self.feeder = proc, log_path, listener, feeder
        self._params = listener.node.create_client(SetParameters, "/fusion_node/set_parameters")
        self._outputs = Outputs(listener)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def outputs(self) -> Outputs:
        return self._outputs.update()

    def wait_for_frames(self, stamps: list[int]) -> Outputs:
        """Wait until every frame of ``stamps`` has its detections and diagnostics."""
        def arrived():
            out = self.outputs()
            return set(stamps) <= set(out.detections) and set(stamps) <= set(out.frame)
        if not self.listener.wait_for(arrived, OUTPUT_TIMEOUT_S):
            out = self.outputs()
            health = out.last_health() if out.frame_order else {}
            pytest.fail(f"frames missing: {sorted(set(stamps) - set(out.frame))}\nlast health: {health}\n"
                        f"{self.log()[-3000:]}")
        return self.outputs()

    def set_parameters(self, **values) -> list:
        """``fusion.<name>=value`` (``publish_<name>``: ``publish.<name>``) through
        /fusion_node/set_parameters (one result per value, in order)."""
        assert self._params.wait_for_service(timeout_sec=30.0), "no /fusion_node/set_parameters service"
        names = {name: f"publish.{name.removeprefix('publish_')}" if name.startswith("publish_") else f"fusion.{name}"
                 for name in values}
        request = SetParameters.Request(parameters=[Parameter(names[name], value=value).to_parameter_msg()
                                                    for name, value in values.items()])
        future = self._params.call_async(request)
        assert self.listener.wait_for(future.done, 30.0), "no answer from /fusion_node/set_parameters"
        return list(future.result().results)


@pytest.fixture(scope="module")
def sim_frames():
    sim = Simulator(load_scenario(resolve_scenario("default")))
    return sim, list(sim.run(N_FRAMES))


@pytest.fixture(scope="module")
def node(tmp_path_factory, sim_frames):
    sim, frames = sim_frames
    folder = tmp_path_factory.mktemp("fusion_node")
    calibration = folder / "calibration.yaml"
    # as `dyn-fusion up` hands the rig to the node (tf2_msgs, hence /tf_static, is not installable here)
    save_static_tf(calibration, rig_static_tf(rig_calibration(sim.config.sensors)))
    domain = fresh_domain_id()
    listener = Listener(domain, {DETECTIONS_TOPIC: MARKER_ARRAY, T.FRAME_RECORDS_TOPIC: DIAGNOSTIC_ARRAY,
                                 DIAGNOSTICS_TOPIC: DIAGNOSTIC_ARRAY}, qos=RECORD_DEEP)
    args = ("--params-file", str(REPO / "configs" / "vehicle.yaml"), "-p", f"fusion.calibration_file:={calibration}",
            "-p", "fusion.process_every_frame:=true")
    try:
        with node_process("ros_nodes.fusion_node", domain, folder / "fusion_node.log", args) as proc:
            log_path = folder / "fusion_node.log"
            ready = listener.wait_for(lambda: "fusion_node ready" in log_path.read_text() or proc.poll() is not None,
                                      READY_TIMEOUT_S)
            assert ready and proc.poll() is None, log_path.read_text()
            feeder = Feeder(listener, sim, frames, epoch_ns=time.time_ns())
            assert listener.wait_for(lambda: feeder.matched() and listener.node.count_publishers(T.FRAME_RECORDS_TOPIC)
                                     and listener.node.count_publishers(DETECTIONS_TOPIC), 30.0), "discovery"
            yield FusionNodeUnderTest(proc, log_path, listener, feeder)
    finally:
        listener.close()


# ------------------------------------------------------------------------ malformed input
# indices (in the stream) of the messages made bad: LiDAR scans, images, IMU samples (200 Hz)
POINT_STEP_BAD, NO_X_FIELD, TOO_MANY_POINTS = 2, 5, 11
# LiDAR scans whose header reads but whose points do not: their frames run without the LiDAR
BROKEN_SCANS = {POINT_STEP_BAD: "decode_error:point_step_mismatch", NO_X_FIELD: "decode_error:missing_field",
                TOO_MANY_POINTS: "decode_error:too_many_points"}
RGB_BAD, DEPTH_BAD, NAN_FRAME, EMPTY_FRAME = 7, 8, 9, 10
DUPLICATE, OUT_OF_ORDER_AFTER, GARBAGE_AFTER = 13, 14, 15
IMU_NAN, IMU_DUPLICATE = 130, 170     # samples at 650 ms and 850 ms, inside windows of fused frames
RADAR_GARBAGE_AFTER = 31
CAMERA_INFO_GARBAGE_AFTER = 16   # (CameraInfo is state: the last good one stays in use)
# a valid CDR encapsulation header, then noise (the first string length it gives is absurd)
GARBAGE = b"\x00\x01\x00\x00" + bytes(np.random.default_rng(0).integers(0, 256, 200, np.uint8))


def malformed(first: dict):
    """The edit of the malformed stream (see the module doc); ``first`` keeps the stream's first
    LiDAR message (for the out-of-order copy)."""
    def edit(role: str, k: int, msg):
        if role == "lidar":
            first.setdefault("lidar", msg)
            if k == POINT_STEP_BAD:    # point_step smaller than the fields it lists
                return [corrupt(msg, point_step=8, row_step=8 * msg.width, data=msg.data[: 8 * msg.width])]
            if k == NO_X_FIELD:
                fields = [dataclasses.replace(f, name="u") if f.name == "x" else f for f in msg.fields]
                return [corrupt(msg, fields=fields)]
            if k == NAN_FRAME:
                points = np.frombuffer(bytes(msg.data), T.LIDAR_POINT_DTYPE).copy()
                points["y"][:N_NAN_POINTS] = np.nan
                return [corrupt(msg, data=points.view(np.uint8), is_dense=False)]
            if k == EMPTY_FRAME:
                return [corrupt(msg, width=0, row_step=0, data=np.zeros(0, np.uint8))]
            if k == TOO_MANY_POINTS:   # a real cloud above fusion.max_cloud_points
                data = np.resize(np.asarray(msg.data), BIG_CLOUD_POINTS * msg.point_step)
                return [corrupt(msg, width=BIG_CLOUD_POINTS, row_step=BIG_CLOUD_POINTS * msg.point_step, data=data)]
            if k == DUPLICATE:
                return [serialize(msg)] * 2
            if k == OUT_OF_ORDER_AFTER:   # the stream's first scan again, 1 ms later: long past
                old = first["lidar"]
                header = ros_io.header(stamp_of(old.header) + 1_000_000, old.header.frame_id)
                return [serialize(msg), corrupt(old, header=header)]
            if k == GARBAGE_AFTER:
                return [serialize(msg), GARBAGE]
        if role == "rgb" and k == RGB_BAD:
            return [corrupt(msg, encoding="yuv422")]
        if role == "depth" and k == DEPTH_BAD:
            return [corrupt(msg, encoding="rgb8")]
        if role == "depth" and k == NAN_FRAME:  # NaN is "no measurement" in a 32FC1 depth image
            pixels = np.frombuffer(bytes(msg.data), "<f4").copy()
            pixels[::7] = np.nan
            return [corrupt(msg, data=pixels.view(np.uint8))]
        if role == "radar" and k == RADAR_GARBAGE_AFTER:
            return [serialize(msg), GARBAGE[:40]]
        if role == "rgb_info" and k == CAMERA_INFO_GARBAGE_AFTER:
            return [serialize(msg), GARBAGE]
        if role == "imu" and k == IMU_NAN:
            return [corrupt(msg, linear_acceleration=dataclasses.replace(msg.linear_acceleration, y=float("nan")))]
        if role == "imu" and k == IMU_DUPLICATE:
            return [serialize(msg)] * 2
        return None
    return edit


# every cause the malformed stream adds on top of the synchroniser's regular unmatched messages
MALFORMED_DROPS = {
    **{f"lidar:{cause}": 1 for cause in BROKEN_SCANS.values()},
    "lidar:nan_points": N_NAN_POINTS, "lidar:sync:duplicate_stamp": 1, "lidar:sync:out_of_order": 1,
    "lidar:decode_error:deserialize": 1, "radar:decode_error:deserialize": 1,
    "rgb:decode_error:camera_info:deserialize": 1,
    "rgb:decode_error:encoding": 1, "depth:decode_error:encoding": 1,
    "imu:decode_error:nan_sample": 1, "imu:sync:duplicate_stamp": 1,
}


@pytest.fixture(scope="module")
def malformed_run(node):
    """The malformed stream, once: (LiDAR stamps by index, the outputs, the health status of the
    stream's last frame)."""
    stamps = node.feeder.stream(N_FRAMES, malformed({}))
    out = node.wait_for_frames(stamps)
    return stamps, out, out.health[stamps[-1]]


def test_every_frame_is_fused_once_even_where_its_lidar_scan_is_broken(node, malformed_run):
    stamps, out, _health = malformed_run
    assert node.proc.poll() is None, node.log()[-3000:]
    ours = set(stamps)
    assert Counter(s for s in out.detections if s in ours) == Counter(stamps)
    assert {s for s in out.frame if s in ours} == ours
    # frames come out in stamp order
    assert [s for s in out.frame_order if s in ours] == sorted(s for s in out.frame_order if s in ours)


def test_each_malformed_message_is_a_counted_drop_with_its_cause(malformed_run):
    *_, health = malformed_run
    drops = counters(health, "drops:")
    for key, n in MALFORMED_DROPS.items():
        assert drops.get(key) == n, (key, drops)
    # nothing else is counted under a decode error, and no frame was lost to the node itself
    assert {k for k in drops if "decode_error" in k or "nan" in k} == \
        {k for k in MALFORMED_DROPS if "decode_error" in k or "nan" in k}
    assert not any(cause in k for k in drops for cause in ("overload", "fusion_error", "inbox_overflow")), drops


def test_frames_around_bad_sensor_messages_are_fused_without_that_sensor(malformed_run):
    stamps, out, _health = malformed_run
    absent = {k: {key.removeprefix("absent:"): v for key, v in out.health[s].items() if key.startswith("absent:")}
              for k, s in enumerate(stamps)}
    for k, cause in BROKEN_SCANS.items():  # the other sensors carry the frame
        assert absent.pop(k) == {"lidar": cause}, k
        assert int(out.frame[stamps[k]]["detections"]) > 0, k
    # the undecodable image's frame waits for the stream to pass it, then goes on without it
    assert set(absent.pop(RGB_BAD)) == {"rgb"} and out.health[stamps[RGB_BAD]]["absent:rgb"].startswith("sync:")
    assert set(absent.pop(DEPTH_BAD)) == {"depth"}
    assert "lost depth (sync:" in out.health[stamps[DEPTH_BAD]]["message"]
    # an empty cloud is a LiDAR that returned nothing: absent (no_returns), so no gate routes to it
    assert absent.pop(EMPTY_FRAME) == {"lidar": NO_RETURNS}
    # NaN points are removed and the rest of the scan used; NaN depth pixels are "no measurement"
    assert all(not a for a in absent.values()), absent
    assert int(out.frame[stamps[NAN_FRAME]]["detections"]) > 0


def test_diagnostics_report_health_and_each_inputs_rate_about_once_a_second(node, malformed_run):
    """/diagnostics carries the node's health and one status per input (rate, stamp ages), as
    ROS tools expect it, not the per-frame records (those are on /fusion/frames)."""
    out = node.outputs()
    assert out.diagnostics, "no /diagnostics message"
    assert len(out.diagnostics) < len(out.frame)  # about 1 Hz, not one per frame
    names = set().union(*out.diagnostics)
    assert {"fusion_node: health", *(f"fusion_node: input {r}" for r in ("lidar", "radar", "rgb", "depth", "imu"))} <= names
    lidar = [{kv.key: kv.value for kv in d["fusion_node: input lidar"].values} for d in out.diagnostics
             if "fusion_node: input lidar" in d]
    busy = [v for v in lidar if int(v["messages"]) > 0]
    assert busy and all(float(v["rate_hz"]) > 0 and v["topic"] == T.LIDAR_TOPIC for v in busy)
    assert all(float(v["stamp_age_ms_max"]) >= float(v["stamp_age_ms_min"]) for v in busy)


# ------------------------------------------------------------------------ run-time settings
NEW_SETTINGS = {"gate_mode": "attention", "k": 1, "lam_per_j": 12.5, "exit_policy": "confidence",
                "exit_threshold": 0.0, "publish_min_score": 0.5}


def test_settings_change_at_run_time_and_bad_values_are_refused(node, malformed_run):
    results = node.set_parameters(**NEW_SETTINGS)
    assert all(r.successful for r in results), [r.reason for r in results]
    refused = node.set_parameters(gate_mode="teleport", exit_policy="sometimes", max_cloud_points=10,
                                  publish_nms_iou=2.0)
    assert not any(r.successful for r in refused)
    assert "teleport" in refused[0].reason and "sometimes" in refused[1].reason
    assert "only read at start-up" in refused[2].reason and "publish.nms_iou" in refused[3].reason
    # the next frames run with the new settings, the refused values changed nothing
    stamps = node.feeder.stream(N_SETTINGS_FRAMES)
    out = node.wait_for_frames(stamps)
    for s in stamps:
        frame = out.frame[s]
        assert (frame["gate_mode"], frame["k"], frame["lam_per_j"]) == ("attention", "1", "12.5"), frame
        assert len(frame["active_experts"].split(",")) == 1          # attention keeps the top k = 1
        assert frame["exit_index"] == "0"                             # confidence >= 0: the first exit
        # published: min_score 0.5 and one box per object, out of every box the model reported
        published = out.published[s]
        assert len(published) == int(frame["published"]) <= int(frame["detections"])
        assert (published[:, SCORE] >= 0.5).all()
    assert sum(int(out.frame[s]["published"]) for s in stamps) < sum(int(out.frame[s]["detections"]) for s in stamps)
    assert "settings changed" in node.log()


def test_out_of_range_settings_are_refused(node, malformed_run):
    try:
        results = node.set_parameters(k=0, lam_per_j=-1.0, gate_mode="oracle")
        assert [r.successful for r in results] == [False, False, False], [r.reason for r in results]
    finally:  # an accepted oracle gate would fail every later frame: put back what the node ran
        node.set_parameters(**NEW_SETTINGS)


# ------------------------------------------------------------------------ nothing else is lost
def test_final_counters_account_for_every_message_sent(node, malformed_run):
    """At SIGINT the node flushes and publishes one last health status: what it received equals
    what was sent, and every drop is one of the predicted ones."""
    node.proc.send_signal(subprocess.signal.SIGINT)
    assert node.proc.wait(timeout=60) == 0, node.log()[-3000:]
    assert node.listener.wait_for(lambda: node.outputs().final_health, 10.0), node.log()[-3000:]
    out = node.outputs()
    feeder = node.feeder
    (message, final), = out.final_health
    assert counters(final, "received:") == dict(feeder.sent)
    # every valid frame of every stream was fused, once
    assert sorted(out.detections) == sorted(out.frame_order) == sorted(feeder.expected_frames)
    assert message == f"stopped after {len(feeder.expected_frames)} frames"
    n_frames = len(feeder.expected_frames)
    valid_radar = feeder.sent["radar"] - MALFORMED_DROPS["radar:decode_error:deserialize"]
    expected = dict(MALFORMED_DROPS)
    expected.update({
        # IMU: the samples after the last frame (flushed at shutdown)
        "imu:sync:unmatched": IMU_PER_FRAME - 1,
        "radar:sync:unmatched": valid_radar - n_frames,  # one radar scan per frame, the others between frames
    })
    assert counters(final, "drops:") == expected


# ------------------------------------------------------------------------ truncated bag, whole stack
@pytest.fixture(scope="module")
def truncated_replay(tmp_path_factory):
    """``dyn-fusion replay`` of a 2 s simulator bag whose MCAP file was cut at 60 %."""
    folder = tmp_path_factory.mktemp("replay")
    bag = folder / "bag"
    write_bag(bag, Simulator(load_scenario(resolve_scenario("default"))), N_FRAMES)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size * 6 // 10])
    out = folder / "run"
    env = {**ros_io.isolated_domain_env(fresh_domain_id()), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dyn_fusion.cli", "replay", str(bag), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr, out


def test_truncated_bag_replay_fuses_what_was_read_and_says_where_reading_stopped(truncated_replay):
    returncode, output, out = truncated_replay
    assert "Traceback" not in output, output
    assert returncode == 1, output   # a node (the player) exited with an error
    assert re.search(r"bag_player exited with 1:.*reading stopped at byte \d+ of \d+", output, re.DOTALL), output
    played = re.search(r"published \d+ messages \[(.*?)\]", (out / "logs" / "bag_player.log").read_text())
    n_scans = int(re.search(r"/sensors/lidar/points (\d+)", played.group(1)).group(1))
    report = json.loads((out / "report.json").read_text())
    assert 0 < n_scans < N_FRAMES and report["frames_fused"] == n_scans   # every scan read was fused
    assert all(n == 0 for n in report["lost_in_transport"].values())


def test_truncated_bag_report_says_where_reading_stopped(truncated_replay):
    _returncode, _output, out = truncated_replay
    assert re.search(r"reading stopped at byte \d+ of \d+", (out / "report.md").read_text())
