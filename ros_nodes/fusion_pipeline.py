"""What the fusion node does with messages, without rclpy: decode -> synchronise -> assemble a
:class:`FusionSample` -> gate, experts and exits -> detections, an energy ledger entry and
sensor power commands.

The node (``ros_nodes.fusion_node``) only moves bytes: each subscription callback hands the raw
CDR of one message to :meth:`FusionPipeline.accept`, which returns the frames it completed
(cheap: decoding and bookkeeping); :meth:`FusionPipeline.run` then runs fusion on one frame
(the expensive part, on the node's worker thread). Tests drive the same object directly.

Accounting: every sensor message handed to :meth:`accept` is, at any time, in exactly one of
``used`` (it fed a frame that ran), a frame waiting to run, the synchroniser's queues, or
``drops`` under one cause (``decode_error:<what>``, ``sync:<cause>``, ``no_calibration``,
``no_camera_info``, ``overload`` for frames superseded before they could run). ``nan_points``
counts points, not messages (the rest of the cloud is used). Camera info messages are state:
``used`` when they decode, else a ``decode_error:camera_info:<what>`` drop.

A message of the pivot role (the LiDAR, normally) whose header reads but whose content does not
decode still defines its frame: the frame runs with that sensor absent (``decode_error:<what>``,
counted when the frame runs, as ``no_camera_info`` is), so one damaged cloud costs the frame its
LiDAR, not the whole frame. The offline bag reader (``RosbagSource``) makes the same frame, so
``evaluate`` and ``replay`` of a bag agree. Other roles' undecodable messages are dropped at once.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fusion_core.boxes import empty_boxes
from fusion_core.data import ros_decode as rd
from fusion_core.data.geometry import rotate_vectors, transform_points
from fusion_core.data.intrinsics import PinholeIntrinsics
from fusion_core.data.rosbag_source import NAN_POINTS
from fusion_core.data.sample import CameraGeometry, FusionSample
from fusion_core.data.static_tf import StaticTfError, StaticTfTree
from fusion_core.data.topic_mapping import TopicMapping
from fusion_core.energy.ledger import FrameEnergy, frame_energy
from fusion_core.energy.profile import DeviceProfile
from fusion_core.model.inputs import collate
from fusion_core.runtime.dynamic_fusion import DynamicFusion, FrameResult
from fusion_core.runtime.power_gating import PowerCommand, SensorPowerManager
from fusion_core.vocabulary import (
    CAMERA_INFO_TYPE,
    CAMERAS,
    DECODE_ERROR,
    DETECTION_SENSORS,
    NO_CALIBRATION,
    NO_CAMERA_INFO,
    NOT_SUBSCRIBED,
    SENSOR_SPECS,
    SENSORS,
    STANDBY,
    SYNC_PREFIX,
)
from ros_nodes import ros_io
from ros_nodes.input_rates import InputRates
from ros_nodes.stamp_sync import StampSynchroniser, SyncedFrame

log = logging.getLogger(__name__)

CAMERA_INFO_ROLES = {f"{c}_info": c for c in CAMERAS}
_MSGTYPE = {**{s: spec.message_type for s, spec in SENSOR_SPECS.items()},
            **dict.fromkeys(CAMERA_INFO_ROLES, CAMERA_INFO_TYPE)}
_NS = 1_000_000_000


def subscribed_topics(mapping: TopicMapping) -> dict[str, tuple[str, str]]:
    """role -> (topic, message type) of every mapped sensor and camera-info topic."""
    out = {}
    for role, msgtype in _MSGTYPE.items():
        topic = mapping.camera_info_topic(CAMERA_INFO_ROLES[role]) if role in CAMERA_INFO_ROLES \
            else mapping.sensor_topic(role)
        if topic:
            out[role] = (topic, msgtype)
    return out


@dataclass(frozen=True)
class DecodedMessage:
    """A sensor message as numbers in its own frame (what the synchroniser holds)."""

    frame_id: str
    payload: Any           # (N, C) float32 points, (H, W[, 3]) image or (6,) IMU sample; None when broken
    received_ns: int       # time [ns] the node received it, on its ROS clock (fusion_node._now_ns)
    error: str | None = None  # why the content could not be decoded (``decode_error:<what>``), else None
    error_detail: str = ""    # the decoder's message, for the log


@dataclass(frozen=True)
class ReadyFrame:
    """A synchronised frame and the IMU history the model reads with it.

    The synchroniser gives each frame only the IMU samples since the previous frame (so every
    sample is accounted once); the IMU stem was trained on the last ``mapping.imu_window_s``
    seconds, as :class:`~fusion_core.data.rosbag_source.RosbagSource` assembles it, so the
    pipeline keeps that much history and hands it over here.
    """

    synced: SyncedFrame
    imu_window: tuple[tuple[int, DecodedMessage], ...]   # (stamp [ns], sample), oldest first


@dataclass(frozen=True)
class FrameOutcome:
    """One frame the pipeline ran: what went in, what the gate did, what it cost."""

    stamp_ns: int                   # the frame's header stamp (the pivot's) [ns]
    pivot: str                      # the role whose message defined the frame
    sample: FusionSample            # the assembled input (absence reasons included)
    result: FrameResult             # detections, experts, exit, latency
    energy: FrameEnergy             # the ledger entry (sensors that were on, compute by component)
    power_commands: list[PowerCommand]
    last_received_ns: int           # wall time the frame's last message arrived [ns]
    released_frames: list[ReadyFrame]  # frames that waited only for a sensor now put in standby


class FusionPipeline:
    """Messages in, :class:`FrameOutcome` out (see the module doc).

    ``calibration``: the static TF tree placing every sensor frame below ``mapping.base_frame_id``.
    ``frame_period_s``: the sensors' frame period, for the sensor energy of a frame.
    ``max_cloud_points``: larger clouds are dropped (``decode_error:too_many_points``) rather
    than stalling the node. ``power``: sensor power gating, or None (every sensor stays on).
    ``rates``: where each sensor message's arrival and stamp age are counted (the node's
    per-input diagnostics), or None.
    """

    def __init__(self, fusion: DynamicFusion, mapping: TopicMapping, synchroniser: StampSynchroniser,
                 calibration: StaticTfTree, profile: DeviceProfile, frame_period_s: float = 0.1,
                 max_cloud_points: int = rd.MAX_CLOUD_POINTS, power: SensorPowerManager | None = None,
                 rates: InputRates | None = None):
        if fusion.cost_table is None:
            raise ValueError("the fusion pipeline needs a DynamicFusion with a cost table (energy per frame)")
        self.fusion, self.mapping, self.sync = fusion, mapping, synchroniser
        self.calibration, self.profile, self.power = calibration, profile, power
        self.frame_period_s, self.max_cloud_points = frame_period_s, max_cloud_points
        self.rates = rates  # arrivals and stamp ages per sensor, for the node's /diagnostics
        self.roles = subscribed_topics(mapping)
        self.received: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.drops: Counter[tuple[str, str]] = Counter()
        self.frames_run = 0
        self._intrinsics: dict[str, PinholeIntrinsics] = {}
        self._base_from: dict[str, np.ndarray] = {}
        self._warned: set[tuple[str, str]] = set()
        self._counted_sync: Counter[tuple[str, str]] = Counter()
        self._imu_history: deque[tuple[int, DecodedMessage]] = deque()
        self.assumed_identity_frames: list[str] = []
        self._imu_window_ns = round(mapping.imu_window_s * _NS)

    # ------------------------------------------------------------------ messages in
    def accept(self, role: str, raw: bytes, received_ns: int | None = None) -> list[ReadyFrame]:
        """Take the raw CDR of one message of ``role`` received at wall time ``received_ns``
        (default: now); returns the frames it completed."""
        received_ns = time.time_ns() if received_ns is None else received_ns
        if role not in self.roles:
            raise ValueError(f"unknown role {role!r}; subscribed roles: {', '.join(self.roles)}")
        self.received[role] += 1
        sensor = CAMERA_INFO_ROLES.get(role, role)
        try:
            msg = ros_io.deserialize(raw, self.roles[role][1])
        except Exception as exc:  # any failure here means damaged bytes
            # a CameraInfo's trouble is told apart from its image's, as the offline reader does
            what = "camera_info:deserialize" if role in CAMERA_INFO_ROLES else "deserialize"
            self._drop(sensor, f"{DECODE_ERROR}:{what}", str(exc))
            return []
        if self.rates is not None and role not in CAMERA_INFO_ROLES:
            self.rates.add(role, rd.stamp_ns(msg.header), received_ns)
        try:
            decoded = self._decode(role, msg, received_ns)
        except rd.DecodeError as exc:
            what = f"camera_info:{exc.what}" if role in CAMERA_INFO_ROLES and exc.what != "camera_info" else exc.what
            if role != self.sync.pivot or role == "imu":
                self._drop(sensor, f"{DECODE_ERROR}:{what}", str(exc))
                return []
            # the frame is still there, only this sensor is not (see the module doc)
            decoded = DecodedMessage(msg.header.frame_id, None, received_ns, f"{DECODE_ERROR}:{what}", str(exc))
        if role in CAMERA_INFO_ROLES:
            self._intrinsics[sensor] = decoded
            self.used[role] += 1
            return []
        frames = self.sync.add(role, rd.stamp_ns(msg.header), decoded)
        self._count_sync_drops()
        return self._ready(frames)

    def flush(self) -> list[ReadyFrame]:
        """Every frame still pending (end of a run); leftover messages become counted drops."""
        frames = self.sync.flush()
        self._count_sync_drops()
        return self._ready(frames)

    def drop_frames(self, frames: list[ReadyFrame], cause: str) -> None:
        """Frames that will not be run (superseded while the node was busy): count their messages."""
        for ready in frames:
            for role in ready.synced.messages:
                self.drops[(role, cause)] += 1
            if ready.synced.imu:
                self.drops[("imu", cause)] += len(ready.synced.imu)

    def _ready(self, frames: list[SyncedFrame]) -> list[ReadyFrame]:
        """Attach to each frame (they come in stamp order) the IMU samples of its window."""
        out = []
        history = self._imu_history
        for frame in frames:
            history.extend((t, m) for t, m in frame.imu)
            if "imu" in frame.messages:  # an IMU-only recording: the IMU is the pivot
                history.append((frame.stamps_ns["imu"], frame.messages["imu"]))
            start = frame.stamp_ns - self._imu_window_ns
            while history and history[0][0] <= start:
                history.popleft()
            out.append(ReadyFrame(frame, tuple((t, m) for t, m in history if t <= frame.stamp_ns)))
        return out

    def _decode(self, role: str, msg, received_ns: int) -> DecodedMessage | PinholeIntrinsics:
        m = self.mapping
        if role in CAMERA_INFO_ROLES:
            return rd.decode_camera_info(msg)
        frame_id = msg.header.frame_id
        if role in ("lidar", "radar"):
            columns = ("x", "y", "z", m.lidar_intensity_field) if role == "lidar" else \
                ("x", "y", "z", m.radar_doppler_field, m.radar_rcs_field)
            points, n_nan = rd.decode_cloud(msg, columns, self.max_cloud_points)
            if n_nan:
                # points, not messages: the cloud itself is used
                self._drop(role, NAN_POINTS, f"{n_nan} points with a non-finite value", n_nan)
            return DecodedMessage(frame_id, points, received_ns)
        if role == "rgb":
            return DecodedMessage(frame_id, rd.decode_rgb(msg), received_ns)
        if role == "depth":
            return DecodedMessage(frame_id, rd.decode_depth(msg), received_ns)
        return DecodedMessage(frame_id, rd.decode_imu(msg), received_ns)

    # ------------------------------------------------------------------ frames out
    def assemble(self, ready: ReadyFrame) -> FusionSample:
        """The synchronised messages as one FusionSample in the base frame."""
        frame = ready.synced
        absence = {role: f"{SYNC_PREFIX}{reason}" if reason != STANDBY else STANDBY for role, reason in frame.absent.items()}
        for sensor in SENSORS:
            if sensor not in self.roles:
                absence[sensor] = NOT_SUBSCRIBED
        arrays: dict[str, Any] = {}
        for role, msg in frame.messages.items():
            if role == "imu":
                continue  # the IMU is read as a window below
            if msg.error is not None:  # a pivot message that defined the frame but did not decode
                absence[role] = msg.error
                self._drop(role, msg.error, msg.error_detail)
                continue
            base_from = self._placement(role, msg.frame_id)
            if base_from is None:
                absence[role] = NO_CALIBRATION
                continue
            if role in ("lidar", "radar"):
                points = msg.payload.copy()
                points[:, :3] = transform_points(base_from, msg.payload[:, :3])
                arrays[role] = points
            else:
                camera = self._camera(role, msg, base_from)
                if camera is None:
                    absence[role] = NO_CAMERA_INFO
                    continue
                arrays[role] = (msg.payload, camera)
        imu = None
        if "imu" in self.roles and ready.imu_window:
            absence.pop("imu", None)  # no new sample since the last frame, but a window to read
            frame_id = ready.imu_window[-1][1].frame_id
            base_from = self._placement("imu", frame_id, n_messages=len(frame.imu) + ("imu" in frame.messages))
            if base_from is None:
                absence["imu"] = NO_CALIBRATION
            else:
                raw = np.stack([m.payload for _, m in ready.imu_window])
                imu = np.concatenate([rotate_vectors(base_from, raw[:, :3]), rotate_vectors(base_from, raw[:, 3:])],
                                     axis=1).astype(np.float32)
        rgb, depth = arrays.get("rgb"), arrays.get("depth")
        return FusionSample(
            time_s=frame.stamp_ns / _NS,
            lidar_xyzi=arrays.get("lidar"),
            radar_xyzdr=arrays.get("radar"),
            depth_m=None if depth is None else depth[0],
            depth_camera=None if depth is None else depth[1],
            rgb=None if rgb is None else rgb[0],
            rgb_camera=None if rgb is None else rgb[1],
            imu=imu,
            absence=absence,
        ).without_empty_ranging()

    def run(self, ready: ReadyFrame) -> FrameOutcome:
        """Fusion on one synchronised frame: gate, chosen experts, exits, energy, power commands."""
        frame = ready.synced
        sample = self.assemble(ready)
        t_s = frame.stamp_ns / _NS
        if self.power is not None:
            awake = self.power.available_sensors(t_s)
            for sensor in SENSORS:
                if sensor not in awake and sample.present(sensor):
                    # a standby sensor's leftover message, or a warming sensor's not yet valid data
                    n = len(frame.imu) if sensor == "imu" else 1
                    self.drops[(sensor, f"power:{self.power.state(sensor)}")] += n
                    sample = sample.without(sensor, self.power.state(sensor))
        if any(sample.present(s) for s in DETECTION_SENSORS):
            # model inputs only: a live frame has no ground truth to build training targets from
            inputs = collate([sample], self.fusion.detector.config.grid)
            with torch.inference_mode():
                result = self.fusion.run_frame(inputs)
        else:  # nothing to detect with (an IMU-only recording, every sensor lost): no compute at all
            result = FrameResult(boxes=empty_boxes(), active_experts=(), configuration=None, exit_index=0,
                                 exit_confidence=0.0, missed_deadline=False, condition_estimate=None,
                                 degraded_sensors=(), components={}, latency_ms=0.0)
        commands: list[PowerCommand] = []
        if self.power is not None:
            needed = {"imu"} | {s for name in result.active_experts
                                for s in self.fusion.expert_sensors[self.fusion.expert_names.index(name)]}
            lost = {s for s in DETECTION_SENSORS if not sample.present(s) and sample.absence[s] != STANDBY}
            commands = self.power.update(t_s, needed, result.condition_estimate, lost | set(result.degraded_sensors))
        released = self._apply_power(commands)
        # a sensor draws power unless it stands by: dropped, frozen or warming sensors still do
        sensors_on = [s for s in SENSORS if sample.absence.get(s) not in (STANDBY, NOT_SUBSCRIBED)]
        for role in frame.messages:
            self.used[role] += sample.present(role)
        self.used["imu"] += len(frame.imu) if sample.present("imu") else 0  # (an IMU pivot counts above)
        energy = frame_energy(self.profile, self.fusion.cost_table.frame_flops(result.components), sensors_on,
                              self.frame_period_s, result.latency_ms)
        self.frames_run += 1
        last_received = max([m.received_ns for m in frame.messages.values()] + [m.received_ns for _, m in frame.imu])
        return FrameOutcome(frame.stamp_ns, frame.pivot, sample, result, energy, commands, last_received, released)

    def _apply_power(self, commands: list[PowerCommand]) -> list[ReadyFrame]:
        """Frames stop waiting for sensors put in standby (the pivot hands over to a fallback)."""
        frames = []
        for command in commands:
            if command.sensor not in self.sync.config.roles:
                continue
            try:
                frames += self.sync.set_standby(command.sensor, command.state == STANDBY)
            except ValueError as exc:  # the pivot, with no fallback awake: it keeps defining frames
                log.warning("power: %s stays a synchronisation role: %s", command.sensor, exc)
        self._count_sync_drops()
        return self._ready(frames)

    # ------------------------------------------------------------------ helpers
    def _placement(self, role: str, frame_id: str, n_messages: int = 1) -> np.ndarray | None:
        """base <- frame_id from the calibration, or None (``n_messages`` counted as dropped)."""
        cached = self._base_from.get(frame_id)
        if cached is not None:
            return cached
        try:
            base_from = self.calibration.lookup(self.mapping.base_frame_id, frame_id)
        except StaticTfError as exc:
            if self.mapping.untransformed_frames != "identity":
                self._drop(role, NO_CALIBRATION, str(exc), n_messages)
                return None
            # the mapping says: a recording without calibration, frames taken as mounted at base
            log.warning("%s: frame %r is not in the calibration; taken as mounted at %s (untransformed_frames: "
                        "identity)", role, frame_id, self.mapping.base_frame_id)
            self.assumed_identity_frames.append(frame_id)
            base_from = np.eye(4)
        self._base_from[frame_id] = base_from
        return base_from

    def _camera(self, role: str, msg: DecodedMessage, base_from: np.ndarray) -> CameraGeometry | None:
        intr = self._intrinsics.get(role)
        h, w = msg.payload.shape[:2]
        if intr is None:
            self._drop(role, NO_CAMERA_INFO, "no CameraInfo received yet")
            return None
        if (intr.width_px, intr.height_px) not in ((w, h), (0, 0)):
            self._drop(role, f"{DECODE_ERROR}:camera_info_size", f"CameraInfo {intr.width_px}x{intr.height_px}, "
                                                                     f"image {w}x{h}")
            return None
        return CameraGeometry.from_arrays(w, h, intr.fx, intr.fy, intr.cx, intr.cy, base_from)

    def _count_sync_drops(self) -> None:
        """Mirror the synchroniser's drop counters into ``drops`` as ``sync:<cause>``."""
        for (role, cause), n in self.sync.drops.items():
            new = n - self._counted_sync[(role, cause)]
            if new:
                self._counted_sync[(role, cause)] = n
                self._drop(role, f"sync:{cause}", "stamp synchroniser", new)

    def _drop(self, sensor: str, reason: str, detail: str, n: int = 1) -> None:
        self.drops[(sensor, reason)] += n
        if (sensor, reason) not in self._warned:
            self._warned.add((sensor, reason))
            log.warning("%s: %s (%s); further ones are only counted", sensor, reason, detail)
