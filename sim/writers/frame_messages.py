"""ROS 2 messages (rosbags objects) from simulator frames: one conversion for bags and live topics.

:class:`FrameMessageBuilder` turns a :class:`SimFrame` into :class:`TimedMessage` records; the
bag writer (:mod:`sim.writers.rosbag`) writes them in log-time order, ``ros_nodes.sim_node``
publishes them when the wall clock reaches their log time. Topic names, types and payload
layouts: :mod:`fusion_core.data.topics` and ``docs/bag_format.md``.

Time: scenario time ``t`` (seconds from 0) maps to ``epoch_ns + round(t * 1e9)`` nanoseconds.
``stamp_ns`` is the header stamp (capture time; frame time for ground truth, labels, odom and
tf); ``log_ns`` is when the message reaches a consumer (``SensorReading.receive_time_s``), so a
latency fault shows up as ``log_ns > stamp_ns``.

Messages are rosbags objects of the shared type store (:func:`shared_typestore`); serialise
them with that store (``serialize_cdr(msg, record.msgtype)``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_core.boxes import CLASS_ID, CLASS_NAMES, VX, VY, YAW, H, L, W, X, Y, Z
from fusion_core.data import topics as T
from fusion_core.data.detection3d import detection3d_array
from fusion_core.data.ros_types import shared_typestore
from fusion_core.vocabulary import SENSORS
from sim.calibration import BASE_FRAME, WORLD_FRAME
from sim.geometry import quaternion_xyzw
from sim.readings import SensorReading, SimFrame
from sim.simulator import Simulator

NS_PER_S = 1_000_000_000

CLASS_COLORS_RGBA: dict[str, tuple[float, float, float, float]] = {
    "car": (0.2, 0.5, 1.0, 0.5),
    "pedestrian": (1.0, 0.55, 0.1, 0.5),
    "cyclist": (0.2, 0.85, 0.3, 0.5),
}
_UNKNOWN_COLOR = (0.7, 0.7, 0.7, 0.5)


@dataclass(frozen=True)
class TimedMessage:
    """One message on one topic, with when it was stamped and when it is delivered."""

    topic: str       # ROS topic name (fusion_core.data.topics)
    msgtype: str     # ROS type name, e.g. "sensor_msgs/msg/Image"
    stamp_ns: int    # header stamp: epoch + capture (or frame) time, ns
    log_ns: int      # delivery time: epoch + receive time, ns (>= stamp_ns)
    msg: Any         # rosbags message object of the shared type store


class FrameMessageBuilder:
    """Builds the messages of ``simulator``'s frames; scenario time 0 maps to ``epoch_ns``."""

    def __init__(self, simulator: Simulator, epoch_ns: int):
        self.simulator = simulator
        self.epoch_ns = int(epoch_ns)
        self._types = shared_typestore().types
        self._prepare_static_parts()

    # ------------------------------------------------------------------ public API
    def ns(self, t_s: float) -> int:
        """Scenario seconds -> epoch nanoseconds."""
        return self.epoch_ns + round(t_s * NS_PER_S)

    def static_messages(self) -> list[TimedMessage]:
        """What is sent once, before any frame: ``/tf_static`` (base_link -> each sensor)."""
        return [self._timed(T.TF_STATIC_TOPIC, self.epoch_ns, self.epoch_ns, self._tf_static())]

    def frame_messages(self, frame: SimFrame) -> list[TimedMessage]:
        """Everything of one frame: :meth:`ground_truth_messages` then :meth:`reading_messages`
        of each reading in capture order (the order a bag writer breaks log-time ties by)."""
        messages = self.ground_truth_messages(frame)
        for reading in frame.readings:
            messages.extend(self.reading_messages(reading))
        return messages

    def ground_truth_messages(self, frame: SimFrame) -> list[TimedMessage]:
        """``/tf``, ``/odom``, ground-truth markers and detections, ``/sim/labels``; stamped and
        delivered at the frame time."""
        frame_ns = self.ns(frame.time_s)
        header = self._header(frame_ns, BASE_FRAME)
        odom_header = self._header(frame_ns, WORLD_FRAME)
        return [
            self._timed(T.TF_TOPIC, frame_ns, frame_ns, self._tf(frame, odom_header)),
            self._timed(T.ODOM_TOPIC, frame_ns, frame_ns, self._odometry(frame, odom_header)),
            self._timed(T.GT_MARKERS_TOPIC, frame_ns, frame_ns, self._markers(frame, header)),
            self._timed(T.GT_DETECTIONS_TOPIC, frame_ns, frame_ns, self._detections(frame, header)),
            self._timed(T.LABELS_TOPIC, frame_ns, frame_ns, self._labels(frame, header)),
        ]

    def reading_messages(self, r: SensorReading) -> list[TimedMessage]:
        """The message(s) of one capture: a camera image is followed by its CameraInfo."""
        stamp_ns = self.ns(r.capture_time_s)
        log_ns = self.ns(r.receive_time_s)
        header = self._header(stamp_ns, r.frame_id)
        sensor = r.sensor
        if sensor == "rgb":
            return [self._timed(T.RGB_IMAGE_TOPIC, stamp_ns, log_ns, self._image(header, r.data, T.RGB_ENCODING)),
                    self._timed(T.RGB_INFO_TOPIC, stamp_ns, log_ns, self._camera_info(sensor, header))]
        if sensor == "depth":
            return [self._timed(T.DEPTH_IMAGE_TOPIC, stamp_ns, log_ns, self._image(header, r.data, T.DEPTH_ENCODING)),
                    self._timed(T.DEPTH_INFO_TOPIC, stamp_ns, log_ns, self._camera_info(sensor, header))]
        if sensor == "lidar":
            return [self._timed(T.LIDAR_TOPIC, stamp_ns, log_ns, self._lidar_cloud(header, r.data))]
        if sensor == "radar":
            return [self._timed(T.RADAR_TOPIC, stamp_ns, log_ns, self._radar_cloud(header, r.data))]
        if sensor == "imu":
            return [self._timed(T.IMU_TOPIC, stamp_ns, log_ns, self._imu(header, r.data))]
        raise ValueError(f"unknown sensor {sensor!r} in a reading")

    # ------------------------------------------------------------------ message builders
    @staticmethod
    def _timed(topic: str, stamp_ns: int, log_ns: int, msg: Any) -> TimedMessage:
        return TimedMessage(topic, T.TOPIC_TYPES[topic], stamp_ns, log_ns, msg)

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
            self._cam_static[sensor] = {
                "height": int(intr.height_px), "width": int(intr.width_px), "distortion_model": "plumb_bob",
                "d": np.zeros(5), "k": k, "r": np.eye(3).reshape(-1), "p": p, "binning_x": 0, "binning_y": 0,
                "roi": t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False),
            }
        imu = self.simulator.config.sensors.imu
        self._imu_orientation = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        self._imu_orientation_cov = np.zeros(9)
        self._imu_orientation_cov[0] = -1.0  # orientation not provided (REP 145)
        self._imu_gyro_cov = np.diag([imu.gyro_noise_radps**2] * 3).reshape(-1)
        self._imu_accel_cov = np.diag([imu.accel_noise_mps2**2] * 3).reshape(-1)
        self._zero_cov36 = np.zeros(36)
        # Shared empty parts of every Marker (Kilted adds texture and mesh fields).
        self._marker_texture = t["sensor_msgs/msg/CompressedImage"](
            header=self._header(self.epoch_ns, ""), format="", data=np.zeros(0, np.uint8))
        self._marker_mesh = t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8))
        self._zero_duration = t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0)

    def _header(self, stamp_ns: int, frame_id: str):
        t = self._types
        sec, nsec = divmod(stamp_ns, NS_PER_S)
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
        header = self._header(self.epoch_ns, BASE_FRAME)
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
        i = round(class_id)
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
            x, y, z, length, w, h, yaw = box[X], box[Y], box[Z], box[L], box[W], box[H], box[YAW]
            name = self._class_name(box[CLASS_ID])
            r, g, b, a = CLASS_COLORS_RGBA.get(name, _UNKNOWN_COLOR)
            markers.append(self._marker(header, "boxes", track, marker_cls.CUBE, self._pose(x, y, z, yaw),
                                        (length, w, h), (r, g, b, a)))
            markers.append(self._marker(header, "labels", track, marker_cls.TEXT_VIEW_FACING,
                                        self._pose(x, y, z + h / 2 + 0.6, 0.0), (0.0, 0.0, 0.7),
                                        (1.0, 1.0, 1.0, 1.0), text=f"{name} #{track}"))
            vx, vy = box[VX], box[VY]
            markers.append(self._marker(header, "velocity", track, marker_cls.ARROW, identity, (0.15, 0.3, 0.3),
                                        (r, g, b, 1.0), points=(point(x=x, y=y, z=z), point(x=x + vx, y=y + vy, z=z))))
        return t["visualization_msgs/msg/MarkerArray"](markers=markers)

    def _detections(self, frame: SimFrame, header):
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        return detection3d_array(frame.gt_boxes, stamp_ns, header.frame_id, ids=frame.gt_track_ids.tolist())

    def _labels(self, frame: SimFrame, header):
        t = self._types
        status, kv = t["diagnostic_msgs/msg/DiagnosticStatus"], t["diagnostic_msgs/msg/KeyValue"]
        dropped = Counter(d.sensor for d in frame.dropped)
        entries = [status(level=status.OK, name=T.LABEL_CONDITION_NAME, message=frame.condition,
                          hardware_id="simulator", values=[kv(key=T.LABEL_KEY_SEVERITY, value=f"{frame.severity:g}")])]
        for sensor in SENSORS:
            fault = frame.active_faults.get(sensor)
            entries.append(status(
                level=status.WARN if fault else status.OK, name=f"{T.LABEL_SENSOR_PREFIX}{sensor}",
                message=fault or T.LABEL_OK_MESSAGE, hardware_id=self.simulator.calibration[sensor].frame_id,
                values=[kv(key=T.LABEL_KEY_FAULT, value=fault or "none"),
                        kv(key=T.LABEL_KEY_DROPPED, value=str(dropped.get(sensor, 0)))]))
        return t["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=entries)
