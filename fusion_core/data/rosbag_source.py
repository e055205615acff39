"""Recordings (rosbag2 MCAP or sqlite3, ROS 1 ``.bag``) as a sequence of :class:`FusionSample`.

Construction reads the bag once, in one pass, with ``rosbags.highlevel.AnyReader``: every
message of a mapped topic is deserialised, decoded to light numpy arrays in its sensor frame
(``fusion_core.data.ros_decode``) and kept per topic, sorted by header stamp. Memory is
therefore about the size of the mapped sensor data; ``__getitem__`` only selects and
transforms. Calibration comes from the static TF tree (``/tf_static``), intrinsics from
CameraInfo.

Damage: a rosbag2 bag rosbags refuses to open (a recorder killed mid-write leaves an MCAP
without its closing index, a db3 with a damaged tail) is read front to back by
:mod:`fusion_core.data.bag_salvage` instead, as ``dyn-fusion replay``'s player reads it: the
same messages in the same order, so both make the same frames. Reading that stops early (there,
or in the middle of a bag rosbags opened) keeps every message before the damage and leaves the
note of where and why in :attr:`RosbagSource.source_error` (``evaluate`` reports it as replay's
report does); a bag of which not one message can be read is a :class:`DamagedBagError`.

Synchronisation (``TopicMapping.sync_tolerance_s``), with ``t`` the header stamp of a reference
sensor message (one sample per such message, so a reference message that is missing, e.g.
dropped by a fault, yields no sample at all):

* rgb, depth, lidar, radar: the message whose header stamp is **nearest to t** among those with
  ``|stamp - t| <= tolerance`` of that sensor; on a tie the earlier one. Looking ahead as far as
  behind matches the simulator's frames (a capture with a phase offset belongs to the frame it
  follows) and real rigs whose sensors stamp slightly after the reference; an online consumer
  of this rule waits ``tolerance`` before assembling a frame. Among messages with the very same
  stamp the last logged one wins: a driver that republishes one capture while filling it in
  (sick_scan's radar clouds) ends with the complete version.
* IMU: every sample with stamp in ``(t - imu_window_s, t]``, oldest first (causal). With
  ``reference_sensor: imu`` (recordings without a detection sensor) every IMU message is a
  reference, so each sample's window ends with that message.
* ground truth and labels: nearest within the ``ground_truth`` tolerance.

Header stamps, not log times, are used throughout: a late delivery (latency) still lands in the
frame it was captured for.

Calibration: a sensor frame the static TF tree does not connect to ``base_frame_id`` is a
:class:`StaticTfError`, unless the mapping says ``untransformed_frames: identity``: then the
frame is taken as mounted at ``base_frame_id``, warned about once, and listed in
:attr:`RosbagSource.assumed_identity_frames`.

Absence reasons: ``not_recorded`` (no topic mapped or none in the bag), ``no_message``
(nothing within tolerance), ``dropped_by_fault`` (nothing within tolerance and the labels say
the sensor was dropped or in a dropout fault), ``no_camera_info``, and
``decode_error:<what>`` for a malformed message (``encoding``, ``truncated``,
``point_step_mismatch``, ``size_mismatch``, ``missing_field``, ``field_type``,
``camera_info``, ``camera_info_size``, ``deserialize``, ``type``). Every malformed message and
every dropped NaN point is counted once in :attr:`RosbagSource.drops`; each kind is logged once.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from fusion_core.boxes import CLASS_NAMES, YAW, wrap_angle
from fusion_core.config_io import ConfigError
from fusion_core.data import ros_decode as rd
from fusion_core.data.bag_metadata import bag_information, metadata_mismatches, reader_paths
from fusion_core.data.bag_salvage import BagReadError, salvage, stopped_reading, storage_files
from fusion_core.data.geometry import rotate_vectors, transform_points
from fusion_core.data.intrinsics import PinholeIntrinsics
from fusion_core.data.ros_types import ros2_typestore
from fusion_core.data.sample import CameraGeometry, FusionSample
from fusion_core.data.static_tf import StaticTfError, StaticTfTree
from fusion_core.data.topic_mapping import TopicMapping
from fusion_core.vocabulary import (
    CAMERA_INFO_TYPE,
    CAMERAS,
    DECODE_ERROR,
    DETECTION_SENSORS,
    DROPPED_BY_FAULT,
    DUPLICATE_STAMP,
    NO_CAMERA_INFO,
    NO_MESSAGE,
    NOT_RECORDED,
    OUT_OF_ORDER,
    SENSOR_SPECS,
    SENSORS,
)

log = logging.getLogger(__name__)

NAN_POINTS = "nan_points"  # drops key: points (not messages) dropped for a non-finite value

_POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
_EXPECTED_TYPE = {
    **{s: spec.message_type for s, spec in SENSOR_SPECS.items()},
    **{f"{c}_info": CAMERA_INFO_TYPE for c in CAMERAS}, "ground_truth": "vision_msgs/msg/Detection3DArray",
    "labels": "diagnostic_msgs/msg/DiagnosticArray", "tf_static": "tf2_msgs/msg/TFMessage",
}
_NS = 1_000_000_000


@cache
def fallback_typestore():
    """ROS 2 types (Kilted + the vision_msgs of our bags) for bags without embedded definitions."""
    return ros2_typestore()


def complete_typestore(reader: AnyReader) -> None:
    """A bag with definitions for only some topics gets the rest from the fallback store
    (AnyReader uses its default store only when the bag embeds no definition at all)."""
    if not reader.is2:
        return
    have = reader.typestore.fielddefs
    if all(c.msgtype in have for c in reader.connections):
        return
    extra = {k: v for k, v in fallback_typestore().fielddefs.items() if k not in have}
    reader.typestore.register(extra)


def read_static_tf(path: str | Path, mapping: TopicMapping) -> StaticTfTree:
    """The static TF tree of a recording: every message on ``mapping.tf_static_topic`` (an empty
    tree when the bag has none; messages that fail to deserialise are skipped with a warning)."""
    tree = StaticTfTree()
    # (storage files alone when metadata.yaml lies about a type: see fusion_core.data.bag_metadata)
    with AnyReader(reader_paths(Path(path)), default_typestore=fallback_typestore()) as reader:
        complete_typestore(reader)
        conns = [c for c in reader.connections if c.topic == mapping.tf_static_topic]
        if not conns:  # (AnyReader.messages reads every connection when given none)
            return tree
        for conn, _, raw in reader.messages(connections=conns):
            try:
                tree.add_message(reader.deserialize(raw, conn.msgtype))
            except Exception as exc:
                log.warning("%s: a %s message could not be read: %s", path, mapping.tf_static_topic, exc)
    return tree


def _custom_data(path: Path) -> dict[str, str]:
    """rosbag2 ``metadata.yaml`` custom_data (key -> string), {} for other bags. Read from the
    file itself: rosbags keeps it only on private reader attributes."""
    info = bag_information(path)
    try:
        return {} if info is None else {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}
    except (TypeError, AttributeError):
        return {}  # AnyReader reports a damaged metadata file itself


class DamagedBagError(ConfigError):
    """Not one message of the bag can be read (an empty or overwritten storage file, a damaged
    ROS 1 bag): one line naming the bag and the reader's reason."""


@dataclass
class _Entry:
    """One decoded message: payload in its own frame, or the reason it could not be decoded."""

    stamp_ns: int
    frame_id: str
    payload: Any = None
    error: str | None = None          # "decode_error:<what>" when payload is unusable
    camera: CameraGeometry | None = None  # images: geometry resolved after the pass


class _Stream:
    """Entries of one topic role, sorted by header stamp (stable: equal stamps keep log order)."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.stamps = np.zeros(0, np.int64)

    def finish(self) -> None:
        self.entries.sort(key=lambda e: e.stamp_ns)
        self.stamps = np.array([e.stamp_ns for e in self.entries], np.int64)

    def nearest(self, t_ns: int, tol_ns: int) -> _Entry | None:
        """Entry nearest to t with |stamp - t| <= tol; ties go to the earlier stamp; of entries
        sharing one stamp, the last logged."""
        k = int(np.searchsorted(self.stamps, t_ns, side="right"))  # entries[k-1] <= t < entries[k]
        best = None
        if k > 0 and t_ns - self.stamps[k - 1] <= tol_ns:
            best = k - 1  # already the last of its equal-stamp run (side="right")
        if k < len(self.stamps) and self.stamps[k] - t_ns <= tol_ns and (
                best is None or self.stamps[k] - t_ns < t_ns - self.stamps[best]):
            best = int(np.searchsorted(self.stamps, self.stamps[k], side="right")) - 1
        return None if best is None else self.entries[best]

    def window(self, lo_exclusive_ns: int, hi_inclusive_ns: int) -> range:
        """Indices of entries with stamp in (lo, hi]."""
        return range(int(np.searchsorted(self.stamps, lo_exclusive_ns, side="right")),
                     int(np.searchsorted(self.stamps, hi_inclusive_ns, side="right")))


class RosbagSource(Sequence[FusionSample]):
    """``FusionSample`` view of one recording, mapped by a :class:`TopicMapping` (see module doc).

    ``path``: a rosbag2 directory (MCAP or sqlite3) or a ROS 1 ``.bag`` file. ``mapping``: a
    ``TopicMapping`` or the path of its YAML file. Raises ``FileNotFoundError`` for a missing
    bag, ``ValueError`` when the reference topic is not in the bag or has no message, and
    :class:`StaticTfError` when a sensor frame is not connected to ``base_frame_id`` (unless
    ``mapping.untransformed_frames`` is ``identity``).

    Attributes: ``mapping``; ``drops`` (Counter keyed by (sensor, reason)); ``stamps_ns``
    ((n,) int64 reference header stamps); ``time_origin_ns`` (``FusionSample.time_s`` is
    ``(stamp - time_origin_ns) / 1e9``: the simulator's epoch when the bag records it, else 0,
    i.e. Unix seconds); ``calibration`` (sensor -> (4, 4) base <- sensor frame, from the first
    message's frame); ``scenario_name`` (simulator bags, else None); ``custom_data``;
    ``assumed_identity_frames`` (frame ids taken as mounted at ``base_frame_id`` because the TF
    tree does not place them, in the order met; empty unless ``untransformed_frames: identity``);
    ``source_error`` (None, or where and why reading stopped early at damage: the samples are
    those of the messages before it); ``source_warnings`` (what the bag's metadata.yaml says
    wrongly of it, each a line naming the topic and both types; the storage's type was used).
    """

    def __init__(self, path: str | Path, mapping: TopicMapping | str | Path):
        self.path = Path(path)
        self.mapping = mapping if isinstance(mapping, TopicMapping) else TopicMapping.load(mapping)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such bag")
        self.drops: Counter[tuple[str, str]] = Counter()
        self._warned: set[tuple[str, str]] = set()
        self._last_stamp: dict[str, int] = {}        # sensor role -> newest stamp taken (log order)
        self.source_error: str | None = None          # where and why reading stopped early (see _read)
        self.source_warnings: list[str] = []          # what the bag says wrongly of itself (see _messages)
        m = self.mapping
        # topic -> roles (a topic may serve two roles, e.g. one CameraInfo for both cameras)
        roles: dict[str, list[str]] = {}
        for role, topic in (("rgb", m.rgb_image_topic), ("depth", m.depth_image_topic), ("lidar", m.lidar_topic),
                            ("radar", m.radar_topic), ("imu", m.imu_topic), ("rgb_info", m.rgb_camera_info_topic),
                            ("depth_info", m.depth_camera_info_topic), ("ground_truth", m.ground_truth_topic),
                            ("labels", m.labels_topic), ("tf_static", m.tf_static_topic)):
            if topic:
                roles.setdefault(topic, []).append(role)
        self._streams: dict[str, _Stream] = {role: _Stream() for rs in roles.values() for role in rs}
        tf_messages: list = []
        self.custom_data: dict[str, str] = _custom_data(self.path)
        self._read(roles, tf_messages)
        for stream in self._streams.values():
            stream.finish()
        self._tf = StaticTfTree.from_messages(tf_messages)
        self._base_from: dict[str, np.ndarray] = {}   # frame id -> base <- frame
        self.assumed_identity_frames: list[str] = []
        self._resolve_frames()
        self._attach_camera_geometry()
        ref = self._streams.get(m.reference_sensor)
        if ref is None or not ref.entries:
            damage = "" if self.source_error is None else f"; reading stopped early: {self.source_error}"
            raise ConfigError(f"{self.path}: no message on the reference topic {m.sensor_topic(m.reference_sensor)!r} "
                              f"(reference_sensor: {m.reference_sensor}){damage}")
        self.stamps_ns: np.ndarray = ref.stamps
        self.time_origin_ns = int(self.custom_data.get("dyn_fusion.epoch_ns", 0))
        self.scenario_name: str | None = self.custom_data.get("dyn_fusion.scenario")
        self.calibration: dict[str, np.ndarray] = {}
        for sensor in SENSORS:
            good = [e for e in getattr(self._streams.get(sensor), "entries", ()) if e.error is None]
            if good:
                self.calibration[sensor] = self._base_from[good[0].frame_id]

    # ------------------------------------------------------------------ indexing (one pass)
    def _read(self, roles: dict[str, list[str]], tf_messages: list) -> None:
        """Every message of a mapped topic, in log order, into its streams. Reading that stops
        early at damage keeps what precedes it and says where and why in ``source_error`` (the
        words of replay's report, so both say the same of one bag); a bag of which nothing at
        all could be read is a DamagedBagError."""
        present: set[str] = set()   # topics the bag has (salvaging: those met so far)
        count = 0
        try:
            for topic, msgtype, log_ns, raw, deserialize in self._messages(present):
                count += 1
                if topic in roles:
                    self._take(roles[topic], topic, msgtype, log_ns, raw, deserialize, tf_messages)
        except BagReadError as exc:
            if count == 0:
                raise DamagedBagError(f"nothing to read: {exc}") from None
            self.source_error = str(exc)
            log.warning("%s; the frames are made of the messages read", exc)
        for topic, rs in roles.items():
            if topic not in present:
                why = "is not in the bag" if self.source_error is None else "has no message before the damage"
                log.warning("%s: topic %s (%s) %s; treated as not recorded", self.path, topic, ", ".join(rs), why)
                for role in rs:
                    del self._streams[role]

    def _messages(self, present: set[str]) -> Iterator[tuple[str, str, int, Any, Callable[[Any, str], Any]]]:
        """(topic, type, log time, raw, deserialize) of every message in the bag, adding each
        topic to ``present``; BagReadError where reading stops early. A bag rosbags refuses to
        open is read front to back by bag_salvage (as replay's player does: same messages, same
        order, same note), since rosbags needs the index at the end that a cut recording lacks.
        A metadata.yaml that declares a topic with another type than its storage records is
        overruled by the storage (what the bytes are) and reported in ``source_warnings``, as
        replay's player does (fusion_core.data.bag_metadata)."""
        mismatches = metadata_mismatches(self.path)
        for mismatch in mismatches:
            self.source_warnings.append(mismatch.warning(self.path))
            log.warning("%s", self.source_warnings[-1])
        reader = AnyReader(reader_paths(self.path, mismatches), default_typestore=fallback_typestore())
        try:
            reader.open()
        except Exception as exc:
            if not storage_files(self.path)[1]:  # a ROS 1 bag or no storage file: nothing to walk
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise DamagedBagError(f"{self.path}: rosbags cannot read this bag ({reason})") from None
            deserialize = fallback_typestore().deserialize_cdr
            for m in salvage(self.path, f"{type(exc).__name__}: {exc}"):
                present.add(m.topic)
                yield m.topic, m.msgtype, m.log_ns, m.data, deserialize
            return  # (salvage ends with BagReadError)
        try:
            complete_typestore(reader)
            present.update(c.topic for c in reader.connections)
            # Every topic, not only the mapped ones: counted as replay counts them, so a note
            # saying after how many messages reading stopped reads the same in both.
            messages = reader.messages()
            count, last_ns = 0, None
            while True:
                try:  # only the reader's own failures are damage; ours go up as they are
                    conn, log_ns, raw = next(messages)
                except StopIteration:
                    return
                except Exception as exc:
                    raise stopped_reading(self.path, count, last_ns, exc) from None
                count, last_ns = count + 1, log_ns
                yield conn.topic, conn.msgtype, log_ns, raw, reader.deserialize
        finally:
            reader.close()

    def _take(self, rs: list[str], topic: str, msgtype: str, log_ns: int, raw, deserialize, tf_messages: list) -> None:
        """One message of a mapped topic into the streams of its roles."""
        try:
            msg = deserialize(raw, msgtype)
        except Exception as exc:
            msg, error = None, exc
        for role in rs:
            if msg is None:
                self._bad(role, log_ns, "", "deserialize", f"{topic}: {error}")
            elif msgtype != _EXPECTED_TYPE[role]:
                self._bad(role, log_ns, "", "type", f"{topic} is {msgtype}, expected {_EXPECTED_TYPE[role]}")
            elif role == "tf_static":
                tf_messages.append(msg)
            else:
                self._index(role, msg)

    def _index(self, role: str, msg) -> None:
        header = msg.header
        stamp, frame = rd.stamp_ns(header), header.frame_id
        m = self.mapping
        if role in SENSORS and not self._in_order(role, stamp):
            return
        try:
            if role == "lidar":
                payload, n_nan = rd.decode_cloud(msg, ("x", "y", "z", m.lidar_intensity_field))
            elif role == "radar":
                payload, n_nan = rd.decode_cloud(msg, ("x", "y", "z", m.radar_doppler_field, m.radar_rcs_field))
            elif role == "rgb":
                payload, n_nan = rd.decode_rgb(msg), 0
            elif role == "depth":
                payload, n_nan = rd.decode_depth(msg), 0
            elif role == "imu":
                payload, n_nan = rd.decode_imu(msg), 0
            elif role in ("rgb_info", "depth_info"):
                payload, n_nan = rd.decode_camera_info(msg), 0
            elif role == "ground_truth":
                payload, unknown = rd.decode_detections(msg, CLASS_NAMES)
                for name in unknown:
                    self._drop("ground_truth", f"unknown_class:{name}", "box left out of the ground truth")
                n_nan = 0
            else:  # labels
                payload, n_nan = rd.decode_labels(msg), 0
        except rd.DecodeError as exc:
            self._bad(role, stamp, frame, exc.what, str(exc))
            return
        if n_nan:
            self._drop(role, NAN_POINTS, f"{n_nan} points with a non-finite value dropped", n_nan)
        self._streams[role].entries.append(_Entry(stamp, frame, payload))

    def _in_order(self, role: str, stamp: int) -> bool:
        """Whether a sensor message (in log order) may join its stream, counting those that may
        not as the live synchroniser does, so ``evaluate`` on a bag and ``replay`` of it see the
        same frames: a stamp older than one already taken is dropped (``out_of_order``; sorting
        by stamp instead would pair a re-stamped message with the wrong frame's ground truth); a
        repeated stamp replaces the message taken under it (``duplicate_stamp``: one frame per
        stamp, and a capture republished as it fills in, as sick_scan's radar does, is read in
        its last version)."""
        last = self._last_stamp.get(role)
        if last is not None and stamp < last:
            self._drop(role, OUT_OF_ORDER, f"stamp {stamp} ns logged after {last} ns")
            return False
        if stamp == last:
            self._drop(role, DUPLICATE_STAMP, f"stamp {stamp} ns logged again; the last version is used")
            entries = self._streams[role].entries
            if entries and entries[-1].stamp_ns == stamp:  # (a broken IMU sample left no entry)
                entries.pop()
        self._last_stamp[role] = stamp
        return True

    def _bad(self, role: str, stamp: int, frame: str, what: str, detail: str) -> None:
        """A malformed message: kept as an error entry (absent in its frame), counted once."""
        sensor = role.removesuffix("_info")  # CameraInfo trouble makes its camera absent
        what = f"camera_info:{what}" if role.endswith("_info") and what != "camera_info" else what
        reason = f"{DECODE_ERROR}:{what}"
        self._drop(sensor, reason, detail)
        if role == "imu" or role == "tf_static":
            return  # an IMU window simply lacks the sample; a broken TF message adds nothing
        self._streams[role].entries.append(_Entry(stamp, frame, None, reason))

    def _drop(self, sensor: str, reason: str, detail: str, n: int = 1) -> None:
        self.drops[(sensor, reason)] += n
        if (sensor, reason) not in self._warned:
            self._warned.add((sensor, reason))
            log.warning("%s: %s %s (%s); further ones are only counted in .drops", self.path, sensor, reason, detail)

    def _resolve_frames(self) -> None:
        """base <- frame for every frame id a sensor or ground truth used (fails loudly: a
        sensor whose mount is unknown cannot be placed, and guessing would corrupt training;
        only ``untransformed_frames: identity`` allows the guess, and says so)."""
        base = self.mapping.base_frame_id
        for role, stream in self._streams.items():
            if role.endswith("_info") or role in ("labels", "tf_static"):
                continue
            for frame in dict.fromkeys(e.frame_id for e in stream.entries if e.error is None):  # first-met order
                if frame in self._base_from:
                    continue
                if role == "ground_truth" and frame.lstrip("/") in ("", base):
                    self._base_from[frame] = np.eye(4)
                    continue
                try:
                    self._base_from[frame] = self._tf.lookup(base, frame)
                except StaticTfError as exc:
                    topic = self._topic_of(role)
                    if self.mapping.untransformed_frames == "identity":
                        self._base_from[frame] = np.eye(4)
                        self.assumed_identity_frames.append(frame)
                        log.warning("%s: %s (%s) frame %r is not placed by the static TF tree (%s); assumed "
                                    "mounted at %s with no offset or rotation (untransformed_frames: identity)",
                                    self.path, role, topic, frame, exc, base)
                        continue
                    raise StaticTfError(f"{self.path}: {role} ({topic}) frame {frame!r}: {exc}; add it to "
                                        f"{self.mapping.tf_static_topic} or map the topic to ''") from None

    def _topic_of(self, role: str) -> str:
        m = self.mapping
        return {"ground_truth": m.ground_truth_topic}.get(role) or m.sensor_topic(role)

    def _attach_camera_geometry(self) -> None:
        """Pair each image with the CameraInfo of the same stamp (else the newest before it,
        else the first) and check that the sizes agree."""
        for cam in CAMERAS:
            images, infos = self._streams.get(cam), self._streams.get(f"{cam}_info")
            if images is None:
                continue
            for e in images.entries:
                if e.error is not None:
                    continue
                if infos is None or not infos.entries:
                    e.error = NO_CAMERA_INFO
                    continue
                k = max(0, int(np.searchsorted(infos.stamps, e.stamp_ns, side="right")) - 1)
                info = infos.entries[k]
                if info.error is not None:
                    e.error = info.error
                    continue
                intr: PinholeIntrinsics = info.payload
                h, w = e.payload.shape[:2]
                if (intr.width_px, intr.height_px) not in ((w, h), (0, 0)):
                    e.error = f"{DECODE_ERROR}:camera_info_size"
                    self._drop(cam, e.error, f"CameraInfo {intr.width_px}x{intr.height_px}, image {w}x{h}")
                    continue
                e.camera = CameraGeometry.from_arrays(w, h, intr.fx, intr.fy, intr.cx, intr.cy,
                                                      self._base_from[e.frame_id])

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.stamps_ns)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        return self._sample(i)

    def _sample(self, i: int) -> FusionSample:
        m = self.mapping
        tol = m.sync_tolerance_s
        t = int(self.stamps_ns[i])
        labels_entry = self._nearest("labels", t, tol.for_stream("ground_truth"))
        labels: rd.Labels | None = None if labels_entry is None else labels_entry.payload
        absence: dict[str, str] = {}
        picked: dict[str, _Entry] = {}
        for sensor in DETECTION_SENSORS:
            if sensor not in self._streams:
                absence[sensor] = NOT_RECORDED
                continue
            e = (self._streams[sensor].entries[i] if sensor == m.reference_sensor
                 else self._nearest(sensor, t, tol.for_stream(sensor)))
            if e is None:
                absence[sensor] = DROPPED_BY_FAULT if self._dropped(sensor, [labels]) else NO_MESSAGE
            elif e.error is not None:
                absence[sensor] = e.error
            else:
                picked[sensor] = e
        lidar = radar = imu = None
        if "lidar" in picked:
            e = picked["lidar"]
            lidar = np.empty((len(e.payload), 4), np.float32)
            lidar[:, :3] = transform_points(self._base_from[e.frame_id], e.payload[:, :3])
            lidar[:, 3] = e.payload[:, 3]
        if "radar" in picked:
            e = picked["radar"]
            radar = e.payload.copy()  # doppler and rcs are scalars: only the position moves
            radar[:, :3] = transform_points(self._base_from[e.frame_id], e.payload[:, :3])
        imu = self._imu_window(t, absence)
        gt = self._nearest("ground_truth", t, tol.for_stream("ground_truth"))
        return FusionSample(
            time_s=(t - self.time_origin_ns) / _NS,
            lidar_xyzi=lidar,
            radar_xyzdr=radar,
            depth_m=picked["depth"].payload.copy() if "depth" in picked else None,
            depth_camera=picked["depth"].camera if "depth" in picked else None,
            rgb=picked["rgb"].payload.copy() if "rgb" in picked else None,
            rgb_camera=picked["rgb"].camera if "rgb" in picked else None,
            imu=imu,
            absence=absence,
            gt_boxes=None if gt is None or gt.error is not None else self._boxes_in_base(gt),
            condition=None if labels is None else labels.condition,
            faults={} if labels is None else dict(labels.faults),
        ).without_empty_ranging()

    def _nearest(self, role: str, t_ns: int, tol_s: float) -> _Entry | None:
        stream = self._streams.get(role)
        return None if stream is None else stream.nearest(t_ns, round(tol_s * _NS))

    @staticmethod
    def _dropped(sensor: str, labels: list) -> bool:
        """Whether labels say captures of ``sensor`` were dropped (dropout fault or count)."""
        return any(lb is not None and (lb.faults.get(sensor) == "dropout" or lb.dropped.get(sensor, 0) > 0)
                   for lb in labels)

    def _imu_window(self, t: int, absence: dict[str, str]) -> np.ndarray | None:
        """(K, 6) float32 samples with stamps in (t - window, t], rotated to base_link axes."""
        stream = self._streams.get("imu")
        if stream is None:
            absence["imu"] = NOT_RECORDED
            return None
        lo = t - round(self.mapping.imu_window_s * _NS)
        idx = stream.window(lo, t)
        if not idx:
            labels = self._streams.get("labels")
            window_labels = [] if labels is None else [labels.entries[k].payload for k in labels.window(lo, t)]
            absence["imu"] = DROPPED_BY_FAULT if self._dropped("imu", window_labels) else NO_MESSAGE
            return None
        entries = stream.entries[idx.start:idx.stop]
        raw = np.stack([e.payload for e in entries])
        out = np.empty((len(entries), 6), np.float32)
        frames = [e.frame_id for e in entries]
        for frame in set(frames):  # normally one IMU frame; rotate each group by its own mount
            rows = np.array([f == frame for f in frames])
            m = self._base_from[frame]
            out[rows, :3] = rotate_vectors(m, raw[rows, :3])
            out[rows, 3:] = rotate_vectors(m, raw[rows, 3:])
        return out

    def _boxes_in_base(self, e: _Entry) -> np.ndarray:
        """Ground-truth boxes moved from their message frame to base_link (yaw turned by the
        frame's heading: ground truth frames are assumed level, as base_link is)."""
        boxes = e.payload.copy()
        tf = self._base_from[e.frame_id]
        if not np.array_equal(tf, np.eye(4)) and len(boxes):
            boxes[:, :3] = transform_points(tf, boxes[:, :3])
            boxes[:, YAW] = wrap_angle(boxes[:, YAW] + np.arctan2(tf[1, 0], tf[0, 0]))
        return boxes
