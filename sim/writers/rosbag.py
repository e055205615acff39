"""Record simulator frames as a ROS 2 bag (rosbag2 directory, MCAP storage).

Usage::

    from sim.config import ScenarioConfig
    from sim.simulator import Simulator
    from sim.writers.rosbag import RosbagWriter

    sim = Simulator(ScenarioConfig())
    with RosbagWriter(Path("runs/demo_bag"), sim, overwrite=True) as bag:
        for frame in sim.run(100):
            bag.write_frame(frame)
    # bag.counts: messages written per topic (also returned by bag.close())

What ends up in the bag (topic names and types: :mod:`sim.topics`; full description:
``docs/bag_format.md``):

* every delivered sensor capture (dropped captures write nothing), each camera image with a
  CameraInfo of the same stamp;
* ``/tf_static`` once at the start (base_link -> each sensor frame, offered QoS
  transient_local so ``ros2 bag play`` latches it), then per frame ``/tf`` (odom -> base_link),
  ``/odom``, ground-truth markers and detections, and the ``/sim/labels`` condition/fault labels.

Time: a scenario time ``t`` (seconds from 0) maps to ``epoch_to_ns(epoch_s) + round(t * 1e9)``
nanoseconds (``epoch_to_ns`` is exact for the float given). Header stamps are the capture time
(frame time for ground truth and labels); the bag's log time of a message is its delivery time
(``SensorReading.receive_time_s``), so a latency fault shows up as log time > header stamp. Messages are written in non-decreasing log
time: readings are held back until no later frame can deliver anything earlier.

Types are the standard ROS 2 (Kilted) messages, plus vision_msgs/msg/Detection3DArray whose
definition is registered from :mod:`sim.writers.ros_types`; every channel carries its full
message definition, so the bag decodes without any ROS installation.

Leaving the ``with`` block - normally or through an exception - flushes and finalises the bag,
so an interrupted recording is still a valid bag of the frames written so far.
"""
from __future__ import annotations

import heapq
import itertools
import json
import shutil
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.boxes import CLASS_ID, CLASS_NAMES, H, L, VX, VY, W, X, Y, YAW, Z
from fusion_core.config_io import to_mapping
from sim import topics as T
from sim.calibration import BASE_FRAME, WORLD_FRAME
from sim.config import SENSOR_NAMES
from sim.geometry import quaternion_xyzw
from sim.readings import SensorReading, SimFrame
from sim.simulator import Simulator
from sim.writers.ros_types import shared_typestore

BAG_VERSION = 9  # rosbag2 metadata version (Jazzy and later)
_NS_PER_S = 1_000_000_000
# Readings are flushed once their log time is this far below the next frame's start: covers the
# sub-nanosecond slack of the simulator's capture schedule and float rounding.
_FLUSH_MARGIN_NS = 1_000

CLASS_COLORS_RGBA: dict[str, tuple[float, float, float, float]] = {
    "car": (0.2, 0.5, 1.0, 0.5),
    "pedestrian": (1.0, 0.55, 0.1, 0.5),
    "cyclist": (0.2, 0.85, 0.3, 0.5),
}
_UNKNOWN_COLOR = (0.7, 0.7, 0.7, 0.5)
_BAG_FILE_NAMES = ("metadata.yaml",)
_BAG_FILE_SUFFIXES = (".mcap", ".db3", ".zstd", ".tmp")


def _qos(durability: QosDurability, depth: int) -> Qos:
    zero = QosTime(0, 0)  # 0/0 = "unspecified" -> the rmw default (infinite)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


# Reliable publishers match both reliable and best-effort subscribers on playback.
QOS_DEFAULT = _qos(QosDurability.VOLATILE, 10)
QOS_LATCHED = _qos(QosDurability.TRANSIENT_LOCAL, 1)


def epoch_to_ns(epoch_s: float) -> int:
    """Unix seconds -> integer nanoseconds, splitting off the whole seconds first so the result
    is exact for the float given (``round(epoch_s * 1e9)`` would be off by up to 128 ns, since
    float64 cannot hold ~1.7e18 to the nanosecond)."""
    whole = int(epoch_s // 1)
    return whole * _NS_PER_S + round((epoch_s - whole) * _NS_PER_S)


def _looks_like_bag(path: Path) -> bool:
    """True when a directory holds nothing but rosbag2 files (safe to delete on overwrite)."""
    return all(p.is_file() and (p.name in _BAG_FILE_NAMES or p.name.endswith(_BAG_FILE_SUFFIXES))
               for p in path.iterdir())


class RosbagWriter:
    """Writes :class:`SimFrame` objects of ``simulator`` to a rosbag2/MCAP bag at ``path``.

    ``path`` is the bag directory (created; the MCAP file inside is ``<path>/<path.name>.mcap``).
    An existing ``path`` raises FileExistsError unless ``overwrite`` is set; then it is removed
    first (only if it is a file or a directory of bag files). ``epoch_s`` is the wall-clock time
    (Unix seconds) that scenario time 0 maps to.
    """

    def __init__(self, path: Path, simulator: Simulator, *, overwrite: bool = False,
                 epoch_s: float = 1_700_000_000.0):
        path = Path(path)
        if not 0.0 < epoch_s < 2**31 - 10**6:
            raise ValueError(f"epoch_s must be a positive Unix time that fits ROS time (int32 seconds), got {epoch_s}")
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{path}: a bag (or file) already exists there; pass overwrite=True "
                                      f"(CLI: --overwrite) to replace it, or choose another path")
            if path.is_dir() and not path.is_symlink():
                if not _looks_like_bag(path):
                    raise FileExistsError(f"{path}: exists and holds files that are not part of a rosbag2 "
                                          f"bag; refusing to delete it even with overwrite=True")
                shutil.rmtree(path)
            else:
                path.unlink()
        self.path = path
        self.mcap_path = path / f"{path.name}.mcap"
        self.simulator = simulator
        self.epoch_s = float(epoch_s)
        self._epoch_ns = epoch_to_ns(epoch_s)
        self._period_s = simulator.frame_period_s
        self._ts = shared_typestore()
        self._types = self._ts.types
        self._closed = False
        self._last_frame_index = -1
        self._last_log_ns = 0
        self._pending: list[tuple[int, int, Any, str, memoryview]] = []  # heap: (log_ns, order, conn, topic, cdr)
        self._order = itertools.count()
        self.counts: dict[str, int] = {topic: 0 for topic in T.TOPIC_TYPES}
        self._prepare_static_parts()

        self._writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        cfg = simulator.config
        self._writer.set_custom_data("dyn_fusion.epoch_s", repr(self.epoch_s))
        self._writer.set_custom_data("dyn_fusion.epoch_ns", str(self._epoch_ns))
        self._writer.set_custom_data("dyn_fusion.scenario", cfg.name)
        self._writer.set_custom_data("dyn_fusion.scenario_config", json.dumps(to_mapping(cfg), sort_keys=True))
        self._writer.open()
        try:
            self._conns = {
                topic: self._writer.add_connection(
                    topic, msgtype, typestore=self._ts,
                    offered_qos_profiles=[QOS_LATCHED if topic == T.TF_STATIC_TOPIC else QOS_DEFAULT])
                for topic, msgtype in T.TOPIC_TYPES.items()
            }
            self._write_now(T.TF_STATIC_TOPIC, self._epoch_ns, self._tf_static())
        except BaseException:
            self._writer.abort()
            self._closed = True
            raise

    # ------------------------------------------------------------------ public API
    def write_frame(self, frame: SimFrame) -> None:
        """Queue the frame's ground truth, labels and readings by log time, then write every
        queued message that no later frame can precede (late deliveries wait in the queue)."""
        if self._closed:
            raise RuntimeError(f"{self.path}: write_frame() after close()")
        if frame.index <= self._last_frame_index:
            raise ValueError(f"frames must be written in order: got frame {frame.index} after {self._last_frame_index}")
        self._last_frame_index = frame.index
        frame_ns = self._ns(frame.time_s)
        header = self._header(frame_ns, BASE_FRAME)
        odom_header = self._header(frame_ns, WORLD_FRAME)
        for topic, msg in (
            (T.TF_TOPIC, self._tf(frame, odom_header)),
            (T.ODOM_TOPIC, self._odometry(frame, odom_header)),
            (T.GT_MARKERS_TOPIC, self._markers(frame, header)),
            (T.GT_DETECTIONS_TOPIC, self._detections(frame, header)),
            (T.LABELS_TOPIC, self._labels(frame, header)),
        ):
            self._queue(topic, frame_ns, msg)
        for reading in frame.readings:
            self._queue_reading(reading)
        self._flush(self._ns(frame.time_s + self._period_s) - _FLUSH_MARGIN_NS)

    def close(self) -> dict[str, int]:
        """Write everything still queued, finalise the bag; returns messages per topic
        (every topic of :data:`sim.topics.TOPIC_TYPES`, zero when none). Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._flush(None)
            except BaseException:
                self._writer.abort()
                raise
            self._writer.close()
        return dict(self.counts)

    def __enter__(self) -> "RosbagWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ queueing and writing
    def _ns(self, t_s: float) -> int:
        """Scenario seconds -> bag nanoseconds (epoch + t)."""
        return self._epoch_ns + round(t_s * _NS_PER_S)

    def _serialize(self, topic: str, msg: object) -> memoryview:
        return self._ts.serialize_cdr(msg, T.TOPIC_TYPES[topic])

    def _queue(self, topic: str, log_ns: int, msg: object) -> None:
        heapq.heappush(self._pending, (log_ns, next(self._order), self._conns[topic], topic,
                                       self._serialize(topic, msg)))

    def _write_now(self, topic: str, log_ns: int, msg: object) -> None:
        self._write(log_ns, self._conns[topic], topic, self._serialize(topic, msg))

    def _write(self, log_ns: int, conn: Any, topic: str, data: memoryview) -> None:
        if log_ns < self._last_log_ns:  # a broken invariant, never expected
            raise RuntimeError(f"{topic}: log time {log_ns} ns would go back in time (last {self._last_log_ns} ns)")
        self._last_log_ns = log_ns
        self._writer.write(conn, log_ns, data)
        self.counts[topic] += 1

    def _flush(self, before_ns: int | None) -> None:
        pending = self._pending
        while pending and (before_ns is None or pending[0][0] < before_ns):
            log_ns, _, conn, topic, data = heapq.heappop(pending)
            self._write(log_ns, conn, topic, data)

    def _queue_reading(self, r: SensorReading) -> None:
        stamp_ns = self._ns(r.capture_time_s)
        log_ns = self._ns(r.receive_time_s)
        header = self._header(stamp_ns, r.frame_id)
        sensor = r.sensor
        if sensor == "rgb":
            self._queue(T.RGB_IMAGE_TOPIC, log_ns, self._image(header, r.data, T.RGB_ENCODING))
            self._queue(T.RGB_INFO_TOPIC, log_ns, self._camera_info(sensor, header))
        elif sensor == "depth":
            self._queue(T.DEPTH_IMAGE_TOPIC, log_ns, self._image(header, r.data, T.DEPTH_ENCODING))
            self._queue(T.DEPTH_INFO_TOPIC, log_ns, self._camera_info(sensor, header))
        elif sensor == "lidar":
            self._queue(T.LIDAR_TOPIC, log_ns, self._lidar_cloud(header, r.data))
        elif sensor == "radar":
            self._queue(T.RADAR_TOPIC, log_ns, self._radar_cloud(header, r.data))
        elif sensor == "imu":
            self._queue(T.IMU_TOPIC, log_ns, self._imu(header, r.data))
        else:
            raise ValueError(f"unknown sensor {sensor!r} in a reading")

    # ------------------------------------------------------------------ message builders
    def _prepare_static_parts(self) -> None:
        """Message parts that never change: field lists, camera matrices, IMU covariances."""
        t = self._types
        point_field = t["sensor_msgs/msg/PointField"]
        self._lidar_fields = [point_field(name=n, offset=o, datatype=d, count=1) for n, o, d in T.LIDAR_POINT_FIELDS]
        self._radar_fields = [point_field(name=n, offset=o, datatype=d, count=1) for n, o, d in T.RADAR_POINT_FIELDS]
        self._cam_static = {}
        for sensor, calib in self.simulator.calibration.items():
            intr = calib.intrinsics
            if intr is None:
                continue
            k = np.array([intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0])
            p = np.array([intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
            self._cam_static[sensor] = dict(
                height=int(intr.height_px), width=int(intr.width_px), distortion_model="plumb_bob",
                d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
                roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
            )
        imu = self.simulator.config.sensors.imu
        self._imu_orientation = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        self._imu_orientation_cov = np.zeros(9)
        self._imu_orientation_cov[0] = -1.0  # orientation not provided (REP 145)
        self._imu_gyro_cov = np.diag([imu.gyro_noise_radps**2] * 3).reshape(-1)
        self._imu_accel_cov = np.diag([imu.accel_noise_mps2**2] * 3).reshape(-1)
        self._zero_cov36 = np.zeros(36)
        # Shared empty parts of every Marker (Kilted adds texture and mesh fields).
        self._marker_texture = t["sensor_msgs/msg/CompressedImage"](
            header=self._header(self._epoch_ns, ""), format="", data=np.zeros(0, np.uint8))
        self._marker_mesh = t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8))
        self._zero_duration = t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0)

    def _header(self, stamp_ns: int, frame_id: str):
        t = self._types
        sec, nsec = divmod(stamp_ns, _NS_PER_S)
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                        frame_id=frame_id)

    def _image(self, header, data: np.ndarray, encoding: str):
        if encoding == T.DEPTH_ENCODING:
            data = np.ascontiguousarray(data, dtype="<f4")
            height, width = data.shape
            step = width * 4
        else:
            data = np.ascontiguousarray(data, dtype=np.uint8)
            height, width = data.shape[:2]
            step = width * 3
        return self._types["sensor_msgs/msg/Image"](
            header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step,
            data=data.reshape(-1).view(np.uint8))

    def _camera_info(self, sensor: str, header):
        return self._types["sensor_msgs/msg/CameraInfo"](header=header, **self._cam_static[sensor])

    def _cloud(self, header, n: int, packed: np.ndarray, fields, point_step: int, dense: bool):
        return self._types["sensor_msgs/msg/PointCloud2"](
            header=header, height=1, width=n, fields=fields, is_bigendian=False, point_step=point_step,
            row_step=point_step * n, data=packed.view(np.uint8).reshape(-1), is_dense=dense)

    def _lidar_cloud(self, header, pts: np.ndarray):
        # Fill the packed 18-byte records through two strided (unaligned) views of one buffer:
        # bytes 0-15 x y z intensity as float32, bytes 16-17 ring as uint16.
        n = len(pts)
        step = T.LIDAR_POINT_STEP
        packed = np.empty(n * step, np.uint8)
        np.ndarray((n, 4), "<f4", packed, 0, (step, 4))[...] = pts[:, :4]
        np.rint(pts[:, 4], out=np.ndarray((n,), "<u2", packed, 16, (step,)), casting="unsafe")
        # is_dense: no NaN/inf coordinate (a non-finite value makes the sum non-finite)
        return self._cloud(header, n, packed, self._lidar_fields, step, bool(np.isfinite(pts[:, :3].sum())))

    def _radar_cloud(self, header, pts: np.ndarray):
        packed = np.ascontiguousarray(pts, dtype="<f4").reshape(-1, 5)
        return self._cloud(header, len(packed), packed, self._radar_fields, T.RADAR_POINT_STEP,
                           bool(np.isfinite(packed[:, :3]).all()))

    def _imu(self, header, sample: np.ndarray):
        t = self._types
        vec = t["geometry_msgs/msg/Vector3"]
        ax, ay, az, gx, gy, gz = (float(v) for v in sample)
        return t["sensor_msgs/msg/Imu"](
            header=header, orientation=self._imu_orientation, orientation_covariance=self._imu_orientation_cov,
            angular_velocity=vec(x=gx, y=gy, z=gz), angular_velocity_covariance=self._imu_gyro_cov,
            linear_acceleration=vec(x=ax, y=ay, z=az), linear_acceleration_covariance=self._imu_accel_cov)

    def _pose(self, x: float, y: float, z: float, yaw: float):
        t = self._types
        return t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=x, y=y, z=z),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2))))

    def _transform_stamped(self, header, child: str, translation, quat_xyzw):
        t = self._types
        return t["geometry_msgs/msg/TransformStamped"](
            header=header, child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](*(float(v) for v in translation)),
                rotation=t["geometry_msgs/msg/Quaternion"](*(float(v) for v in quat_xyzw))))

    def _tf_static(self):
        header = self._header(self._epoch_ns, BASE_FRAME)
        transforms = [
            self._transform_stamped(header, calib.frame_id, calib.base_from_sensor[:3, 3],
                                    quaternion_xyzw(calib.base_from_sensor[:3, :3]))
            for calib in self.simulator.calibration.values()
        ]
        return self._types["tf2_msgs/msg/TFMessage"](transforms=transforms)

    def _tf(self, frame: SimFrame, odom_header):
        x, y, yaw = (float(v) for v in frame.ego_pose_xyyaw)
        tf = self._transform_stamped(odom_header, BASE_FRAME, (x, y, 0.0), (0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)))
        return self._types["tf2_msgs/msg/TFMessage"](transforms=[tf])

    def _odometry(self, frame: SimFrame, odom_header):
        t = self._types
        x, y, yaw = (float(v) for v in frame.ego_pose_xyyaw)
        vec = t["geometry_msgs/msg/Vector3"]
        twist = t["geometry_msgs/msg/Twist"](linear=vec(x=float(frame.ego_speed_mps), y=0.0, z=0.0),
                                             angular=vec(x=0.0, y=0.0, z=float(frame.ego_yaw_rate_radps)))
        return t["nav_msgs/msg/Odometry"](
            header=odom_header, child_frame_id=BASE_FRAME,
            pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=self._pose(x, y, 0.0, yaw), covariance=self._zero_cov36),
            twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=self._zero_cov36))

    @staticmethod
    def _class_name(class_id: float) -> str:
        i = int(round(class_id))
        return CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else "unknown"

    def _marker(self, header, ns: str, marker_id: int, kind: int, pose, scale, rgba, text: str = "", points=(),
                action: int = 0):
        t = self._types
        return t["visualization_msgs/msg/Marker"](
            header=header, ns=ns, id=marker_id, type=kind, action=action, pose=pose,
            scale=t["geometry_msgs/msg/Vector3"](*scale), color=t["std_msgs/msg/ColorRGBA"](*rgba),
            lifetime=self._zero_duration, frame_locked=False, points=list(points), colors=[],
            texture_resource="", texture=self._marker_texture, uv_coordinates=[], text=text,
            mesh_resource="", mesh_file=self._marker_mesh, mesh_use_embedded_materials=False)

    def _markers(self, frame: SimFrame, header):
        t = self._types
        marker_cls = t["visualization_msgs/msg/Marker"]
        point = t["geometry_msgs/msg/Point"]
        identity = self._pose(0.0, 0.0, 0.0, 0.0)
        markers = [self._marker(header, "", 0, marker_cls.ARROW, identity, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0),
                                action=marker_cls.DELETEALL)]
        for box, track in zip(frame.gt_boxes.tolist(), frame.gt_track_ids.tolist()):
            x, y, z, l, w, h, yaw = box[X], box[Y], box[Z], box[L], box[W], box[H], box[YAW]
            name = self._class_name(box[CLASS_ID])
            r, g, b, a = CLASS_COLORS_RGBA.get(name, _UNKNOWN_COLOR)
            markers.append(self._marker(header, "boxes", track, marker_cls.CUBE, self._pose(x, y, z, yaw),
                                        (l, w, h), (r, g, b, a)))
            markers.append(self._marker(header, "labels", track, marker_cls.TEXT_VIEW_FACING,
                                        self._pose(x, y, z + h / 2 + 0.6, 0.0), (0.0, 0.0, 0.7),
                                        (1.0, 1.0, 1.0, 1.0), text=f"{name} #{track}"))
            vx, vy = box[VX], box[VY]
            markers.append(self._marker(header, "velocity", track, marker_cls.ARROW, identity, (0.15, 0.3, 0.3),
                                        (r, g, b, 1.0), points=(point(x=x, y=y, z=z), point(x=x + vx, y=y + vy, z=z))))
        return t["visualization_msgs/msg/MarkerArray"](markers=markers)

    def _detections(self, frame: SimFrame, header):
        t = self._types
        hyp_cls, hyp_pose_cls = t["vision_msgs/msg/ObjectHypothesis"], t["vision_msgs/msg/ObjectHypothesisWithPose"]
        pwc, bbox_cls, det_cls = (t["geometry_msgs/msg/PoseWithCovariance"], t["vision_msgs/msg/BoundingBox3D"],
                                  t["vision_msgs/msg/Detection3D"])
        vec = t["geometry_msgs/msg/Vector3"]
        detections = []
        for box, track in zip(frame.gt_boxes.tolist(), frame.gt_track_ids.tolist()):
            pose = self._pose(box[X], box[Y], box[Z], box[YAW])
            hyp = hyp_pose_cls(hypothesis=hyp_cls(class_id=self._class_name(box[CLASS_ID]), score=1.0),
                               pose=pwc(pose=pose, covariance=self._zero_cov36))
            detections.append(det_cls(header=header, results=[hyp],
                                      bbox=bbox_cls(center=pose, size=vec(x=box[L], y=box[W], z=box[H])),
                                      id=str(track)))
        return t["vision_msgs/msg/Detection3DArray"](header=header, detections=detections)

    def _labels(self, frame: SimFrame, header):
        t = self._types
        status, kv = t["diagnostic_msgs/msg/DiagnosticStatus"], t["diagnostic_msgs/msg/KeyValue"]
        dropped = Counter(d.sensor for d in frame.dropped)
        entries = [status(level=status.OK, name=T.LABEL_CONDITION_NAME, message=frame.condition,
                          hardware_id="simulator", values=[kv(key=T.LABEL_KEY_SEVERITY, value=f"{frame.severity:g}")])]
        for sensor in SENSOR_NAMES:
            fault = frame.active_faults.get(sensor)
            entries.append(status(
                level=status.WARN if fault else status.OK, name=f"{T.LABEL_SENSOR_PREFIX}{sensor}",
                message=fault or T.LABEL_OK_MESSAGE, hardware_id=self.simulator.calibration[sensor].frame_id,
                values=[kv(key=T.LABEL_KEY_FAULT, value=fault or "none"),
                        kv(key=T.LABEL_KEY_DROPPED, value=str(dropped.get(sensor, 0)))]))
        return t["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=entries)


def write_bag(path: Path, simulator: Simulator, n_frames: int, *, overwrite: bool = False,
              epoch_s: float = 1_700_000_000.0) -> dict[str, int]:
    """Run ``simulator`` for ``n_frames`` frames straight into a bag; returns messages per topic."""
    with RosbagWriter(path, simulator, overwrite=overwrite, epoch_s=epoch_s) as bag:
        for frame in simulator.run(n_frames):
            bag.write_frame(frame)
    return bag.counts
